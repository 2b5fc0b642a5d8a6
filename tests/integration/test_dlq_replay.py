"""nudgel-admin dlq replay against the real broker: filters by tenant, reason and
time, dry runs, and replayed jobs return to their job topic with their own
headers but without the dead-letter and retry ones.

Issue 10: item 6 (`dlq replay --resend` recovers a message failed by a gateway outage as a
new message linked to the original, once however often it runs; `--reason` matches the
receipt's last error code) and item 9 (a re-emitted message or webhook event is identical to
the first one with the same id: same data, byte for byte after canonicalisation)."""
import json
import subprocess

import pytest

from conftest import binary, headers_of, kcat_consume


def admin(*args, timeout=120):
    return subprocess.run([binary("nudgel-admin"), *args], capture_output=True, text=True,
                          timeout=timeout)


def dead_letter(bootstrap, topic, tenant, reason, body):
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-k", tenant,
                    "-H", f"nudgel-tenant={tenant}", "-H", "nudgel-schema=message.job/v1",
                    "-H", f"nudgel-dlq-reason={reason}", "-H", "nudgel-attempt=4",
                    "-H", "nudgel-origin=nudgel.messages.v1/0/42"],
                   input=body, text=True, check=True, timeout=30)


def test_replay_filters_and_strips_dead_letter_headers(bootstrap, topics_ready, run_id):
    ns = f"dq{run_id}."
    assert admin("--set", f"topics.namespace={ns}", "--set", "topics.partitions=3",
                 "topics", "ensure").returncode == 0
    dlq = f"{ns}nudgel.messages.dlq.v1"
    for i in range(6):
        dead_letter(bootstrap, dlq, "acme" if i % 2 else "globex",
                    "retries exhausted" if i < 4 else "expired before it could be sent",
                    json.dumps({"n": i}))
    common = ["--set", f"topics.namespace={ns}", "dlq", "replay", "--topic", "messages"]

    dry = admin(*common, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "6 scanned, 6 matched, 6 would be replayed" in dry.stdout
    assert kcat_consume(bootstrap, f"{ns}nudgel.messages.v1") == []

    none = admin(*common, "--dry-run", "--since", "2999-01-01T00:00:00Z")
    assert "0 matched" in none.stdout

    run = admin(*common, "--tenant", "acme", "--reason", "exhausted")
    assert run.returncode == 0, run.stderr
    assert "6 scanned, 2 matched, 2 replayed" in run.stdout
    back = kcat_consume(bootstrap, f"{ns}nudgel.messages.v1")
    assert sorted(json.loads(r["payload"])["n"] for r in back) == [1, 3]
    for rec in back:
        hdr = headers_of(rec)
        assert rec["key"] == "acme" and hdr["nudgel-tenant"] == "acme"
        assert hdr["nudgel-schema"] == "message.job/v1"
        assert "nudgel-dlq-reason" not in hdr and "nudgel-attempt" not in hdr
        assert hdr["nudgel-replay-of"].startswith(f"{dlq}/")

    bad = admin("--set", f"topics.namespace={ns}", "dlq", "replay")
    assert bad.returncode == 2 and "--topic" in bad.stderr


# ---- issue 10 items 6 and 9: resend of failed messages, re-emitted events ------------

from messages_harness import (Worker, consume, enqueue, gateways_file, make_topics,  # noqa: E402
                              produce_raw, psql, wait_settled, wait_until)
from test_carrier_sim import Sim  # noqa: E402


def canonical(obj):
    """JSON canonicalisation (sorted keys, no whitespace, UTF-8 as is): equal bytes, equal data."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def status_events(bootstrap, ns, tenant):
    """The tenant's status events, in topic order, each validated against the schema."""
    from conftest import load_schema
    validator = load_schema("status.event.v1.schema.json")
    out = []
    for rec in consume(bootstrap, f"{ns}nudgel.delivery-status.v1"):
        ev = json.loads(rec["payload"])
        if ev.get("tenantid") != tenant:
            continue
        errors = list(validator.iter_errors(ev))
        assert not errors, f"{errors[0].message} in {ev}"
        out.append(ev)
    return out


def sms_job(tenant, run_id, n, body="Habari ya leo"):
    return {"tenant_id": tenant, "channel": "sms", "to": f"+25471100{n:04d}", "body": body,
            "idempotency_key": f"{run_id}-{n}", "metadata": {"order": f"AC-{n}", "n": n}}


def accepted(sim):
    return sim.ledger("?summary=1")["totals"]["accepted"]


def test_reemitted_sent_event_is_identical_to_the_original(bootstrap, pg_dsn, topics_ready,
                                                           run_id, tmp_path):
    """Item 9: a job that comes again after its receipt is final (a redelivery after a crash,
    `dlq replay`) re-emits its event built from the stored receipt row: same id, and data equal
    byte for byte after canonicalisation (encoding, segments, cost "0.8" both times)."""
    sim = Sim()
    worker = None
    try:
        ns = f"re{run_id}."
        make_topics(ns, partitions=1)
        tenant = f"re{run_id}"
        gw = gateways_file(sim, tmp_path / "gateways.json", dialect="africastalking")
        worker = Worker(ns, gw, tmp_path / "worker.log")
        assert worker.port() is not None, worker.log_tail()
        enqueue(ns, [sms_job(tenant, run_id, 1)])
        assert wait_settled([worker]), worker.log_tail()
        first = status_events(bootstrap, ns, tenant)
        assert [e["type"] for e in first] == ["ai.nudgel.message.sent"], first
        assert first[0]["data"]["encoding"] == "gsm7" and first[0]["data"]["segments"] == 1
        assert first[0]["data"]["cost"] == {"amount": "0.8", "currency": "KES"}
        # The job again, bytes and headers as they were (what a redelivery or a replay brings).
        (rec,) = consume(bootstrap, f"{ns}nudgel.messages.v1")
        produce_raw(bootstrap, f"{ns}nudgel.messages.v1",
                    [(rec["key"], rec["payload"].encode(), list(headers_of(rec).items()))],
                    tmp_path / "again")
        evs = wait_until(lambda: (lambda e: e if len(e) >= 2 else None)(
            status_events(bootstrap, ns, tenant)), 60)
        assert evs, worker.log_tail()
        assert len(evs) == 2 and evs[0]["id"] == evs[1]["id"], evs
        assert canonical(evs[1]["data"]) == canonical(evs[0]["data"])
        assert accepted(sim) == 1  # sent once
    finally:
        if worker:
            worker.stop()
        sim.stop()


def test_resend_recovers_a_message_failed_by_an_outage(bootstrap, pg_dsn, topics_ready, run_id,
                                                       tmp_path):
    """Item 6: a message failed by a gateway outage ends in the DLQ. A plain replay re-emits
    its failed event (identical, item 9) and sends nothing; `dlq replay --resend` sends it again
    as a new message linked to the original (receipt column and event field `resent_from`),
    once however often it runs; the original stays failed; `--reason` also matches the
    receipt's last error code."""
    sim = Sim("sim.at.error_5xx_permille=1000")  # the route's only gateway is down
    worker = None
    try:
        ns = f"rs{run_id}."
        make_topics(ns, partitions=1)
        tenant = f"rs{run_id}"
        gw = gateways_file(sim, tmp_path / "gateways.json", dialect="africastalking")
        worker = Worker(ns, gw, tmp_path / "worker.log",
                        "messages.retry_delays_ms=200,200,200,200")
        assert worker.port() is not None, worker.log_tail()
        enqueue(ns, [sms_job(tenant, run_id, 7)])
        dlq = f"{ns}nudgel.messages.dlq.v1"
        assert wait_until(lambda: len(consume(bootstrap, dlq)) == 1, 90), worker.log_tail()
        assert wait_settled([worker]), worker.log_tail()
        orig, status, code = psql(pg_dsn, "SELECT message_id, status, error_code FROM "
                                          "nudgel.message_receipts WHERE tenant_id = "
                                          f"'{tenant}'").strip().split("|")
        assert status == "failed" and code.startswith("http_5"), (status, code)
        (letter,) = consume(bootstrap, dlq)
        assert code not in headers_of(letter)["nudgel-dlq-reason"]
        common = ["--set", f"topics.namespace={ns}", "dlq", "replay", "--topic", "messages"]

        # A plain replay of a final message: its event again (same id, same data), no send.
        run = admin(*common)
        assert run.returncode == 0, run.stderr
        evs = wait_until(lambda: (lambda e: e if len(e) >= 2 else None)(
            status_events(bootstrap, ns, tenant)), 60)
        assert [e["type"] for e in evs] == ["ai.nudgel.message.failed"] * 2, evs
        assert evs[0]["id"] == evs[1]["id"]
        assert canonical(evs[0]["data"]) == canonical(evs[1]["data"])
        assert wait_settled([worker]), worker.log_tail()
        assert accepted(sim) == 0

        # --reason matches the receipt's last error code too (the header says "exhausted").
        assert "1 matched" in admin(*common, "--reason", code, "--dry-run").stdout
        assert "0 matched" in admin(*common, "--reason", "http_401", "--dry-run").stdout

        status_code, _ = sim.configure(**{"sim.at.error_5xx_permille": 0})
        assert status_code == 200
        for _ in range(2):  # the same resend twice sends once
            run = admin(*common, "--resend", "--reason", code)
            assert run.returncode == 0, run.stderr
            assert "1 matched" in run.stdout and "1 resent" in run.stdout, run.stdout
            assert wait_until(lambda: psql(pg_dsn, "SELECT status FROM nudgel.message_receipts "
                                                   f"WHERE resent_from = '{orig}'").strip()
                              == "sent", 60), worker.log_tail()
            assert wait_settled([worker]), worker.log_tail()
        rows = psql(pg_dsn, "SELECT message_id, status, tenant_id, to_e164, resent_from "
                            "FROM nudgel.message_receipts WHERE tenant_id = "
                            f"'{tenant}' ORDER BY resent_from NULLS FIRST").splitlines()
        assert len(rows) == 2, rows
        assert rows[0].split("|")[1:] == ["failed", tenant, "+254711000007", ""]
        new_id = rows[1].split("|")[0]
        assert rows[1].split("|")[1:] == ["sent", tenant, "+254711000007", orig]
        assert new_id != orig
        assert accepted(sim) == 1
        sent = [e for e in status_events(bootstrap, ns, tenant)
                if e["type"] == "ai.nudgel.message.sent"]
        assert len({e["id"] for e in sent}) == 1, sent
        assert sent[0]["subject"] == new_id
        assert sent[0]["data"]["message_id"] == new_id
        assert sent[0]["data"]["resent_from"] == orig
        assert sent[0]["data"]["metadata"] == {"order": "AC-7", "n": 7}
        # The original's receipt was never moved: failed, its history without a new transition.
        hist = psql(pg_dsn, "SELECT coalesce(from_status, '-') || '>' || to_status FROM "
                            "nudgel.message_receipt_history WHERE message_id = "
                            f"'{orig}' ORDER BY id").split()
        assert hist == ["->accepted", "accepted>submitting", "submitting>failed"], hist
    finally:
        if worker:
            worker.stop()
        sim.stop()


def test_reemitted_webhook_event_is_identical_to_the_original(bootstrap, pg_dsn, topics_ready,
                                                              run_id):
    """Item 9, webhooks: a job that comes again once its delivery ended re-emits its
    `webhook.delivered` from the delivery row: same id, data equal byte for byte after
    canonicalisation, the url included (the one the delivery went to, recorded in
    webhook_deliveries.url, even after the endpoint moved)."""
    import sys
    from conftest import SOURCE_DIR
    sys.path.insert(0, str(SOURCE_DIR / "tests" / "webhook-sink"))
    import harness as h
    ns = f"rw{run_id}."
    h.make_topics(binary, ns, partitions=1)
    sink = h.Sink()
    worker = h.start_deliverer(binary, ns)
    try:
        tenant = f"rw{run_id}"
        path = f"/re{run_id}"
        eid, secret = h.add_endpoint(pg_dsn, tenant, sink.url(path))
        sink.configure(path, secrets=[secret])
        job = h.webhook_job(tenant, eid, 1, run_id)
        h.enqueue(binary, ns, [job])
        first = h.wait_until(lambda: status_events(bootstrap, ns, tenant), 60, "the event",
                             worker)
        assert [e["type"] for e in first] == ["ai.nudgel.webhook.delivered"], first
        assert first[0]["data"]["url"] == sink.url(path)
        h.wait_settled([worker])
        h.psql(pg_dsn, f"UPDATE nudgel.webhook_endpoints SET url = '{sink.url('/moved')}' "
                       f"WHERE endpoint_id = '{eid}'")
        h.enqueue(binary, ns, [job])  # the same job: the same delivery id
        evs = h.wait_until(lambda: (lambda e: e if len(e) >= 2 else None)(
            status_events(bootstrap, ns, tenant)), 60, "the re-emitted event", worker)
        assert len(evs) == 2 and evs[0]["id"] == evs[1]["id"], evs
        assert canonical(evs[1]["data"]) == canonical(evs[0]["data"])
        assert sink.path_ledger(path, summary=True)["requests"] == 1
        assert h.psql(pg_dsn, "SELECT url FROM nudgel.webhook_deliveries WHERE delivery_id = "
                              f"'{job['id']}'").strip() == sink.url(path)
    finally:
        code = worker.terminate()
        sink.stop()
        assert code == 0, worker.text()[-3000:]
