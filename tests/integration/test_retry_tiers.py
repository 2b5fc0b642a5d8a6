"""Retry tiers: a hop due later never holds back the hops behind it (issue 10, item 5).

Real Kafka, real Postgres, the carrier simulator, one nudgel-messages worker; topics
with ONE partition, so both tenants' retry hops share a partition of the retry tier.

Tenant A's job (a Kenyan number, routed to the Africa's Talking gateway) is answered
429 with Retry-After: 20, so its hop waits 20 s; tenant B's job (a Nigerian number,
routed to the Infobip gateway) is answered 429 with Retry-After: 1 once, then the
carrier takes it. B's hop lands behind A's on the same partition of the 1 s tier.
Before the fix the tier's consumer paused the partition until A's head was due, so
B went out ~20 s later; now A hops on and B goes out about 1 s after its 429.
"""
import json
import time

from conftest import headers_of
from messages_harness import Worker, consume, enqueue, make_topics, wait_until
from test_carrier_sim import Sim

A_NUMBER = "+254722{:06d}"
B_NUMBER = "+234803{:07d}"


def gateways(sim, path):
    conf = {
        "gateways": [
            {"name": "sim-at", "dialect": "africastalking",
             "base_url": f"http://127.0.0.1:{sim.port}/at",
             "api_key_env": "NUDGEL_TEST_AT_KEY", "username": "sandbox", "tps": 2000,
             "sender_id": "NUDGEL"},
            {"name": "sim-infobip", "dialect": "infobip",
             "base_url": f"http://127.0.0.1:{sim.port}/infobip",
             "api_key_env": "NUDGEL_TEST_INFOBIP_KEY", "tps": 2000, "sender_id": "NUDGEL"},
        ],
        "routes": [{"country": "KE", "operator": "*", "gateways": ["sim-at"]},
                   {"country": "NG", "operator": "*", "gateways": ["sim-infobip"]}],
    }
    path.write_text(json.dumps(conf))
    return path


def entry(sim, number):
    """The simulator's ledger entry of @number, or {}."""
    for e in sim.ledger("?limit=100000")["entries"]:
        if e.get("number") == number:
            return e
    return {}


def test_a_late_retry_does_not_hold_back_an_earlier_one(topics_ready, run_id, tmp_path,
                                                        bootstrap):
    sim = Sim("sim.at.error_429_permille=1000", "sim.at.retry_after_s=20",
              "sim.infobip.error_429_permille=1000", "sim.infobip.retry_after_s=1")
    worker = None
    try:
        ns = f"rt{run_id}."
        make_topics(ns, partitions=1)
        worker = Worker(ns, gateways(sim, tmp_path / "gateways.json"), tmp_path / "worker.log",
                        "messages.retry_delays_ms=1000,30000,120000,600000",
                        "messages.breaker_min_calls=256")
        assert worker.port() is not None, worker.log_tail()
        a_to, b_to = A_NUMBER.format(1), B_NUMBER.format(1)
        enqueue(ns, [{"tenant_id": f"rta{run_id}", "channel": "sms", "to": a_to,
                      "body": "late", "idempotency_key": f"{run_id}-a"}])
        assert wait_until(lambda: entry(sim, a_to).get("faults", 0) >= 1, 30), worker.log_tail()
        # A's hop (Retry-After 20 s) is on the retry tier before B's job is even enqueued.
        retry_topic = f"{ns}nudgel.messages.retry.5s"
        assert wait_until(lambda: len(consume(bootstrap, retry_topic, timeout=30)) >= 1, 30), \
            worker.log_tail()

        enqueue(ns, [{"tenant_id": f"rtb{run_id}", "channel": "sms", "to": b_to,
                      "body": "early", "idempotency_key": f"{run_id}-b"}])
        assert wait_until(lambda: entry(sim, b_to).get("faults", 0) >= 1, 30, interval=0.05), \
            worker.log_tail()
        faulted = time.monotonic()
        status, _ = sim.configure(**{"sim.infobip.error_429_permille": 0})
        assert status == 200
        # B's 1 s retry goes out within about 2 s, while A still waits for its 20 s.
        assert wait_until(lambda: entry(sim, b_to).get("count", 0) >= 1, 15, interval=0.05), \
            (entry(sim, b_to), worker.log_tail())
        took = time.monotonic() - faulted
        assert took <= 2.5, f"B's 1 s retry went out after {took:.1f} s"
        assert entry(sim, a_to).get("count", 0) == 0  # A is not due yet
        records = consume(bootstrap, retry_topic, timeout=30)
        hops = [r for r in records if r.get("key") == f"rta{run_id}"]
        assert len(hops) >= 2, "A should have hopped on"
        for h in hops[1:]:  # a hop-on is the same hop: same headers, same bytes
            assert headers_of(h) == headers_of(hops[0]) and h["payload"] == hops[0]["payload"]
        assert worker.alive()
    finally:
        if worker:
            worker.stop()
        sim.stop()
