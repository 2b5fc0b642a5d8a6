"""Status event → nudgel-dispatch → webhook job → nudgel-webhooks → signed POST.

Status events (CloudEvents, as the messages worker writes them) go onto an
isolated status topic. The dispatcher makes one job per subscribed, enabled
endpoint of the tenant (exact types, prefixes, empty = all), the deliverer
signs and sends them, the Node sink verifies them. An endpoint not subscribed
to message.sent, a disabled one and another tenant's get nothing; webhook
status events are never dispatched (no loops); a redelivered status event
yields the same webhook-id, delivered once.
"""
import hashlib
import json
import subprocess
import sys
import time
import uuid

from conftest import SOURCE_DIR, binary, headers_of, kcat_consume, load_schema

sys.path.insert(0, str(SOURCE_DIR / "tests" / "webhook-sink"))
import harness as h  # noqa: E402

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def status_event(tenant, i, etype="ai.nudgel.message.sent"):
    mid = str(uuid.uuid4())
    return {"specversion": "1.0", "id": hashlib.sha256(f"{mid}{etype}".encode()).hexdigest()[:32],
            "source": "/nudgel/messages", "type": etype, "subject": mid,
            "time": "2026-11-29T05:00:00.123Z", "datacontenttype": "application/json",
            "tenantid": tenant, "traceparent": TRACEPARENT,
            "data": {"message_id": mid, "tenant_id": tenant, "to": f"+2547220{i:05d}",
                     "country": "KE", "status": etype.rsplit(".", 1)[1], "attempt": 1}}


def produce(bootstrap, topic, tenant, events):
    payload = "\n".join(json.dumps(e) for e in events) + "\n"
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-k", tenant,
                    "-H", f"traceparent={TRACEPARENT}", "-H", "nudgel-schema=status.event/v1"],
                   input=payload, text=True, check=True, timeout=60)


def test_status_event_to_delivery_filtered_by_type(bootstrap, pg_dsn, topics_ready, run_id):
    ns, tenant, other = f"wx{run_id}.", f"wx{run_id}", f"wy{run_id}"
    h.make_topics(binary, ns)
    sink = h.Sink()
    specs = {"exact": ["message.sent"], "prefix": ["message.*"], "all": [],
             "delivered-only": ["message.delivered"], "disabled": []}
    eps = dict(zip(specs, h.add_endpoints(pg_dsn, [dict(tenant=tenant, url=sink.url(f"/{k}"),
                                                        event_types=v)
                                                   for k, v in specs.items()])))
    other_ep = h.add_endpoint(pg_dsn, other, sink.url("/other"))
    h.psql(pg_dsn, "UPDATE nudgel.webhook_endpoints SET enabled = false WHERE endpoint_id = "
                   f"'{eps['disabled'][0]}'")
    for k, (eid, secret) in eps.items():
        sink.configure(f"/{k}", secrets=[secret])
    sink.configure("/other", secrets=[other_ep[1]])

    n = 20
    sent = [status_event(tenant, i) for i in range(n)]
    loops = [status_event(tenant, 99, "ai.nudgel.webhook.delivered")]
    status_topic = f"{ns}nudgel.delivery-status.v1"
    produce(bootstrap, status_topic, tenant, sent + loops)
    produce(bootstrap, status_topic, tenant, sent[:5])  # redelivered: same ids, same webhooks

    dispatcher = h.start_dispatcher(binary, ns)
    deliverer = h.start_deliverer(binary, ns)
    try:
        h.wait_until(lambda: h.final_count(pg_dsn, tenant) >= 3 * n, 90,
                     "3 endpoints x 20 deliveries", deliverer)
        time.sleep(2)  # anything extra (a loop, a duplicate) would show up now
    finally:
        codes = (dispatcher.terminate(), deliverer.terminate())
        ledger = sink.ledger()["paths"]
        sink.stop()
    assert codes == (0, 0), dispatcher.text()[-2000:] + deliverer.text()[-2000:]
    for k in ("exact", "prefix", "all"):
        assert ledger[f"/{k}"]["unique_ids"] == n, k
        assert ledger[f"/{k}"]["duplicates"] == 0, k
        assert ledger[f"/{k}"]["failures"] == 0, k
    for k in ("delivered-only", "disabled"):
        assert ledger[f"/{k}"]["requests"] == 0, k
    assert ledger["/other"]["requests"] == 0
    assert h.final_count(pg_dsn, tenant) == 3 * n

    # The jobs: valid against the contract, headers passed through, ids deterministic.
    validator = load_schema("webhook.job.v1.schema.json")
    jobs = kcat_consume(bootstrap, f"{ns}nudgel.webhooks.v1")
    assert len(jobs) == 3 * (n + 5)
    by_id = {}
    for rec in jobs:
        job = json.loads(rec["payload"])
        assert not list(validator.iter_errors(job)), job
        hdr = headers_of(rec)
        assert hdr["traceparent"] == TRACEPARENT
        assert hdr["nudgel-schema"] == "webhook.job/v1"
        assert hdr["nudgel-tenant"] == tenant and rec["key"] == tenant
        assert job["payload"]["type"] == "message.sent"
        assert job["payload"]["timestamp"] == "2026-11-29T05:00:00.123Z"
        by_id.setdefault(job["id"], set()).add(job["event_id"])
    assert len(by_id) == 3 * n  # the redelivered events made the same job ids
    assert all(len(v) == 1 for v in by_id.values())

    # The body the endpoint got: the event's data in the Standard Webhooks payload shape.
    body = h.psql(pg_dsn, "SELECT payload FROM nudgel.webhook_deliveries WHERE endpoint_id = "
                          f"'{eps['exact'][0]}' LIMIT 1").strip()
    payload = json.loads(body)
    assert payload["type"] == "message.sent" and payload["data"]["tenant_id"] == tenant
