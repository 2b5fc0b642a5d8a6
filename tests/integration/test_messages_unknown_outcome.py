"""Claims and unknown outcomes at a gateway without a client reference (issue 10, item 8;
DESIGN §5 "Idempotency by claim", "Unknown outcomes").

- A SIGKILL while most claimed jobs wait behind the gateway's TPS cap: only the requests
  handed to the carrier are `submitting` (with handed_at); the rest are `accepted` leases.
  After a restart the accepted ones are sent without doubt (once), and the ones that were at
  Africa's Talking are held by its default policy (final `failed`, `outcome_unknown`, evented,
  counted): the carrier counts every message exactly once.
- Answers lost after the request went out (the simulator takes the message, then closes the
  connection unanswered): with unknown_outcome=hold the message ends `failed` /
  `outcome_unknown` after one request; with resubmit it is sent again (today's behaviour).
"""
import json

from messages_harness import (FINAL_SQL, Worker, consume, count_where, enqueue, gateways_file,
                              make_topics, psql, wait_settled, wait_until)
from test_carrier_sim import Sim


def jobs(tenant, run_id, n, first=0):
    return [{"tenant_id": f"{tenant}-{i % 3}", "channel": "sms", "to": "+2547{:08d}".format(30_000_000 + i),
             "body": f"unknown {run_id} {i}", "idempotency_key": f"{run_id}-{i}"}
            for i in range(first, first + n)]


def events_of(bootstrap, ns):
    return [json.loads(r["payload"]) for r in consume(bootstrap, f"{ns}nudgel.delivery-status.v1")]


def test_sigkill_leaves_unsent_claims_accepted_and_at_holds_what_was_at_the_carrier(
        bootstrap, pg_dsn, topics_ready, run_id, tmp_path):
    total, in_flight = 30, 6
    sim = Sim("sim.at.latency_ms=4000")
    workers = []
    try:
        ns, tenant = f"uk{run_id}.", f"uk{run_id}"
        make_topics(ns, partitions=1)
        enqueue(ns, jobs(tenant, run_id, total))
        # 5 TPS and 6 requests at the carrier at most: nearly every claimed job waits.
        gw = gateways_file(sim, tmp_path / "gateways.json", "africastalking", tps=5)
        sets = (f"messages.gateway_max_in_flight={in_flight}", "messages.claim_stale_ms=1500",
                "messages.retry_delays_ms=500,500,500,500")
        first = Worker(ns, gw, tmp_path / "worker-1.log", *sets, worker_id=f"{tenant}-1")
        workers.append(first)
        wid = f"{tenant}-1"
        # Every job claimed, and the carrier holding its first requests (none answered yet).
        ready = wait_until(lambda: not first.alive() or (
            count_where(pg_dsn, tenant, f"claimed_by = '{wid}'") == total and
            sim.ledger("?summary=1")["totals"]["accepted"] >= in_flight), timeout=60, interval=0.1)
        assert ready and first.alive(), first.log_tail()
        first.kill()
        accepted = count_where(pg_dsn, tenant, f"status = 'accepted' AND claimed_by = '{wid}'")
        handed = count_where(pg_dsn, tenant, f"status = 'submitting' AND claimed_by = '{wid}' "
                                             "AND handed_at IS NOT NULL")
        at_carrier = sim.ledger("?summary=1")["totals"]["accepted"]
        print(f"\nSIGKILL: {handed} claims handed to the carrier (the carrier holds {at_carrier}), "
              f"{accepted} claimed and never sent, of {total}")
        # Before the fix every claimed job was `submitting`: recovery could not tell.
        assert handed == at_carrier, "submitting must mean: handed to the gateway"
        assert 0 < handed <= in_flight
        assert accepted == total - handed

        second = Worker(ns, gw, tmp_path / "worker-2.log", *sets, worker_id=f"{tenant}-2")
        workers.append(second)
        done = wait_until(lambda: not second.alive() or
                          count_where(pg_dsn, tenant, FINAL_SQL) == total, timeout=180,
                          interval=0.5)
        assert done and second.alive(), second.log_tail()
        assert wait_settled([second], timeout=60), second.log_tail()
        held = count_where(pg_dsn, tenant, "status = 'failed' AND error_code = 'outcome_unknown'")
        sent = count_where(pg_dsn, tenant, "status = 'sent'")
        ledger = sim.ledger("?summary=1")
        print(f"after restart: {sent} sent, {held} held (outcome_unknown); ledger sms "
              f"{ledger['totals']['sms']}, keys accepted twice {ledger['duplicates']}")
        assert held == handed and sent == total - handed
        assert ledger["duplicates"] == 0 and ledger["totals"]["sms"] == total
        metrics = second.metrics()
        assert metrics.get('nudgel_messages_outcome_unknown_held_total{gateway="sim-at"}') == held
        failed = [e for e in events_of(bootstrap, ns) if e["type"] == "ai.nudgel.message.failed"]
        assert len(failed) == held
        assert all(e["data"]["error"]["code"] == "outcome_unknown" and
                   e["data"]["gateway"] == "sim-at" for e in failed)
        assert second.stop() == 0
    finally:
        for w in workers:
            if w.alive():
                w.kill()
        sim.stop()


def test_lost_answers_held_or_resubmitted_by_policy(bootstrap, pg_dsn, topics_ready, run_id,
                                                   tmp_path):
    # The carrier takes every message, then closes the connection unanswered after 300 ms.
    sim = Sim("sim.at.timeout_permille=1000", "sim.at.timeout_accepts=true",
              "sim.at.timeout_hold_ms=300")
    workers = []
    try:
        for policy in ("hold", "resubmit"):
            ns, tenant = f"ul{policy[0]}{run_id}.", f"ul{policy[0]}{run_id}"
            make_topics(ns, partitions=1)
            enqueue(ns, jobs(tenant, run_id, 3))
            gw = gateways_file(sim, tmp_path / f"gateways-{policy}.json", "africastalking",
                               tps=100, unknown_outcome=policy)
            worker = Worker(ns, gw, tmp_path / f"worker-{policy}.log",
                            "messages.retry_delays_ms=100,100,100,100",
                            # the breaker stays closed: every attempt reaches the carrier
                            "messages.breaker_window=256", "messages.breaker_min_calls=256")
            workers.append(worker)
            done = wait_until(lambda: not worker.alive() or
                              count_where(pg_dsn, tenant, FINAL_SQL) == 3, timeout=60)
            assert done and worker.alive(), worker.log_tail()
            assert wait_settled([worker], timeout=60), worker.log_tail()
            rows = psql(pg_dsn, "SELECT status, error_code FROM nudgel.message_receipts WHERE "
                                f"tenant_id LIKE '{tenant}-%'").split()
            metrics = worker.metrics()
            unknown = metrics.get('nudgel_messages_outcome_unknown_total{gateway="sim-at"}')
            if policy == "hold":
                assert rows == ["failed|outcome_unknown"] * 3, rows
                assert unknown == 3
                assert metrics.get(
                    'nudgel_messages_outcome_unknown_held_total{gateway="sim-at"}') == 3
                # One request each: never resent.
                assert sim.ledger("?summary=1")["totals"]["requests"] == 3
            else:
                # Today's behaviour: sent again until the ladder ends (1 + 4 retries each).
                assert rows == ["failed|transport"] * 3, rows
                assert unknown == 15
                assert sim.ledger("?summary=1")["totals"]["requests"] == 3 + 15
            worker.stop()
    finally:
        for w in workers:
            if w.alive():
                w.kill()
        sim.stop()
