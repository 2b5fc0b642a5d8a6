"""nudgel-messages on SIGTERM with requests at a slow carrier (issue 10, item 7; DESIGN §5
"Shutdown").

A few hundred jobs are in flight against an Africa's Talking gateway that answers in 3-5 s
(the simulator's delay fault). Africa's Talking takes no client reference, so a request the
carrier accepted and the worker then abandoned is a second SMS once a later worker sends it
again. SIGTERM lands mid-flight: the worker must stop intake, hand back the jobs it has not
handed to the carrier (their claims released, their offsets not stored), wait for the answers of
the requests already at the carrier, record and publish them, and only then leave — before its
drain deadline. A second worker then finishes the rest. The carrier's ledger must count every
message exactly once and every receipt must be final.

Before the fix the drain kept sending queued jobs until the deadline and left with requests at
the carrier unrecorded: after the restart their stale claims were resubmitted (duplicates).
"""
import json
import time

from messages_harness import (FINAL_SQL, Worker, consume, count_where, enqueue, gateways_file,
                              make_topics, status_counts, wait_settled, wait_until)
from test_carrier_sim import Sim

TOTAL = 300
AT_CARRIER = 40  # messages.gateway_max_in_flight: requests awaiting the carrier at once
DRAIN_MS = 9000  # messages.drain_timeout_ms: above the carrier's 5 s, below what sending all takes


def test_sigterm_waits_for_the_carrier_and_hands_back_the_rest(bootstrap, pg_dsn, topics_ready,
                                                              run_id, tmp_path):
    sim = Sim("sim.at.latency_ms=3000", "sim.at.jitter_ms=2000")
    workers = []
    try:
        ns, tenant = f"dr{run_id}.", f"dr{run_id}"
        make_topics(ns, partitions=3)
        enqueue(ns, [{"tenant_id": f"{tenant}-{i % 7}", "channel": "sms",
                      "to": "+2547{:08d}".format(20_000_000 + i), "body": f"drain {run_id} {i}",
                      "idempotency_key": f"{run_id}-{i}"} for i in range(TOTAL)])
        # resubmit: were a request at the carrier abandoned, the next worker would send it
        # again, and the ledger would show it (hold would hide a duplicate as a failure).
        gw = gateways_file(sim, tmp_path / "gateways.json", "africastalking", tps=100000,
                           unknown_outcome="resubmit", timeout_ms=8000)
        sets = (f"messages.gateway_max_in_flight={AT_CARRIER}",
                f"messages.drain_timeout_ms={DRAIN_MS}", "messages.claim_stale_ms=2000",
                "messages.retry_delays_ms=500,500,500,500")
        first = Worker(ns, gw, tmp_path / "worker-1.log", *sets, worker_id=f"{tenant}-1")
        workers.append(first)
        # Mid-flight: a first wave answered, the next one at the carrier, most jobs waiting.
        reached = wait_until(lambda: not first.alive() or
                             (count_where(pg_dsn, tenant, "status = 'sent'") or 0) >= AT_CARRIER,
                             timeout=120, interval=0.2)
        assert reached and first.alive(), first.log_tail()
        at_carrier = sim.ledger("?summary=1")["totals"]["accepted"] - \
            count_where(pg_dsn, tenant, "status = 'sent'")
        started = time.monotonic()
        code = first.stop(timeout=60)
        took = time.monotonic() - started
        log = first.log()
        final_after_first = count_where(pg_dsn, tenant, FINAL_SQL)
        leased = count_where(pg_dsn, tenant, f"status IN ('accepted', 'submitting') "
                                             f"AND claimed_by = '{tenant}-1'")
        print(f"\ndrain: SIGTERM with about {at_carrier} requests at the carrier; exit {code} "
              f"after {took:.1f}s; {final_after_first}/{TOTAL} final; {leased} claims of the "
              f"first worker left")
        assert code == 0, first.log_tail()
        # It left because nothing was in flight any more, not at its deadline.
        assert "drained: nothing in flight" in log, first.log_tail()
        assert "drain timeout" not in log, first.log_tail()
        assert took < DRAIN_MS / 1000, f"the drain took {took:.1f}s"
        # Whatever it sent was recorded; whatever it did not send went back released.
        assert leased == 0, f"{leased} claims of the first worker were neither recorded nor released"
        assert final_after_first < TOTAL, "the SIGTERM came too late to test anything"

        second = Worker(ns, gw, tmp_path / "worker-2.log", *sets, worker_id=f"{tenant}-2")
        workers.append(second)
        done = wait_until(lambda: not second.alive() or
                          count_where(pg_dsn, tenant, FINAL_SQL) == TOTAL,
                          timeout=300, interval=0.5)
        assert done and second.alive(), second.log_tail()
        assert wait_settled([second], timeout=120), second.log_tail()
        assert status_counts(pg_dsn, tenant) == {"sent": TOTAL}
        ledger = sim.ledger("?summary=1")
        totals = ledger["totals"]
        print(f"drain: ledger sms {totals['sms']}, keys {ledger['keys']}, "
              f"keys accepted more than once {ledger['duplicates']}")
        assert ledger["duplicates"] == 0, "a message reached the carrier twice"
        assert totals["sms"] == TOTAL and ledger["keys"] == TOTAL
        # Every message has its sent event (a job whose offset was not stored is re-delivered
        # and finds its receipt final: its event is re-emitted, not sent again).
        sent = {json.loads(r["payload"])["data"]["message_id"]
                for r in consume(bootstrap, f"{ns}nudgel.delivery-status.v1")
                if json.loads(r["payload"])["type"] == "ai.nudgel.message.sent"}
        assert len(sent) == TOTAL
        assert second.stop() == 0, second.log_tail()
    finally:
        for w in workers:
            if w.alive():
                w.kill()
        sim.stop()
