"""nudgel-admin endpoints and webhooks replay against the real Postgres and Kafka
of the local stack.

Endpoints belong to a tenant unique to the test run; replayed jobs go to topics
under a namespace of their own, so nothing here reads or writes what other
tests use. Secrets: shown once by `add` and `rotate-secret`, stored sealed
(checked by opening the stored bytes with the keyring), never printed by
anything else.
"""
import base64
import json
import os
import subprocess
import uuid

import pytest

from conftest import BUILD_DIR, binary, headers_of, kcat_consume, load_schema

KEYRING = ("k1:" + base64.b64encode(bytes(range(32))).decode() + ",k0:" +
           base64.b64encode(bytes(range(100, 132))).decode())
KEY_ENV = {"NUDGEL_SECRET_KEY": KEYRING}


def admin(*args, env_extra=None, timeout=120):
    env = dict(os.environ)
    env.pop("NUDGEL_SECRET_KEY", None)
    env.update(env_extra if env_extra is not None else KEY_ENV)
    return subprocess.run([binary("nudgel-admin"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def psql(dsn, sql):
    return subprocess.run(["psql", dsn, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def open_sealed(key_id: str, hex_bytes: str, keyring: str = KEYRING):
    tool = BUILD_DIR / "workers" / "webhooks" / "nudgel-test-secretbox-open"
    assert tool.exists(), f"{tool} not built"
    env = dict(os.environ, NUDGEL_SECRET_KEY=keyring)
    return subprocess.run([str(tool), key_id, hex_bytes], capture_output=True, text=True,
                          timeout=30, env=env)


def open_independently(key_id: str, raw: bytes, keyring: str = KEYRING):
    """The stored format opened with another implementation, when one is installed."""
    aesgcm = pytest.importorskip("cryptography.hazmat.primitives.ciphers.aead")
    keys = dict(entry.split(":", 1) for entry in keyring.split(","))
    assert raw[0] == 1
    return aesgcm.AESGCM(base64.b64decode(keys[key_id])).decrypt(
        raw[1:13], raw[13:], key_id.encode()).decode()


@pytest.fixture(scope="module")
def migrated(pg_dsn):
    run = admin("migrate")
    assert run.returncode == 0, run.stdout + run.stderr
    return pg_dsn


@pytest.fixture
def tenant(run_id, migrated):
    name = f"wa{run_id}"
    yield name
    psql(migrated, f"DELETE FROM nudgel.webhook_deliveries WHERE tenant_id = '{name}'")
    psql(migrated, f"DELETE FROM nudgel.webhook_endpoints WHERE tenant_id = '{name}'")


def add_endpoint(tenant, *extra):
    run = admin("endpoints", "add", "--tenant", tenant, "--url", "https://hooks.example.com/in",
                "--events", "message.delivered,message.*", "--json", *extra)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout)


def stored(dsn, endpoint_id):
    row = psql(dsn, "SELECT secret_key_id, encode(secret_ciphertext, 'hex'), "
                    "coalesce(previous_secret_key_id, ''), "
                    "coalesce(encode(previous_secret_ciphertext, 'hex'), ''), "
                    "coalesce(extract(epoch FROM previous_secret_expires_at - now())::int, -1) "
                    f"FROM nudgel.webhook_endpoints WHERE endpoint_id = '{endpoint_id}'")
    key_id, hex_ct, prev_key_id, prev_hex, prev_left = row.split("|")
    return key_id, hex_ct, prev_key_id, prev_hex, int(prev_left)


def test_add_shows_the_secret_once_and_stores_it_sealed(migrated, tenant):
    added = add_endpoint(tenant, "--rate-limit", "7.5", "--concurrency", "4",
                         "--description", "orders")
    secret = added["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert added["tenant_id"] == tenant and added["secret_key_id"] == "k1"
    assert added["event_types"] == ["message.delivered", "message.*"]
    uuid.UUID(added["endpoint_id"])

    key_id, hex_ct, _, _, _ = stored(migrated, added["endpoint_id"])
    raw = bytes.fromhex(hex_ct)
    assert key_id == "k1"
    assert secret.encode() not in raw and secret[6:].encode() not in raw
    assert len(raw) == len(secret) + 1 + 12 + 16
    opened = open_sealed(key_id, hex_ct)
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.strip() == secret
    # Another keyring (same id, other key) cannot open it.
    other = "k1:" + base64.b64encode(bytes(32)).decode()
    assert open_sealed(key_id, hex_ct, other).returncode == 1

    row = psql(migrated, "SELECT rate_limit_per_second, max_concurrency, description, "
                         "array_to_string(event_types, ','), enabled FROM "
                         f"nudgel.webhook_endpoints WHERE endpoint_id = '{added['endpoint_id']}'")
    assert row == "7.5|4|orders|message.delivered,message.*|t"

    # A literal private address is accepted with a warning naming the guard's allow-list.
    run = admin("endpoints", "add", "--tenant", tenant, "--url", "http://10.1.2.3:8080/hook")
    assert run.returncode == 0, run.stderr
    assert "10.1.2.3 is private" in run.stderr and "webhooks.ssrf_allow_cidrs" in run.stderr

    # The text form prints the secret too, once, with the warning.
    run = admin("endpoints", "add", "--tenant", tenant, "--url", "http://hooks.example.com/2")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("whsec_") == 1 and "shown once" in run.stdout
    assert "(every event)" in run.stdout


def test_add_opens_with_the_independent_implementation(migrated, tenant):
    added = add_endpoint(tenant)
    key_id, hex_ct, _, _, _ = stored(migrated, added["endpoint_id"])
    assert open_independently(key_id, bytes.fromhex(hex_ct)) == added["secret"]


def test_key_file_works_and_missing_key_names_the_setting(migrated, tenant, tmp_path):
    keyfile = tmp_path / "keyring"
    keyfile.write_text(KEYRING + "\n")
    run = admin("--set", f"secret.key_file={keyfile}", "endpoints", "add", "--tenant", tenant,
                "--url", "https://hooks.example.com/k", "--json", env_extra={})
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["secret_key_id"] == "k1"

    run = admin("endpoints", "add", "--tenant", tenant, "--url", "https://hooks.example.com/k",
                env_extra={})
    assert run.returncode == 2
    assert "secret.key" in run.stderr and "NUDGEL_SECRET_KEY" in run.stderr
    run = admin("endpoints", "add", "--tenant", tenant, "--url", "https://hooks.example.com/k",
                env_extra={"NUDGEL_SECRET_KEY": "k1:tooshort"})
    assert run.returncode == 2 and "secret.key" in run.stderr
    assert "tooshort" not in run.stderr

    # --print-config redacts the keyring.
    run = admin("--print-config")
    assert run.returncode == 0
    assert "secret.key = [redacted]" in run.stdout
    assert KEYRING.split(":")[1][:12] not in run.stdout + run.stderr


def test_list_and_show_never_print_secrets(migrated, tenant):
    a = add_endpoint(tenant)
    b = add_endpoint(tenant)
    secrets = [a["secret"], b["secret"], a["secret"][6:], b["secret"][6:]]
    outputs = []
    for args in (["endpoints", "list", "--tenant", tenant],
                 ["endpoints", "list", "--tenant", tenant, "--json"],
                 ["endpoints", "show", a["endpoint_id"]],
                 ["endpoints", "show", "--endpoint", a["endpoint_id"], "--json"]):
        run = admin(*args)
        assert run.returncode == 0, run.stderr
        outputs.append(run.stdout + run.stderr)
    for text in outputs:
        for s in secrets:
            assert s not in text
        assert "whsec_" not in text
    listed = json.loads(outputs[1].strip())
    assert sorted(e["endpoint_id"] for e in listed) == sorted([a["endpoint_id"],
                                                                b["endpoint_id"]])
    for e in listed:
        assert not any("secret" in k and "key_id" not in k and "previous" not in k for k in e)
    shown = json.loads(outputs[3].strip())
    assert shown["url"] == "https://hooks.example.com/in" and shown["enabled"] is True
    assert shown["secret_key_id"] == "k1" and shown["previous_secret_live"] is False
    assert "message.delivered, message.*" in outputs[2]
    assert f"2 endpoints" in outputs[0]


def test_rotate_keeps_the_previous_secret_with_an_expiry(migrated, tenant):
    added = add_endpoint(tenant)
    before_key, before_hex, _, _, _ = stored(migrated, added["endpoint_id"])
    run = admin("--set", "webhooks.rotation_overlap_s=3600", "endpoints", "rotate-secret",
                added["endpoint_id"], "--json")
    assert run.returncode == 0, run.stderr
    rotated = json.loads(run.stdout)
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != added["secret"]
    key_id, hex_ct, prev_key, prev_hex, prev_left = stored(migrated, added["endpoint_id"])
    assert prev_key == before_key and prev_hex == before_hex
    assert 3500 <= prev_left <= 3600
    assert open_sealed(key_id, hex_ct).stdout.strip() == rotated["secret"]
    assert open_sealed(prev_key, prev_hex).stdout.strip() == added["secret"]

    # Default overlap: 24 h; the text form prints the new secret once.
    run = admin("endpoints", "rotate-secret", "--endpoint", added["endpoint_id"])
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("whsec_") == 1 and "still signing until" in run.stdout
    _, _, prev_key, prev_hex, prev_left = stored(migrated, added["endpoint_id"])
    assert open_sealed(prev_key, prev_hex).stdout.strip() == rotated["secret"]
    assert 86000 <= prev_left <= 86400
    show = admin("endpoints", "show", added["endpoint_id"], "--json")
    assert json.loads(show.stdout)["previous_secret_live"] is True

    missing = admin("endpoints", "rotate-secret", str(uuid.uuid4()))
    assert missing.returncode == 1 and "--endpoint: no endpoint" in missing.stderr


def test_disable_and_enable(migrated, tenant):
    added = add_endpoint(tenant)
    eid = added["endpoint_id"]
    run = admin("endpoints", "disable", eid, "--reason", "customer asked")
    assert run.returncode == 0, run.stderr
    row = psql(migrated, "SELECT enabled, disabled_reason, disabled_at IS NOT NULL FROM "
                         f"nudgel.webhook_endpoints WHERE endpoint_id = '{eid}'")
    assert row == "f|customer asked|t"
    again = admin("endpoints", "disable", eid)
    assert again.returncode == 0 and "already disabled" in again.stdout
    assert psql(migrated, "SELECT disabled_reason FROM nudgel.webhook_endpoints "
                          f"WHERE endpoint_id = '{eid}'") == "customer asked"
    shown = json.loads(admin("endpoints", "show", eid, "--json").stdout)
    assert shown["enabled"] is False and shown["disabled_reason"] == "customer asked"

    run = admin("endpoints", "enable", "--endpoint", eid)
    assert run.returncode == 0, run.stderr
    row = psql(migrated, "SELECT enabled, disabled_reason IS NULL, disabled_at IS NULL FROM "
                         f"nudgel.webhook_endpoints WHERE endpoint_id = '{eid}'")
    assert row == "t|t|t"
    assert admin("endpoints", "disable", str(uuid.uuid4())).returncode == 1


@pytest.mark.parametrize("args, flag", [
    (["--url", "ftp://hooks.example.com/"], "--url"),
    (["--url", "hooks.example.com/x"], "--url"),
    (["--url", "https://user:pw@hooks.example.com/"], "--url"),
    (["--url", "https://hooks.example.com:99999/"], "--url"),
    ([], "--url"),
    (["--url", "https://ok.example/", "--events", "Message.Delivered"], "--events"),
    (["--url", "https://ok.example/", "--events", "message.delivered,,x.y"], "--events"),
    (["--url", "https://ok.example/", "--events", "message"], "--events"),
    (["--url", "https://ok.example/", "--rate-limit", "0"], "--rate-limit"),
    (["--url", "https://ok.example/", "--rate-limit", "fast"], "--rate-limit"),
    (["--url", "https://ok.example/", "--concurrency", "-1"], "--concurrency"),
    (["--url", "https://ok.example/", "--concurrency", "2.5"], "--concurrency"),
])
def test_bad_input_names_the_flag(tenant, args, flag):
    run = admin("endpoints", "add", "--tenant", tenant, *args)
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"{flag}:" in run.stderr
    assert "whsec_" not in run.stdout + run.stderr


def test_bad_tenant_and_ids_name_the_flag(migrated):
    run = admin("endpoints", "add", "--tenant", "bad tenant!", "--url", "https://ok.example/")
    assert run.returncode == 2 and "--tenant:" in run.stderr
    run = admin("endpoints", "add", "--url", "https://ok.example/")
    assert run.returncode == 2 and "--tenant: required" in run.stderr
    run = admin("endpoints", "show", "not-a-uuid")
    assert run.returncode == 2 and "--endpoint:" in run.stderr
    run = admin("endpoints", "show", str(uuid.uuid4()))
    assert run.returncode == 1 and "no endpoint" in run.stderr
    run = admin("endpoints", "list", "--url", "https://ok.example/")
    assert run.returncode == 2 and "takes only" in run.stderr
    assert admin("endpoints").returncode == 2


# --- webhooks replay -----------------------------------------------------------------------


def insert_delivery(dsn, tenant, endpoint_id, event_id, status, created_at, payload=None,
                    replay_of=None):
    delivery_id = str(uuid.uuid4())
    payload_sql = "NULL" if payload is None else "'" + json.dumps(payload) + "'::jsonb"
    replay_sql = "NULL" if replay_of is None else f"'{replay_of}'"
    psql(dsn, "INSERT INTO nudgel.webhook_deliveries (delivery_id, tenant_id, endpoint_id, "
              "event_type, event_id, status, attempts, payload, replay_of, created_at) VALUES "
              f"('{delivery_id}', '{tenant}', '{endpoint_id}', 'message.delivered', '{event_id}', "
              f"'{status}', 3, {payload_sql}, {replay_sql}, '{created_at}')")
    return delivery_id


def test_replay_reenqueues_the_right_deliveries(bootstrap, migrated, tenant, run_id):
    ns = f"wr{run_id}."
    ensure = admin("--set", f"topics.namespace={ns}", "--set", "topics.partitions=3", "topics",
                   "ensure")
    assert ensure.returncode == 0, ensure.stderr
    topic = f"{ns}nudgel.webhooks.v1"
    ep = add_endpoint(tenant)["endpoint_id"]
    other = add_endpoint(tenant)["endpoint_id"]
    day = "2026-11-20"
    d = {
        "failed": insert_delivery(migrated, tenant, ep, "evt_failed", "failed",
                                  f"{day}T10:00:00Z", {"n": 1, "text": "Habari"}),
        "exhausted": insert_delivery(migrated, tenant, ep, "evt_exhausted", "exhausted",
                                     f"{day}T11:00:00Z", {"n": 2}),
        "delivered": insert_delivery(migrated, tenant, ep, "evt_ok", "delivered",
                                     f"{day}T12:00:00Z", {"n": 3}),
        "pending": insert_delivery(migrated, tenant, ep, "evt_pending", "pending",
                                   f"{day}T12:10:00Z", {"n": 4}),
        "before": insert_delivery(migrated, tenant, ep, "evt_before", "failed",
                                  "2026-11-19T23:59:59Z", {"n": 5}),
        "after": insert_delivery(migrated, tenant, ep, "evt_after", "failed",
                                 "2026-11-21T00:00:00Z", {"n": 6}),
        "no_payload": insert_delivery(migrated, tenant, ep, "evt_nopayload", "failed",
                                      f"{day}T13:00:00Z"),
        "other_endpoint": insert_delivery(migrated, tenant, other, "evt_other", "failed",
                                          f"{day}T13:00:00Z", {"n": 7}),
    }
    # An event whose failed delivery was already replayed and then delivered: not again.
    old = insert_delivery(migrated, tenant, ep, "evt_replayed", "failed", f"{day}T09:00:00Z",
                          {"n": 8})
    insert_delivery(migrated, tenant, ep, "evt_replayed", "delivered", f"{day}T09:30:00Z",
                    {"n": 8}, replay_of=old)
    common = ["--set", f"topics.namespace={ns}", "webhooks", "replay", "--endpoint", ep,
              "--since", f"{day}T00:00:00Z", "--until", "2026-11-21T00:00:00Z"]
    rows_before = psql(migrated, "SELECT count(*) FROM nudgel.webhook_deliveries WHERE "
                                 f"tenant_id = '{tenant}'")

    dry = admin(*common, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "3 matched, 2 would be replayed" in dry.stdout and "1 skipped" in dry.stdout
    only_exhausted = admin(*common, "--status", "exhausted", "--dry-run")
    assert only_exhausted.returncode == 0, only_exhausted.stderr
    assert "1 matched, 1 would be replayed" in only_exhausted.stdout
    assert kcat_consume(bootstrap, topic) == []
    assert psql(migrated, "SELECT count(*) FROM nudgel.webhook_deliveries WHERE "
                          f"tenant_id = '{tenant}'") == rows_before

    run = admin(*common)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 matched, 2 replayed" in run.stdout and "0 failed" in run.stdout
    records = kcat_consume(bootstrap, topic)
    assert len(records) == 2
    validator = load_schema("webhook.job.v1.schema.json")
    by_event = {}
    for rec in records:
        job = json.loads(rec["payload"])
        validator.validate(job)
        hdr = headers_of(rec)
        assert rec["key"] == tenant and hdr["nudgel-tenant"] == tenant
        assert hdr["nudgel-schema"] == "webhook.job/v1"
        assert hdr["content-type"] == "application/json"
        by_event[job["event_id"]] = (job, hdr)
    assert sorted(by_event) == ["evt_exhausted", "evt_failed"]
    job, hdr = by_event["evt_failed"]
    assert hdr["nudgel-replay-of"] == d["failed"]
    assert job["id"] != d["failed"] and job["endpoint_id"] == ep
    assert job["payload"] == {"n": 1, "text": "Habari"}
    assert job["event_type"] == "message.delivered"
    assert by_event["evt_exhausted"][1]["nudgel-replay-of"] == d["exhausted"]

    # The new deliveries are written, pending, pointing at what they replay.
    rows = psql(migrated, "SELECT delivery_id, event_id, status, replay_of, payload->>'n' FROM "
                          "nudgel.webhook_deliveries WHERE replay_of IN "
                          f"('{d['failed']}', '{d['exhausted']}') ORDER BY event_id")
    lines = [line.split("|") for line in rows.splitlines()]
    assert [(l[1], l[2], l[3], l[4]) for l in lines] == [
        ("evt_exhausted", "pending", d["exhausted"], "2"),
        ("evt_failed", "pending", d["failed"], "1")]
    assert {l[0] for l in lines} == {by_event[e][0]["id"] for e in by_event}

    # A second replay finds nothing new: the latest delivery of each event is the pending replay.
    again = admin(*common, "--dry-run")
    assert "0 would be replayed" in again.stdout, again.stdout


def test_replay_usage_errors(migrated, tenant):
    ep = add_endpoint(tenant)["endpoint_id"]
    run = admin("webhooks", "replay", "--endpoint", ep)
    assert run.returncode == 2 and "--since" in run.stderr
    run = admin("webhooks", "replay", "--since", "2026-11-20T00:00:00Z")
    assert run.returncode == 2 and "--endpoint" in run.stderr
    run = admin("webhooks", "replay", "--endpoint", ep, "--since", "2026-11-20T00:00:00Z",
                "--status", "delivered")
    assert run.returncode == 2 and "--status" in run.stderr
    run = admin("webhooks", "replay", "--endpoint", ep, "--since", "yesterday")
    assert run.returncode == 2 and "--since" in run.stderr
    run = admin("webhooks", "replay", "--endpoint", str(uuid.uuid4()), "--since",
                "2026-11-20T00:00:00Z", "--dry-run")
    assert run.returncode == 1 and "no endpoint" in run.stderr
    # migrate --status still takes no value, and replay's --status is not migrate's.
    assert admin("migrate", "--status").returncode == 0
    assert admin("migrate", "--status", "failed").returncode == 2
