"""Webhook retry tiers: a hop due later never holds back the hops behind it (issue 10, item 5).

The deliverer's side of tests/integration/test_retry_tiers.py. Real Kafka, real Postgres,
the Node sink, one nudgel-webhooks; topics with ONE partition, so both tenants' retry hops
share a partition of the 5 s tier.

Tenant A's endpoint answers its first request 429 with Retry-After: 20, so A's hop waits
20 s; tenant B's endpoint answers 500 once, so B's hop (schedule 1 s, no jitter) lands
behind A's on the same partition. Before the fix the tier's consumer paused the partition
until A's head was due, and B's retry went out ~20 s after its first attempt; now A's hop
hops on (republished, unchanged) and B's retry goes out about 1 s after its 500.
"""
import sys
import time

from conftest import SOURCE_DIR, binary, headers_of
from messages_harness import consume

sys.path.insert(0, str(SOURCE_DIR / "tests" / "webhook-sink"))
import harness as h  # noqa: E402


def arrivals(sink, path, webhook_id):
    """The sink's record of @webhook_id on @path: {"count", "first_ms", "last_ms"} or {}."""
    return sink.path_ledger(path)["ids"].get(webhook_id, {})


def test_a_late_webhook_retry_does_not_hold_back_an_earlier_one(pg_dsn, topics_ready, run_id,
                                                                bootstrap):
    ns, tenant_a, tenant_b = f"wr{run_id}.", f"wra{run_id}", f"wrb{run_id}"
    h.make_topics(binary, ns, partitions=1)
    sink = h.Sink()
    deliverer = None
    try:
        ep_a, secret_a = h.add_endpoint(pg_dsn, tenant_a, sink.url("/late"))
        ep_b, secret_b = h.add_endpoint(pg_dsn, tenant_b, sink.url("/early"))
        sink.configure("/late", secrets=[secret_a], statuses=[429], status=200, retry_after=20)
        sink.configure("/early", secrets=[secret_b], statuses=[500], status=200)
        deliverer = h.start_deliverer(binary, ns, "webhooks.retry_schedule=1s,5m,30m,2h,5h,10h",
                                      "webhooks.retry_jitter_percent=0")
        job_a = h.webhook_job(tenant_a, ep_a, 1, run_id)
        job_b = h.webhook_job(tenant_b, ep_b, 2, run_id)

        h.enqueue(binary, ns, [job_a])
        retry_topic = f"{ns}nudgel.webhooks.retry.5s"
        # A's hop (Retry-After 20 s) is on the retry tier before B's job is even enqueued.
        h.wait_until(lambda: consume(bootstrap, retry_topic, timeout=30), 30, "A's retry hop",
                     deliverer)
        assert arrivals(sink, "/late", job_a["event_id"]).get("count") == 1

        h.enqueue(binary, ns, [job_b])
        h.wait_until(lambda: arrivals(sink, "/early", job_b["event_id"]).get("count", 0) >= 1, 30,
                     "B's first attempt", deliverer, interval=0.05)
        faulted = time.monotonic()
        # B's 1 s retry goes out within about 2 s, while A still waits for its 20 s.
        h.wait_until(lambda: arrivals(sink, "/early", job_b["event_id"]).get("count", 0) >= 2, 30,
                     "B's retry", deliverer, interval=0.05)
        took = time.monotonic() - faulted
        assert took <= 2.5, f"B's 1 s retry went out after {took:.1f} s"
        assert arrivals(sink, "/late", job_a["event_id"]).get("count") == 1  # A is not due yet

        hops = [r for r in consume(bootstrap, retry_topic, timeout=30)
                if r.get("key") == tenant_a]
        assert len(hops) >= 2, "A's hop should have hopped on"
        for hop in hops[1:]:  # a hop-on is the same hop: same headers, same bytes
            assert headers_of(hop) == headers_of(hops[0]) and hop["payload"] == hops[0]["payload"]
        # A is delivered after its 20 s, not before.
        h.wait_until(lambda: arrivals(sink, "/late", job_a["event_id"]).get("count", 0) >= 2, 60,
                     "A's retry", deliverer)
        a = arrivals(sink, "/late", job_a["event_id"])
        assert a["last_ms"] - a["first_ms"] >= 19_000, a
        assert deliverer.proc.poll() is None
    finally:
        code = deliverer.terminate() if deliverer else 0
        sink.stop()
    assert code == 0, deliverer.text()[-3000:]
