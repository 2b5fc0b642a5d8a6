"""nudgel-webhooks on SIGTERM, and endpoints that keep failing.

SIGTERM stops intake, lets requests in flight finish within
webhooks.drain_timeout_ms and exits 0; what cannot finish in time is not
lost: its offset was never stored, so the next deliverer sends it. An
endpoint failing without a success for longer than
webhooks.disable_after_failing_ms is disabled with an event.
"""
import json
import sys
import time

from conftest import SOURCE_DIR, binary, kcat_consume, load_schema

sys.path.insert(0, str(SOURCE_DIR / "tests" / "webhook-sink"))
import harness as h  # noqa: E402


def test_sigterm_drains_in_flight_then_exits_0(bootstrap, pg_dsn, topics_ready, run_id):
    ns, tenant = f"wn{run_id}.", f"wn{run_id}"
    h.make_topics(binary, ns)
    sink = h.Sink()
    try:
        (fast, fs), (slow, ss) = h.add_endpoints(pg_dsn, [
            dict(tenant=tenant, url=sink.url("/s2")), dict(tenant=tenant, url=sink.url("/s30"))])
        sink.configure("/s2", secrets=[fs], sleep_ms=2000)
        sink.configure("/s30", secrets=[ss], sleep_ms=30000)
        h.enqueue(binary, ns, [h.webhook_job(tenant, fast, i, run_id) for i in range(5)])
        worker = h.start_deliverer(binary, ns, "webhooks.drain_timeout_ms=10000")
        h.wait_until(lambda: sink.path_ledger("/s2", summary=True)["requests"] >= 5, 60,
                     "5 requests in flight", worker)
        t0 = time.monotonic()
        assert worker.terminate() == 0, worker.text()[-3000:]
        # The 2 s answers came within the drain: all five recorded before the exit.
        assert h.final_count(pg_dsn, tenant) == 5
        assert time.monotonic() - t0 < 9

        # A 30 s endpoint and a 1 s drain: out in time, nothing recorded, nothing lost.
        h.enqueue(binary, ns, [h.webhook_job(tenant, slow, 10 + i, run_id) for i in range(3)])
        worker = h.start_deliverer(binary, ns, "webhooks.drain_timeout_ms=1000")
        h.wait_until(lambda: sink.path_ledger("/s30", summary=True)["requests"] >= 3, 60,
                     "3 slow requests in flight", worker)
        t0 = time.monotonic()
        assert worker.terminate() == 0, worker.text()[-3000:]
        assert time.monotonic() - t0 < 6
        assert h.final_count(pg_dsn, tenant) == 5
        sink.configure("/s30", secrets=[ss])  # answers at once now
        worker = h.start_deliverer(binary, ns)
        try:
            h.wait_until(lambda: h.final_count(pg_dsn, tenant) >= 8, 60, "the slow three",
                         worker)
        finally:
            assert worker.terminate() == 0, worker.text()[-3000:]
        assert sink.path_ledger("/s30", summary=True)["unique_ids"] == 3
    finally:
        sink.stop()


def test_endpoint_failing_too_long_is_disabled(bootstrap, pg_dsn, topics_ready, run_id):
    ns, tenant = f"wz{run_id}.", f"wz{run_id}"
    h.make_topics(binary, ns)
    sink = h.Sink()
    try:
        eid, secret = h.add_endpoint(pg_dsn, tenant, sink.url("/down"))
        sink.configure("/down", secrets=[secret], status=503)
        h.enqueue(binary, ns, [h.webhook_job(tenant, eid, i, run_id) for i in range(3)])
        worker = h.start_deliverer(binary, ns, "webhooks.disable_after_failing_ms=1000",
                                   "webhooks.retry_schedule=400ms,400ms,400ms,400ms,400ms,400ms",
                                   "webhooks.retry_jitter_percent=0")
        try:
            h.wait_until(lambda: h.psql(pg_dsn, "SELECT enabled FROM nudgel.webhook_endpoints "
                                                f"WHERE endpoint_id = '{eid}'").strip() == "f",
                         60, "the endpoint disabled", worker)
            h.wait_until(lambda: h.final_count(pg_dsn, tenant) >= 3, 60, "3 final", worker)
        finally:
            assert worker.terminate() == 0, worker.text()[-3000:]
        reason = h.psql(pg_dsn, "SELECT disabled_reason FROM nudgel.webhook_endpoints WHERE "
                                f"endpoint_id = '{eid}'").strip()
        assert "failing without a success" in reason
        validator = load_schema("status.event.v1.schema.json")
        events = [json.loads(r["payload"]) for r in
                  kcat_consume(bootstrap, f"{ns}nudgel.delivery-status.v1")]
        for ev in events:
            assert not list(validator.iter_errors(ev)), ev
        disabled = [e for e in events if e["type"] == "ai.nudgel.webhook.endpoint_disabled"]
        assert len(disabled) == 1
        assert "failing without a success" in disabled[0]["data"]["disabled_reason"]
        # Jobs left for it end cancelled, unsent: fewer requests than 3 full ladders.
        assert sink.path_ledger("/down", summary=True)["requests"] < 3 * 7
    finally:
        sink.stop()
