"""nudgel-webhooks: a burst to healthy endpoints never waits on the retry tier (issue 10, item 18).

Before: with default limits, 20,000 jobs for 4 healthy, fast endpoints stalled at
5,000 in flight: the endpoint lanes held 16 + 1,000 each and every job beyond
went to the 5 s retry tier (arriving seconds late). Now a lane that is merely
busy keeps its jobs (the in-flight cap pauses intake instead), and only a slow
or failing endpoint's overflow leaves for the retry tier.

- 20,000 jobs in one burst, one block per endpoint (two tenants, two endpoints
  each, so two endpoints share a partition), default limits: every job is
  delivered once, on its first attempt, and no job of the burst is on a retry
  topic.
- A slow endpoint (the sink answers after 1.5 s, 2 requests at a time) and a
  fast one of the same tenant (same partition), endpoint_queue_max 20: the
  slow one's overflow goes to the first retry tier, while every job of the
  fast one is delivered on its first attempt, none via a retry tier, long
  before the slow one could have served its jobs.
"""
import json
import sys
import time
import uuid

from conftest import SOURCE_DIR, binary, headers_of
from messages_harness import consume

sys.path.insert(0, str(SOURCE_DIR / "tests" / "webhook-sink"))
import harness as h  # noqa: E402


def retry_records(bootstrap, ns, tenants):
    """Records of @tenants on any of the webhook retry tiers."""
    out = []
    for tier in h.WEBHOOK_RETRY_TIERS:
        out += [r for r in consume(bootstrap, f"{ns}nudgel.webhooks.retry.{tier}")
                if r.get("key") in tenants]
    return out


def test_burst_of_20000_to_4_healthy_endpoints_never_uses_the_retry_tier(
        bootstrap, pg_dsn, topics_ready):
    run = uuid.uuid4().hex[:8]
    ns = f"wb{run}."
    h.make_topics(binary, ns)
    n, endpoints = 20000, 4
    tenants = [f"wb{run}-x", f"wb{run}-y"]
    sink = h.Sink()
    worker = None
    try:
        specs = [dict(tenant=tenants[i // 2], url=sink.url(f"/b{run}/{i}"))
                 for i in range(endpoints)]
        eps = h.add_endpoints(pg_dsn, specs)
        for i, (_, secret) in enumerate(eps):
            sink.configure(f"/b{run}/{i}", secrets=[secret])
        per = n // endpoints
        # One block per endpoint: each partition's records come as a run for one endpoint,
        # the shape that filled a lane past endpoint_queue_max.
        jobs = [h.webhook_job(specs[i]["tenant"], eps[i][0], i * per + k, run)
                for i in range(endpoints) for k in range(per)]
        h.enqueue(binary, ns, jobs)
        started = time.monotonic()
        worker = h.start_deliverer(binary, ns)  # default limits
        h.wait_until(lambda: h.final_count(pg_dsn, f"wb{run}-%") >= n, 300,
                     f"{n} final deliveries", worker, interval=0.5)
        took = time.monotonic() - started
        h.wait_settled([worker], 120)
        metrics = worker.metrics()
        ledgers = [sink.path_ledger(f"/b{run}/{i}", summary=True) for i in range(endpoints)]
        retried = retry_records(bootstrap, ns, set(tenants))
        requeued = metrics.get('nudgel_webhooks_outcomes_total{outcome="requeued"}', 0)
        print(f"\n{n} jobs to {endpoints} endpoints in {took:.1f} s: "
              f"{sum(lg['unique_ids'] for lg in ledgers)} unique arrivals, "
              f"{sum(lg['duplicates'] for lg in ledgers)} duplicates, {len(retried)} records "
              f"on a retry tier, requeued {requeued}")
        assert retried == [], f"{len(retried)} jobs of the burst went via a retry tier"
        assert [lg["unique_ids"] for lg in ledgers] == [per] * endpoints
        assert [lg["duplicates"] for lg in ledgers] == [0] * endpoints
        assert sum(lg["failures"] for lg in ledgers) == 0
        statuses = h.psql(pg_dsn, "SELECT status, attempts, count(*) FROM "
                                  "nudgel.webhook_deliveries WHERE tenant_id LIKE "
                                  f"'wb{run}-%' GROUP BY 1, 2")
        assert statuses.strip() == f"delivered|1|{n}"
        attempts = h.psql(pg_dsn, "SELECT a.attempt, count(*) FROM nudgel.webhook_attempts a "
                                  "JOIN nudgel.webhook_deliveries d USING (delivery_id) WHERE "
                                  f"d.tenant_id LIKE 'wb{run}-%' GROUP BY 1")
        assert attempts.strip() == f"1|{n}"
    finally:
        if worker is not None:
            code = worker.terminate()
            assert code == 0, worker.text()[-3000:]
        sink.stop()


def test_slow_endpoint_overflows_to_the_retry_tier_while_its_partition_neighbour_delivers(
        bootstrap, pg_dsn, topics_ready):
    run = uuid.uuid4().hex[:8]
    ns = f"ws{run}."
    h.make_topics(binary, ns)
    tenant = f"ws{run}"
    slow_n, fast_n, queue_max = 300, 2000, 20
    sink = h.Sink()
    worker = None
    try:
        (slow_ep, slow_secret), (fast_ep, fast_secret) = h.add_endpoints(pg_dsn, [
            dict(tenant=tenant, url=sink.url(f"/s{run}/slow"), max_concurrency=2),
            dict(tenant=tenant, url=sink.url(f"/s{run}/fast"))])
        sink.configure(f"/s{run}/slow", secrets=[slow_secret], sleep_ms=1500)
        sink.configure(f"/s{run}/fast", secrets=[fast_secret])
        # The slow endpoint's jobs first, the fast one's behind them on the same partition.
        jobs = [h.webhook_job(tenant, slow_ep, i, run) for i in range(slow_n)]
        jobs += [h.webhook_job(tenant, fast_ep, slow_n + i, run) for i in range(fast_n)]
        fast_ids = {j["id"] for j in jobs[slow_n:]}
        h.enqueue(binary, ns, jobs)
        worker = h.start_deliverer(binary, ns, f"webhooks.endpoint_queue_max={queue_max}")

        def fast_done():
            return int(h.psql(pg_dsn, "SELECT count(*) FROM nudgel.webhook_deliveries WHERE "
                                      f"endpoint_id = '{fast_ep}' AND status = "
                                      "'delivered'")) == fast_n
        h.wait_until(fast_done, 120, f"{fast_n} deliveries to the fast endpoint", worker)
        slow_arrived = sink.path_ledger(f"/s{run}/slow", summary=True)["requests"]
        h.wait_until(lambda: len(retry_records(bootstrap, ns, {tenant})) > 0, 30,
                     "the slow endpoint's overflow on the retry tier", worker)
        retried = retry_records(bootstrap, ns, {tenant})
        fast = sink.path_ledger(f"/s{run}/fast", summary=True)
        print(f"\nfast endpoint: {fast['unique_ids']} delivered while the slow one had "
              f"{slow_arrived} requests; {len(retried)} records on the retry tier")
        assert fast["unique_ids"] == fast_n and fast["duplicates"] == 0
        # At 2 requests per 1.5 s the slow endpoint could not have served its jobs meanwhile.
        assert slow_arrived < slow_n // 2
        reasons = {hd["nudgel-last-error"].split(":")[0] for hd in map(headers_of, retried)}
        assert reasons == {"endpoint_saturated"}
        retried_jobs = {json.loads(r["payload"])["endpoint_id"] for r in retried}
        assert retried_jobs == {slow_ep}, "only the slow endpoint's jobs go via a retry tier"
        fast_rows = h.psql(pg_dsn, "SELECT status, attempts, count(*) FROM "
                                   "nudgel.webhook_deliveries WHERE endpoint_id = "
                                   f"'{fast_ep}' GROUP BY 1, 2")
        assert fast_rows.strip() == f"delivered|1|{fast_n}"
        assert not fast_ids & {json.loads(r["payload"])["id"] for r in retried}
    finally:
        if worker is not None and worker.proc.poll() is None:
            worker.kill()  # the slow endpoint's jobs are left for no one: nothing to drain
        sink.stop()
