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
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
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
        # Anything extra (a loop, a duplicate) would be there once neither worker holds
        # anything and each has committed everything it consumes: the dispatcher every
        # status event (the deliverer's own included), the deliverer every job.
        h.wait_settled([dispatcher, deliverer], 60)
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


LOOKUPS_OK = 'nudgel_dispatch_endpoint_lookups_total{outcome="ok"}'


def metric(port, name):
    """The value of an unlabelled series on the worker's /metrics (0 when absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def pg_client_port(pid, pg_port):
    """The local port of the process's TCP connection to Postgres (its first one)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        f = line.split()
        if f[9] in inodes and int(f[2].split(":")[1], 16) == pg_port:
            return int(f[1].split(":")[1], 16)
    return None


def test_endpoint_cache_capped_and_lookups_survive_a_lost_connection(bootstrap, pg_dsn,
                                                                    topics_ready, run_id):
    """dispatch.endpoint_cache_max=1 with four tenants interleaved: every event still makes its
    tenant's jobs (evicted lists are read again), and after the dispatcher's own Postgres
    backend is terminated it reconnects (a new connection) and dispatches what comes next."""
    ns = f"wc{run_id}."
    tenants = [f"wc{run_id}t{k}" for k in range(4)]
    h.make_topics(binary, ns)
    eps = dict(zip(tenants, h.add_endpoints(pg_dsn, [dict(tenant=t, url=f"http://127.0.0.1:9/{t}")
                                                     for t in tenants])))
    status_topic = f"{ns}nudgel.delivery-status.v1"
    webhooks_topic = f"{ns}nudgel.webhooks.v1"

    def jobs_by_tenant():
        out = {}
        for rec in kcat_consume(bootstrap, webhooks_topic):
            job = json.loads(rec["payload"])
            assert job["endpoint_id"] == eps[job["tenant_id"]][0]
            out.setdefault(job["tenant_id"], set()).add(job["id"])
        return out

    dispatcher = h.start_dispatcher(binary, ns, "dispatch.endpoint_cache_max=1", "log.level=info")
    try:
        h.wait_until(lambda: re.search(r"metrics on port (\d+)", dispatcher.text()), 30,
                     "the metrics port", dispatcher)
        port = int(re.search(r"metrics on port (\d+)", dispatcher.text()).group(1))
        for i in range(5):
            for t in tenants:
                produce(bootstrap, status_topic, t, [status_event(t, i)])
        h.wait_until(lambda: sum(len(v) for v in jobs_by_tenant().values()) >= 20, 60,
                     "20 jobs", dispatcher)
        all_read = time.monotonic()  # every list was read before its tenant's jobs were made
        lookups = metric(port, LOOKUPS_OK)
        assert {t: len(v) for t, v in jobs_by_tenant().items()} == {t: 5 for t in tenants}
        assert metric(port, "nudgel_dispatch_endpoint_cache_evictions_total") >= 3

        pg_port = (urllib.parse.urlparse(pg_dsn).port if "://" in pg_dsn
                   else int(re.search(r"port=(\d+)", pg_dsn).group(1)))
        client = pg_client_port(dispatcher.proc.pid, pg_port)
        assert client, "no Postgres connection found"
        h.psql(pg_dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       f"WHERE client_port = {client} AND application_name = 'nudgel-dispatch'")
        h.wait_until(lambda: dispatcher.text().count("lookups: Postgres connection up") >= 2, 30,
                     "a new lookups connection", dispatcher)
        assert "lookups: Postgres connection lost" in dispatcher.text()
        # The next events must read every list again, over the new connection: no list was
        # read since the 20 jobs (no statement since), and a list is trusted for
        # dispatch.endpoint_refresh_ms. Staleness is that configured time passing (nothing
        # shows it), so this waits out what is left of it.
        assert metric(port, LOOKUPS_OK) == lookups
        time.sleep(max(0.0, all_read + h.DISPATCH_REFRESH_MS / 1000 + 0.1 - time.monotonic()))
        for t in tenants:
            produce(bootstrap, status_topic, t, [status_event(t, 50)])
        h.wait_until(lambda: sum(len(v) for v in jobs_by_tenant().values()) >= 24, 60,
                     "4 more jobs after the reconnect", dispatcher)
        assert metric(port, LOOKUPS_OK) > lookups  # read again, on the new connection
    finally:
        code = dispatcher.terminate()
    assert code == 0, dispatcher.text()[-3000:]
    assert {t: len(v) for t, v in jobs_by_tenant().items()} == {t: 6 for t in tenants}
