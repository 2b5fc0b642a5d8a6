"""SIGKILL the deliverer three times during 20 000 deliveries.

A killed deliverer stores nothing for the jobs it had in flight, so a new one
delivers them again: every delivery must still reach a final state, every
webhook-id must reach its endpoint at least once (verified by the
standardwebhooks package), and the duplicates the kills caused are counted
and printed (at-least-once: bounded, not zero).

The bound is measured, not assumed: a duplicate is a webhook-id that reached
its endpoint while its delivery row was not yet durable when the worker was
killed, sent again by the next worker. So at each kill the test measures what
was in flight in that sense: the webhook-ids that had arrived at the sink
minus the deliveries recorded in Postgres, once both have stopped moving
after the kill (a request sent just before the kill may still be read by the
sink, a flush sent just before it may still commit). The worker's
nudgel_webhooks_in_flight gauge just before each kill is printed alongside.
The duplicates must not exceed the sum of those measures.
"""
import sys
import time

from conftest import SOURCE_DIR, binary

sys.path.insert(0, str(SOURCE_DIR / "tests" / "webhook-sink"))
import harness as h  # noqa: E402

N = 20000
ENDPOINTS = 10


def test_sigkill_three_times_during_20000_deliveries(bootstrap, pg_dsn, topics_ready, run_id):
    ns, tenant = f"wk{run_id}.", f"wk{run_id}"
    h.make_topics(binary, ns)
    sink = h.Sink()
    worker = None
    try:
        eps = h.add_endpoints(pg_dsn, [dict(tenant=f"{tenant}-{i % 4}", url=sink.url(f"/k/{i}"))
                                       for i in range(ENDPOINTS)])
        for i, (_, secret) in enumerate(eps):
            sink.configure(f"/k/{i}", secrets=[secret])
        jobs = [h.webhook_job(f"{tenant}-{(i % ENDPOINTS) % 4}", eps[i % ENDPOINTS][0], i, run_id)
                for i in range(N)]
        h.enqueue(binary, ns, jobs)

        def arrived():
            led = sink.ledger(summary=True)["paths"]
            return sum(led[f"/k/{i}"]["unique_ids"] for i in range(ENDPOINTS))

        def delivered_rows():
            return int(h.psql(pg_dsn, "SELECT count(*) FROM nudgel.webhook_deliveries WHERE "
                                      f"tenant_id LIKE '{tenant}-%' AND status = 'delivered'"))

        def at_rest():
            """(arrivals, delivered rows) once two reads in a row agree: the killed worker's
            last requests read by the sink, its last flush committed or gone."""
            last = []

            def same():
                now = (arrived(), delivered_rows())
                agreed = last == [now]
                last[:] = [now]
                return now if agreed else None
            return h.wait_until(same, 60, "arrivals and rows at rest after the kill")

        started = time.monotonic()
        kills, gauges, in_flight = [], [], []
        for threshold in (3000, 8000, 13000):
            worker = h.start_deliverer(binary, ns)
            h.wait_until(lambda: arrived() >= threshold, 180, f"{threshold} arrivals", worker,
                         interval=0.05)
            gauges.append(worker.metrics().get("nudgel_webhooks_in_flight"))
            worker.kill()
            got, rows = at_rest()
            kills.append(got)
            # Arrived but not recorded: what the next worker may send again.
            in_flight.append(got - rows)
        worker = h.start_deliverer(binary, ns)
        try:
            h.wait_until(lambda: h.final_count(pg_dsn, f"{tenant}-%") >= N, 240,
                         f"{N} final deliveries", worker)
            h.wait_settled([worker], 120)  # nothing held, every job committed
        finally:
            assert worker.terminate() == 0, worker.text()[-3000:]
        took = time.monotonic() - started
        led = sink.ledger(summary=True)["paths"]
        unique = sum(led[f"/k/{i}"]["unique_ids"] for i in range(ENDPOINTS))
        dupes = sum(led[f"/k/{i}"]["duplicates"] for i in range(ENDPOINTS))
        failures = sum(led[f"/k/{i}"]["failures"] for i in range(ENDPOINTS))
        print(f"\n{N} deliveries, SIGKILL at {kills} arrivals, {took:.1f} s: unique webhook-ids "
              f"{unique}, duplicates {dupes} ({100.0 * dupes / N:.2f}%), verification "
              f"failures {failures}; arrived but unrecorded at each kill {in_flight} "
              f"(bound {sum(in_flight)}), in-flight gauge before each kill {gauges}")
        assert unique == N  # each webhook-id arrived at least once
        assert failures == 0
        statuses = h.psql(pg_dsn, "SELECT status, count(*) FROM nudgel.webhook_deliveries WHERE "
                                  f"tenant_id LIKE '{tenant}-%' GROUP BY 1")
        assert statuses.strip() == f"delivered|{N}"
        # Duplicates only come from jobs in flight at a kill: arrived, but not recorded.
        assert all(0 <= n <= 5000 for n in in_flight), in_flight  # within the in-flight cap
        assert dupes <= sum(in_flight), (dupes, in_flight)
    finally:
        if worker is not None and worker.proc.poll() is None:
            worker.kill()
        sink.stop()
