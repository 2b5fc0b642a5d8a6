"""nudgel-webhooks with its defaults: the SSRF guard on, no allow-list.

A URL on 127.0.0.1, a host name resolving to it (localhost), the cloud
metadata address and an RFC 1918 address are refused before any connection:
the attempt row and the failed event carry the reason, the sink sees
nothing. Malformed jobs end in the DLQ with a reason and a failed event,
and the worker keeps serving.
"""
import json
import subprocess
import sys

import pytest

from conftest import SOURCE_DIR, binary, headers_of, kcat_consume, load_schema

sys.path.insert(0, str(SOURCE_DIR / "tests" / "webhook-sink"))
import harness as h  # noqa: E402


@pytest.fixture
def sink():
    s = h.Sink()
    yield s
    s.stop()


def test_default_guard_refuses_private_targets(bootstrap, pg_dsn, topics_ready, run_id, sink):
    ns, tenant = f"wf{run_id}.", f"wf{run_id}"
    h.make_topics(binary, ns)
    urls = {"loopback-ip": sink.url("/ip"), "localhost": sink.url("/name", host="localhost"),
            "metadata": "http://169.254.169.254/latest/meta-data/",
            "rfc1918": "http://10.0.0.1:8080/hook"}
    eps = dict(zip(urls, h.add_endpoints(pg_dsn, [dict(tenant=tenant, url=u)
                                                  for u in urls.values()])))
    for path in ("/ip", "/name"):
        sink.configure(path, secrets=[eps["loopback-ip"][1]])
    jobs = [h.webhook_job(tenant, eid, i, run_id) for i, (eid, _) in enumerate(eps.values())]
    h.enqueue(binary, ns, jobs)
    worker = h.start_deliverer(binary, ns, allow_loopback=False)
    try:
        h.wait_until(lambda: h.final_count(pg_dsn, tenant) >= len(jobs), 60,
                     "refusals recorded", worker)
    finally:
        assert worker.terminate() == 0, worker.text()[-3000:]
    rows = h.psql(pg_dsn, "SELECT d.endpoint_id, d.status, a.attempt, a.status_code IS NULL, "
                          "a.error_class, a.error_message FROM nudgel.webhook_deliveries d JOIN "
                          "nudgel.webhook_attempts a USING (delivery_id) WHERE d.tenant_id = "
                          f"'{tenant}'")
    by_endpoint = {r.split("|")[0]: r.split("|")[1:] for r in rows.splitlines()}
    assert len(by_endpoint) == 4
    expect = {"loopback-ip": "loopback", "localhost": "loopback", "metadata": "link-local",
              "rfc1918": "private"}
    for name, word in expect.items():
        status, attempt, no_code, cls, msg = by_endpoint[eps[name][0]]
        assert (status, attempt, no_code, cls) == ("failed", "1", "t", "ssrf_refused"), name
        assert "SSRF" in msg and word in msg, (name, msg)
    assert sink.ledger(summary=True)["paths"]["/ip"]["requests"] == 0
    assert sink.ledger(summary=True)["paths"]["/name"]["requests"] == 0
    validator = load_schema("status.event.v1.schema.json")
    events = [json.loads(r["payload"]) for r in
              kcat_consume(bootstrap, f"{ns}nudgel.delivery-status.v1")]
    assert len(events) == 4
    for ev in events:
        assert not list(validator.iter_errors(ev))
        assert ev["type"] == "ai.nudgel.webhook.failed"
        assert ev["data"]["error"]["code"] == "ssrf_refused"
        assert ev["data"]["error"]["permanent"] is True
        assert "SSRF" in ev["data"]["error"]["message"]


def test_malformed_jobs_go_to_the_dlq(bootstrap, pg_dsn, topics_ready, run_id, sink):
    ns, tenant = f"wm{run_id}.", f"wm{run_id}"
    h.make_topics(binary, ns)
    eid, secret = h.add_endpoint(pg_dsn, tenant, sink.url("/fine"))
    sink.configure("/fine", secrets=[secret])
    bad = ["not json", json.dumps({"tenant_id": tenant, "id": "nope"}),
           json.dumps(dict(h.webhook_job(tenant, eid, 0, run_id), event_type="NoDots"))]
    for b in bad:
        subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", f"{ns}nudgel.webhooks.v1",
                        "-k", tenant], input=b, text=True, check=True, timeout=30)
    h.enqueue(binary, ns, [h.webhook_job(tenant, eid, 1, run_id)])  # a good one after them
    worker = h.start_deliverer(binary, ns)
    try:
        h.wait_until(lambda: h.final_count(pg_dsn, tenant) >= 1, 60, "the good job", worker)
        h.wait_until(lambda: len(kcat_consume(bootstrap, f"{ns}nudgel.webhooks.dlq.v1")) >= 3,
                     30, "3 dead letters", worker)
    finally:
        assert worker.terminate() == 0, worker.text()[-3000:]
    dead = kcat_consume(bootstrap, f"{ns}nudgel.webhooks.dlq.v1")
    assert sorted(r["payload"] for r in dead) == sorted(bad)
    reasons = [headers_of(r)["nudgel-dlq-reason"] for r in dead]
    assert all(reasons), reasons
    assert any("event_type" in r for r in reasons), reasons
    assert sink.path_ledger("/fine", summary=True)["verified"] == 1
    validator = load_schema("status.event.v1.schema.json")
    events = [json.loads(r["payload"]) for r in
              kcat_consume(bootstrap, f"{ns}nudgel.delivery-status.v1")]
    for ev in events:
        assert not list(validator.iter_errors(ev)), ev
    failed = [e for e in events if e["type"] == "ai.nudgel.webhook.failed"]
    assert len(failed) == 3
    assert all(e["data"]["error"]["code"] == "malformed_job" for e in failed)
    assert [e["type"] for e in events].count("ai.nudgel.webhook.delivered") == 1


def test_event_id_with_a_dot_is_dead_lettered(bootstrap, pg_dsn, topics_ready, run_id, sink):
    """event_id is the webhook-id; Standard Webhooks forbids '.' in it (the signed content is
    id.timestamp.body). A job with one is refused by the producer and, written raw, is a dead
    letter with its reason and a failed event: nothing is sent."""
    ns, tenant = f"wi{run_id}.", f"wi{run_id}"
    h.make_topics(binary, ns)
    eid, secret = h.add_endpoint(pg_dsn, tenant, sink.url("/dot"))
    sink.configure("/dot", secrets=[secret])
    dotted = dict(h.webhook_job(tenant, eid, 0, run_id), event_id=f"evt.{run_id}")
    refused = subprocess.run([binary("nudgel-enqueue"), "--quiet", "--json", "--topic",
                              "webhooks", "--set",
                              f"producer.webhooks_topic={ns}nudgel.webhooks.v1"],
                             input=json.dumps(dotted) + "\n", capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode != 0 and "event_id" in refused.stderr, refused
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", f"{ns}nudgel.webhooks.v1", "-k", tenant,
                    "-H", f"nudgel-tenant={tenant}", "-H", "nudgel-schema=webhook.job/v1"],
                   input=json.dumps(dotted), text=True, check=True, timeout=30)
    h.enqueue(binary, ns, [h.webhook_job(tenant, eid, 1, run_id)])  # a good one after it
    worker = h.start_deliverer(binary, ns)
    try:
        h.wait_until(lambda: h.final_count(pg_dsn, tenant) >= 1, 60, "the good job", worker)
        h.wait_until(lambda: len(kcat_consume(bootstrap, f"{ns}nudgel.webhooks.dlq.v1")) >= 1,
                     30, "the dead letter", worker)
    finally:
        assert worker.terminate() == 0, worker.text()[-3000:]
    dead = kcat_consume(bootstrap, f"{ns}nudgel.webhooks.dlq.v1")
    assert [json.loads(r["payload"])["event_id"] for r in dead] == [f"evt.{run_id}"]
    assert "event_id" in headers_of(dead[0])["nudgel-dlq-reason"]
    ids = list(sink.path_ledger("/dot")["ids"])
    assert ids == [f"evt_{run_id}_1"], ids  # only the good one was sent
    events = [json.loads(r["payload"]) for r in
              kcat_consume(bootstrap, f"{ns}nudgel.delivery-status.v1")]
    failed = [e for e in events if e["type"] == "ai.nudgel.webhook.failed"]
    assert [e["data"]["error"]["code"] for e in failed] == ["malformed_job"]
