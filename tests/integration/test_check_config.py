"""--check-config on every binary, and a start that fails fast naming the key (issue 12, item 2).

Offline cases need nothing but the binaries; the connect and start-up cases use the stack's
Kafka and Postgres and the carrier simulator. Every case asserts the exit code (2 a configuration
problem, 3 only something unreachable, 0 OK) and that the message names the key at fault; no
secret configured for a run (API keys, the DSN's password, keyring keys, DLR tokens, a webhook
signing secret) ever appears in what a check prints.
"""
import base64
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD_DIR, SOURCE_DIR, binary
from test_carrier_sim import AT_KEY, INFOBIP_KEY, Sim

ROLES = ["nudgel-messages", "nudgel-webhooks", "nudgel-dispatch", "nudgel-receipts", "nudgel-dlr"]
ALL = ROLES + ["nudgel-admin"]
KEYRING = "cc1:" + base64.b64encode(bytes(range(1, 33))).decode()
OTHER_KEYRING = "cc1:" + base64.b64encode(bytes(range(2, 34))).decode()
DLR_TOKEN = "cc-dlr-token-" + "a1b2c3d4" * 3
PG_PASSWORD = "cc-hunter2-pw"
SECRETS = [AT_KEY, INFOBIP_KEY, KEYRING.split(":", 1)[1], OTHER_KEYRING.split(":", 1)[1],
           DLR_TOKEN, PG_PASSWORD]


def gateways(path, base="http://127.0.0.1:9/", ib_env="NUDGEL_TEST_CC_IB_KEY", **extra):
    conf = {"gateways": [
        {"name": "cc-infobip", "dialect": "infobip", "base_url": f"{base}infobip",
         "api_key_env": ib_env, "tps": 10, "dlr": {"token_env": "NUDGEL_TEST_CC_DLR"}},
        {"name": "cc-at", "dialect": "africastalking", "base_url": f"{base}at",
         "api_key_env": "NUDGEL_TEST_CC_AT_KEY", "username": "sandbox", "tps": 10}],
        "routes": [{"country": "KE", "operator": "Safaricom", "gateways": ["cc-at"]},
                   {"country": "KE", "operator": "*", "gateways": ["cc-infobip"]}]}
    for key, value in extra.items():
        conf[key] = value
    Path(path).write_text(json.dumps(conf))
    return str(path)


def base_env(tmp_path, **extra):
    """No NUDGEL_* of the caller's but the stack's two; the test secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGEL_")}
    env.update({"NUDGEL_KAFKA_BOOTSTRAP": os.environ.get("NUDGEL_KAFKA_BOOTSTRAP", "127.0.0.1:1"),
                "NUDGEL_PG_DSN": os.environ.get("NUDGEL_PG_DSN", "postgresql://x@127.0.0.1:1/x"),
                "NUDGEL_SECRET_KEY": KEYRING, "NUDGEL_TEST_CC_IB_KEY": INFOBIP_KEY,
                "NUDGEL_TEST_CC_AT_KEY": AT_KEY, "NUDGEL_TEST_CC_DLR": DLR_TOKEN})
    gw = gateways(tmp_path / "gw.json")
    env["NUDGEL_MESSAGES_GATEWAYS_FILE"] = gw
    env["NUDGEL_DLR_GATEWAYS_FILE"] = gw
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def check(name, env, *args, mode="--check-config", timeout=60):
    run = subprocess.run([binary(name), mode, *args], env=env, capture_output=True, text=True,
                         timeout=timeout)
    out = run.stdout + run.stderr
    for secret in SECRETS:
        assert secret not in out, f"{name} printed a secret: {out}"
    return run.returncode, out


def write(tmp_path, name, obj):
    path = tmp_path / name
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return str(path)


# ---- every shipped example passes in every role ---------------------------------------------

def test_shipped_examples_pass_in_every_role(tmp_path):
    """config/example.json with config/gateways.example.json (its secret files moved to tmp)."""
    example = json.loads((SOURCE_DIR / "config" / "gateways.example.json").read_text())
    for gw in example["gateways"]:
        for obj in (gw, gw.get("dlr", {})):
            for key in [k for k in obj if k.endswith("_file")]:
                secret = tmp_path / Path(obj[key]).name
                secret.write_text(DLR_TOKEN if "dlr" in key or "password" in key or
                                  "token" in obj[key] else "file-secret-value")
                obj[key] = str(secret)
    gw = write(tmp_path, "gateways.example.json", example)
    for name in ALL:
        env = base_env(tmp_path, NUDGEL_MESSAGES_GATEWAYS_FILE=gw, NUDGEL_DLR_GATEWAYS_FILE=gw)
        if name in ("nudgel-messages", "nudgel-dlr"):  # the roles that read the gateways file
            env.update(NUDGEL_GW_AT_KEY="at-example-key", NUDGEL_GW_GENERIC_KEY="generic-key",
                       NUDGEL_DLR_TOKEN_AT_KE=DLR_TOKEN, NUDGEL_DLR_TOKEN_GENERIC=DLR_TOKEN)
        for conf in sorted((SOURCE_DIR / "config").glob("example*.json")):
            rc, out = check(name, env, "-c", str(conf))
            assert rc == 0, (name, conf, out)
            assert f"{name}: configuration OK" in out


def test_every_binary_knows_every_other_binarys_keys(tmp_path):
    """The fleet registry: a file holding every key of every binary loads everywhere."""
    listed = [line.split() for line in (BUILD_DIR / "binaries.txt").read_text().splitlines()
              if line and not line.startswith("#")]
    keys = {}
    for name, kind, doc, path in listed:
        if doc != "doc" or kind == "test":
            continue
        out = subprocess.run([path, "--print-config-doc"], capture_output=True, text=True).stdout
        for row in out.splitlines():
            cells = [c.strip() for c in row.split("|")]
            if len(cells) > 5 and cells[1].startswith("`") and "." in cells[1]:
                keys.setdefault(name, {})[cells[1].strip("`")] = cells[4].strip("`")
    assert set(ALL) - {"nudgel-messages"} <= set(keys) | {"nudgel-messages"}
    env = base_env(tmp_path)
    for name in ALL:
        others = {k: v for b, ks in keys.items() if b != name for k, v in ks.items()
                  if k not in keys.get(name, {}) and v not in ("—", "")}
        rc, out = check(name, env, "-c", write(tmp_path, f"all-{name}.json", others))
        assert rc == 0, (name, out)


def test_the_fleet_registry_names_only_keys_a_binary_has():
    """The other direction: a key left in core/src/config_fleet.c after its binary dropped it
    would be accepted everywhere and read by nobody."""
    source = (SOURCE_DIR / "core" / "src" / "config_fleet.c").read_text()
    block = re.search(r"fleet_keys\[\] = \{(.*?)\};", source, re.S)
    assert block, "fleet_keys[] not found in config_fleet.c"
    registry = set(re.findall(r'"([a-z0-9_.]+)"', block.group(1)))
    assert len(registry) > 50, registry
    had = set()
    for line in (BUILD_DIR / "binaries.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, kind, _, path = line.split()
        if kind == "test":
            continue
        out = subprocess.run([path, "--print-config-doc"], capture_output=True, text=True,
                             timeout=30).stdout
        had |= {m for m in re.findall(r"^\| `([a-z0-9_.]+)` \|", out, re.M)}
    assert registry - had == set(), f"registry keys no binary has: {sorted(registry - had)}"
    assert had - registry == set(), f"keys missing from the registry: {sorted(had - registry)}"


# ---- bad configurations, each named ----------------------------------------------------------

BAD = [
    # (role, file content or None, --set flags, extra env, the words the message must hold)
    ("nudgel-messages", {"messages": {"max_in_flight": "lots"}}, [], {},
     ["messages.max_in_flight", "integer"]),
    ("nudgel-webhooks", None, ["webhooks.retry_jitter_percent=150"], {},
     ["webhooks.retry_jitter_percent", "out of range"]),
    ("nudgel-dispatch", {"log": {"level": "loud"}}, [], {}, ["log.level", "loud"]),
    ("nudgel-webhooks", None, ["webhooks.ssrf_guard=maybe"], {}, ["webhooks.ssrf_guard"]),
    ("nudgel-dispatch", {"topics": {"partitons": 12}}, [], {},
     ["topics.partitons", "did you mean topics.partitions"]),
    ("nudgel-receipts", {"mesages": {"group_id": "x"}}, [], {},
     ["mesages", "unknown section", "messages"]),
    ("nudgel-dlr", None, [], {"NUDGEL_KAFKA_BOOTSRAP": "127.0.0.1:9092"},
     ["NUDGEL_KAFKA_BOOTSRAP", "NUDGEL_KAFKA_BOOTSTRAP"]),
    ("nudgel-admin", None, ["topics.partitions=0"], {}, ["topics.partitions", "out of range"]),
    ("nudgel-admin", None, ["admin.timeot_ms=5"], {}, ["admin.timeot_ms"]),
    ("nudgel-messages", None, ["messages.retry_delays_ms=1,2"], {}, ["messages.retry_delays_ms"]),
    ("nudgel-receipts", None, ["receipts.expiry_by_gateway=at=soon"], {},
     ["receipts.expiry_by_gateway"]),
    ("nudgel-webhooks", None, ["webhooks.ssrf_allow_cidrs=10.0.0.0/99"], {},
     ["webhooks.ssrf_allow_cidrs"]),
    ("nudgel-webhooks", None, ["webhooks.retry_schedule=soon"], {}, ["webhooks.retry_schedule"]),
    ("nudgel-webhooks", None, [], {"NUDGEL_SECRET_KEY": "cc1:tooshort"}, ["secret.key", "cc1"]),
    ("nudgel-webhooks", None, [], {"NUDGEL_SECRET_KEY": KEYRING + "," + OTHER_KEYRING},
     ["secret.key", "twice"]),
    ("nudgel-webhooks", None, [], {"NUDGEL_SECRET_KEY": None}, ["secret.key", "not set"]),
    ("nudgel-admin", None, [], {"NUDGEL_SECRET_KEY": None,
                                "NUDGEL_SECRET_KEY_FILE": "/nonexistent/keyring"},
     ["secret.key_file"]),
    ("nudgel-receipts", None, [], {"NUDGEL_PG_DSN": f"host=db password={PG_PASSWORD} junk"},
     ["pg.dsn", "libpq"]),
    ("nudgel-dispatch", None, [],
     {"NUDGEL_PG_DSN": f"postgresql://u:{PG_PASSWORD}@db/x?nosuchoption=1"}, ["pg.dsn"]),
    ("nudgel-messages", None, [], {"NUDGEL_PG_DSN": None}, ["pg.dsn", "not set"]),
    ("nudgel-messages", None, [], {"NUDGEL_TEST_CC_IB_KEY": None},
     ["messages.gateways_file", "NUDGEL_TEST_CC_IB_KEY"]),
    ("nudgel-dlr", None, [], {"NUDGEL_TEST_CC_DLR": None},
     ["dlr.gateways_file", "token_env", "NUDGEL_TEST_CC_DLR"]),
    ("nudgel-messages", None, ["metrics.port=70000"], {}, ["metrics.port"]),
    ("nudgel-dlr", None, ["dlr.port=-1"], {}, ["dlr.port"]),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_configuration_is_named(case, tmp_path):
    role, content, sets, env_extra, words = BAD[case]
    env = base_env(tmp_path)
    for k, v in env_extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    args = []
    if content is not None:
        args += ["-c", write(tmp_path, "conf.json", content)]
    for s in sets:
        args += ["--set", s]
    rc, out = check(role, env, *args)
    assert rc == 2, (rc, out)
    for word in words:
        assert word in out, (word, out)


@pytest.mark.parametrize("problem,words", [
    ({"gateways": [{"name": "x", "dialect": "smpp", "base_url": "http://h", "api_key_env":
                    "NUDGEL_TEST_CC_AT_KEY", "tps": 1}], "routes": []}, ["dialect", "smpp"]),
    ({"routes": [{"country": "KE", "operator": "Safaricomm", "gateways": ["cc-at"]}]},
     ["Safaricomm"]),
    ({"routes": [{"country": "KE", "operator": "*", "gateways": ["nowhere"]}]}, ["nowhere"]),
    ({"gateways": [{"name": "x", "dialect": "infobip", "base_url": "http://h", "api_key":
                    "inline-key", "tps": 1}], "routes": []}, ["api_key"]),
])
def test_bad_gateways_file_is_named(problem, words, tmp_path):
    gw = json.loads(Path(gateways(tmp_path / "g.json")).read_text())
    gw.update(problem)
    path = write(tmp_path, "bad-gw.json", gw)
    env = base_env(tmp_path, NUDGEL_MESSAGES_GATEWAYS_FILE=path)
    rc, out = check("nudgel-messages", env)
    assert rc == 2, out
    assert "messages.gateways_file" in out
    for word in words:
        assert word in out, (word, out)


def test_every_problem_is_reported_at_once(tmp_path):
    env = base_env(tmp_path, NUDGEL_WEBHOOKS_MAX_IN_FLGHT="3", NUDGEL_SECRET_KEY="bad")
    conf = write(tmp_path, "c.json", {"webhooks": {"max_in_flight": 0}, "mesages": {}})
    rc, out = check("nudgel-webhooks", env, "-c", conf, "--set", "log.level=loud")
    assert rc == 2
    for word in ("webhooks.max_in_flight", "mesages", "log.level", "NUDGEL_WEBHOOKS_MAX_IN_FLGHT",
                 "secret.key", "5 problem(s)"):
        assert word in out, (word, out)


def test_help_mentions_check_config():
    for name in ALL:
        out = subprocess.run([binary(name), "--help"], capture_output=True, text=True).stdout
        assert "--check-config" in out, name


# ---- connect probes --------------------------------------------------------------------------

def test_connect_ok_and_bad_credentials_against_the_simulator(tmp_path):
    sim = Sim()
    try:
        base = f"http://127.0.0.1:{sim.port}/"
        gw = gateways(tmp_path / "sim-gw.json", base=base)
        env = base_env(tmp_path, NUDGEL_MESSAGES_GATEWAYS_FILE=gw)
        rc, out = check("nudgel-messages", env, mode="--check-config=connect")
        assert rc == 0, out
        env["NUDGEL_TEST_CC_IB_KEY"] = "a-revoked-key"
        rc, out = check("nudgel-messages", env, mode="--check-config=connect")
        assert rc == 2, out
        assert "cc-infobip" in out and "api_key_env NUDGEL_TEST_CC_IB_KEY" in out and "401" in out
        assert "cc-at" not in out, out
        assert "a-revoked-key" not in out
        # The same key refused at start-up: the worker stops at once, naming it.
        run = subprocess.run([binary("nudgel-messages"), "--set", "metrics.port=0"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2, run.stderr
        assert "api_key_env NUDGEL_TEST_CC_IB_KEY" in run.stderr and "401" in run.stderr
        assert "a-revoked-key" not in run.stderr
    finally:
        sim.stop()


def test_unreachable_gateway_is_not_bad_credentials(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gw = gateways(tmp_path / "down.json", base=f"http://127.0.0.1:{port}/")
    env = base_env(tmp_path, NUDGEL_MESSAGES_GATEWAYS_FILE=gw)
    rc, out = check("nudgel-messages", env, mode="--check-config=connect")
    assert rc == 3, out
    assert "unreachable" in out and "refused the key" not in out


def test_connect_names_kafka_and_postgres(tmp_path):
    env = base_env(tmp_path, NUDGEL_PG_DSN=f"postgresql://nudgel:{PG_PASSWORD}@127.0.0.1:1/x")
    rc, out = check("nudgel-dispatch", env, "--set", "kafka.bootstrap=127.0.0.1:1",
                    mode="--check-config=connect", timeout=120)
    assert rc == 3, out
    assert "kafka.bootstrap" in out and "pg.dsn" in out


def test_keyring_against_a_stored_secret(tmp_path, pg_dsn):
    env = base_env(tmp_path)
    add = subprocess.run([binary("nudgel-admin"), "endpoints", "add", "--tenant",
                          f"cc-{os.getpid()}", "--url", "https://example.com/hook", "--json"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert add.returncode == 0, add.stderr
    signing_secret = json.loads(add.stdout)["secret"]
    SECRETS.append(signing_secret)
    rc, out = check("nudgel-webhooks", env, mode="--check-config=connect")
    assert "cc1" not in out, out  # our key id opens what it sealed (others may be missing)
    env["NUDGEL_SECRET_KEY"] = OTHER_KEYRING  # same id, another key
    rc, out = check("nudgel-webhooks", env, mode="--check-config=connect")
    assert rc == 2 and "secret.key" in out and '"cc1"' in out, out
    rc, out = check("nudgel-admin", env, mode="--check-config=connect")
    assert rc == 2 and "secret.key" in out and '"cc1"' in out, out
    # At start-up the deliverer refuses it too, naming the key.
    run = subprocess.run([binary("nudgel-webhooks"), "--set", "metrics.port=0"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "secret.key" in run.stderr and '"cc1"' in run.stderr, \
        run.stderr[-2000:]
    for secret in SECRETS:
        assert secret not in run.stdout + run.stderr


# ---- start-up ---------------------------------------------------------------------------------

def test_metrics_port_clash_is_fatal(tmp_path, bootstrap):
    env = base_env(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        run = subprocess.run([binary("nudgel-dlr"), "--set", "dlr.port=0", "--set",
                              f"metrics.port={port}", "--set", "dlr.listen_address=127.0.0.1",
                              "--set", "dlr.drain_timeout_ms=0"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "metrics.port" in run.stderr and str(port) in run.stderr


def test_bad_dsn_at_start_names_pg_dsn(tmp_path):
    env = base_env(tmp_path, NUDGEL_PG_DSN=f"host=db password={PG_PASSWORD} junk")
    run = subprocess.run([binary("nudgel-receipts")], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2 and "pg.dsn" in run.stderr, run.stderr
    assert PG_PASSWORD not in run.stderr
