"""nudgel-messages killed with SIGKILL at random moments, and two workers of one group.

Kills: the worker is killed five times at random moments (seeded; the seed,
the moments and the durations are printed) and restarted each time, then a
last worker finishes. Every message must end with a final receipt; what
reached the carrier is counted at the simulator's ledger:

- Infobip takes our message id as its client reference, so a resubmission of
  a claim the dead worker left in `submitting` is a repeat, not a second SMS:
  duplicate SMS must be 0 (the ledger's `duplicates`, keys accepted more than
  once, counts those repeats and is printed).
- Africa's Talking has no client reference: a job the carrier accepted just
  before a kill, whose receipt was not yet written, is sent again (the gateway
  is set to unknown_outcome=resubmit here, so those duplicates happen and are
  measured; its default, hold, would end them failed/outcome_unknown). Those
  duplicates are printed and must stay within what was really at the carrier
  at the kills: the requests each killed worker had handed to the gateway and
  not yet recorded (its `submitting` claims with handed_at: DESIGN §5, the only
  window for a duplicate is between a carrier's accept and the result write).
  Claims a killed worker held but had not handed over (`accepted`) are printed
  too: they are resumed without doubt and must not add a duplicate. Also
  printed: the duplicates per kill against messages.gateway_max_in_flight.

Sizes come from the environment: NUDGEL_TEST_KILL_MESSAGES (Infobip, default
50 000), NUDGEL_TEST_KILL_AT_MESSAGES (Africa's Talking, default 5 000),
NUDGEL_TEST_SEED (default: random, printed).
"""
import json
import os
import random
import time

from messages_harness import (Worker, consume, count_where, enqueue, gateways_file, make_topics,
                              psql, status_counts, wait_settled, wait_until)
from test_carrier_sim import Sim

KILLS = 5
MAX_IN_FLIGHT = 500  # messages.max_in_flight: jobs one worker holds at once
GATEWAY_MAX_IN_FLIGHT = 64  # messages.gateway_max_in_flight: submissions awaiting an answer


def seeded_rng(label):
    seed = int(os.environ.get("NUDGEL_TEST_SEED") or random.SystemRandom().randrange(1 << 31))
    print(f"\n{label}: seed {seed} (NUDGEL_TEST_SEED={seed} repeats these moments)")
    return random.Random(seed)


def jobs_for(tenant, run_id, count, tenants=20):
    numbers = ["+2547{:08d}", "+2567{:08d}"]  # KE, UG
    return [{"tenant_id": f"{tenant}-{i % tenants}", "channel": "sms",
             "to": numbers[i % 2].format(10_000_000 + i), "body": f"kill test {run_id} {i}",
             "idempotency_key": f"{run_id}-{i}"} for i in range(count)]


def sent_event_ids(bootstrap, ns):
    """{message id: {(event id, data.attempt)}} of the sent events on the status topic."""
    out = {}
    for rec in consume(bootstrap, f"{ns}nudgel.delivery-status.v1", timeout=600):
        ev = json.loads(rec["payload"])
        if ev["type"] == "ai.nudgel.message.sent":
            out.setdefault(ev["data"]["message_id"], set()).add((ev["id"], ev["data"]["attempt"]))
    return out


def run_with_kills(bootstrap, pg_dsn, ns, gw, tenant, total, rng, tmp_path, label):
    """Five workers killed at random moments, then one that finishes. Returns the kills."""
    sets = ("messages.claim_stale_ms=2000", "messages.retry_delays_ms=500,500,500,500",
            f"messages.max_in_flight={MAX_IN_FLIGHT}",
            f"messages.gateway_max_in_flight={GATEWAY_MAX_IN_FLIGHT}")
    # A random moment: once this worker has finished a random share of the
    # run (1% to 8% of it: each kill lands mid-run, with work in flight,
    # however fast the machine, and the last worker still has work), then
    # 0-500 ms more.
    kills = []
    started = time.monotonic()
    for n in range(KILLS):
        wid = f"{tenant}-kill{n}"
        threshold = min(total - 1, count_where(pg_dsn, tenant, "status NOT IN ('accepted', 'submitting')") +
                        rng.randint(max(1, total // 100), total * 8 // 100))
        worker = Worker(ns, gw, tmp_path / f"worker-{n}.log", *sets, worker_id=wid)
        reached = wait_until(lambda: not worker.alive() or
                             (count_where(pg_dsn, tenant, "status NOT IN ('accepted', 'submitting')") or 0)
                             >= threshold, timeout=600, interval=0.1)
        assert reached and worker.alive(), f"worker {n} died or stalled:\n{worker.log_tail()}"
        time.sleep(rng.uniform(0, 0.5))  # the random moment itself (seeded), not a wait
        worker.kill()
        at_kill = count_where(pg_dsn, tenant, "status NOT IN ('accepted', 'submitting')")
        # Handed to the gateway and unanswered (or answered, not yet recorded): what the
        # carrier may hold of this worker's requests. Claimed and never handed over: no doubt.
        handed = count_where(pg_dsn, tenant, f"status = 'submitting' AND claimed_by = '{wid}' "
                                             "AND handed_at IS NOT NULL")
        unsent = count_where(pg_dsn, tenant, f"status = 'accepted' AND claimed_by = '{wid}'")
        kills.append({"at_final": at_kill, "threshold": threshold, "in_flight": handed,
                      "unsent": unsent, "t": round(time.monotonic() - started, 1)})
        print(f"{label}: kill {n + 1} at {time.monotonic() - started:.1f}s, "
              f"{at_kill}/{total} final, {handed} requests at the gateway (submitting), "
              f"{unsent} claims never handed over (accepted)")
    last = Worker(ns, gw, tmp_path / "worker-last.log", *sets, worker_id=f"{tenant}-last")
    done = wait_until(lambda: not last.alive() or
                      count_where(pg_dsn, tenant, "status NOT IN ('accepted', 'submitting')") == total,
                      timeout=900, interval=0.5)
    # A receipt written just before a kill whose event was not yet acknowledged
    # is re-delivered and its event re-emitted by a later worker: wait for the
    # events too (the last worker may first wait for the dead one's session).
    wait_until(lambda: not last.alive() or len(sent_event_ids(bootstrap, ns)) >= total,
               timeout=120, interval=2)
    # The offsets of the last jobs: nothing in flight, every record committed.
    settled = done and wait_settled([last], timeout=120)
    alive = last.alive()
    code = last.stop()
    elapsed = time.monotonic() - started
    assert alive and code == 0, f"the last worker exited {code}:\n{last.log_tail()}"
    assert done, f"not every message is final:\n{last.log_tail()}"
    assert settled, f"jobs left in flight or records not committed:\n{last.log_tail()}"
    print(f"{label}: {total} messages with {KILLS} kills in {elapsed:.1f}s "
          f"({total / elapsed:.0f}/s)")
    return kills


def check_every_message_sent_with_one_event(bootstrap, pg_dsn, ns, tenant, total):
    counts = status_counts(pg_dsn, tenant)
    assert counts == {"sent": total}, counts
    ids = set(psql(pg_dsn, "SELECT message_id FROM nudgel.message_receipts WHERE "
                           f"tenant_id LIKE '{tenant}-%'").split())
    sent_events = sent_event_ids(bootstrap, ns)
    assert set(sent_events) == ids, f"{len(ids - set(sent_events))} messages without a sent event"
    # DESIGN §4: the same transition always yields the same event id, so a sent
    # event re-emitted after a redelivery must repeat the first one's id.
    split = {m: sorted(v) for m, v in sent_events.items() if len(v) > 1}
    assert not split, (f"{len(split)} messages have sent events with different ids, e.g. "
                       f"{next(iter(split.items()))} (event id, data.attempt)")


def test_infobip_sigkill_five_times_nothing_lost_no_duplicate_sms(bootstrap, pg_dsn, topics_ready,
                                                                 run_id, tmp_path):
    total = int(os.environ.get("NUDGEL_TEST_KILL_MESSAGES", "50000"))
    rng = seeded_rng("infobip kills")
    sim = Sim()
    try:
        ns, tenant = f"kb{run_id}.", f"kb{run_id}"
        make_topics(ns, partitions=6)
        t0 = time.monotonic()
        enqueue(ns, jobs_for(tenant, run_id, total))
        print(f"infobip kills: enqueued {total} in {time.monotonic() - t0:.1f}s")
        gw = gateways_file(sim, tmp_path / "gateways.json", "infobip", tps=100000)
        run_with_kills(bootstrap, pg_dsn, ns, gw, tenant, total, rng, tmp_path, "infobip kills")
        ledger = sim.ledger("?summary=1")
        totals = ledger["totals"]
        print(f"infobip kills: ledger sms {totals['sms']}, keys resubmitted "
              f"{ledger['duplicates']}, repeat attempts {totals['duplicate_attempts']}, "
              f"duplicate SMS {totals['sms'] - total}")
        assert totals["sms"] == total, "duplicate or missing SMS at the carrier"
        assert ledger["keys"] == total
        check_every_message_sent_with_one_event(bootstrap, pg_dsn, ns, tenant, total)
    finally:
        sim.stop()


def test_africastalking_sigkill_duplicates_bounded_by_in_flight(bootstrap, pg_dsn, topics_ready,
                                                                run_id, tmp_path):
    total = int(os.environ.get("NUDGEL_TEST_KILL_AT_MESSAGES", "5000"))
    rng = seeded_rng("africastalking kills")
    # Some latency keeps submissions in flight at the carrier when a kill lands.
    sim = Sim("sim.at.latency_ms=20", "sim.at.jitter_ms=40")
    try:
        ns, tenant = f"ka{run_id}.", f"ka{run_id}"
        make_topics(ns, partitions=6)
        enqueue(ns, jobs_for(tenant, run_id, total))
        gw = gateways_file(sim, tmp_path / "gateways.json", "africastalking", tps=100000,
                           unknown_outcome="resubmit")
        kills = run_with_kills(bootstrap, pg_dsn, ns, gw, tenant, total, rng, tmp_path,
                               "africastalking kills")
        ledger = sim.ledger("?summary=1")
        totals = ledger["totals"]
        duplicates = totals["sms"] - total
        at_carrier = sum(k["in_flight"] for k in kills)
        unsent = sum(k["unsent"] for k in kills)
        print(f"africastalking kills: {duplicates} duplicate SMS (ledger duplicates "
              f"{ledger['duplicates']}); requests at the gateway at the kills "
              f"{[k['in_flight'] for k in kills]} = {at_carrier}; claims never handed over "
              f"{[k['unsent'] for k in kills]} = {unsent}; {duplicates / KILLS:.0f} per kill "
              f"against {GATEWAY_MAX_IN_FLIGHT} submissions awaiting the carrier")
        assert totals["sms"] >= total and ledger["keys"] == total, "a message never reached AT"
        # Only what was really at the carrier may come twice: a claim never handed over is
        # resumed without doubt.
        assert duplicates <= at_carrier, "more duplicates than requests at the carrier"
        assert duplicates <= KILLS * MAX_IN_FLIGHT
        check_every_message_sent_with_one_event(bootstrap, pg_dsn, ns, tenant, total)
    finally:
        sim.stop()


def test_two_workers_share_partitions_and_send_each_message_once(bootstrap, pg_dsn, topics_ready,
                                                                 run_id, tmp_path):
    """A second worker joins mid-run (scale-out): both must hold partitions of the jobs
    topic and send (from their /metrics), and together send each message exactly once."""
    total = int(os.environ.get("NUDGEL_TEST_TWO_WORKER_MESSAGES", "6000"))
    # A slow carrier (200 ms, 32 submissions in flight per worker: about 160/s
    # each) so the run outlasts the rebalance however fast the worker gets.
    sim = Sim("sim.infobip.latency_ms=200", "sim.infobip.jitter_ms=20")
    sets = ("messages.gateway_max_in_flight=32",)
    workers = []
    try:
        ns, tenant = f"k2{run_id}.", f"k2{run_id}"
        make_topics(ns, partitions=6)
        enqueue(ns, jobs_for(tenant, run_id, total, tenants=37))
        gw = gateways_file(sim, tmp_path / "gateways.json", "infobip", tps=100000)
        started = time.monotonic()
        workers.append(Worker(ns, gw, tmp_path / "worker-a.log", *sets))
        wait_until(lambda: (count_where(pg_dsn, tenant, "status NOT IN ('accepted', 'submitting')") or 0)
                   >= total // 10 or not workers[0].alive(), timeout=300)
        workers.append(Worker(ns, gw, tmp_path / "worker-b.log", *sets))
        joined = time.monotonic() - started
        done = wait_until(lambda: count_where(pg_dsn, tenant, "status NOT IN ('accepted', 'submitting')") == total
                          or not all(w.alive() for w in workers), timeout=600, interval=0.5)
        # The last events and offsets: neither worker has a job in flight, every record
        # committed (so the counters read next are final too).
        settled = done and wait_settled(workers, timeout=60)
        alive = [w.alive() for w in workers]
        sent = [w.metrics().get('nudgel_messages_outcomes_total{outcome="sent"}', 0)
                for w in workers]
        shares = [w.assigned_jobs_partitions() for w in workers]
        codes = [w.stop() for w in workers]
        elapsed = time.monotonic() - started
        print(f"\ntwo workers: {total} messages in {elapsed:.1f}s; the second joined at "
              f"{joined:.1f}s; sent {sent[0]:.0f} + {sent[1]:.0f}; jobs-topic partitions held "
              f"over time {shares[0]} and {shares[1]}")
        assert alive == [True, True] and codes == [0, 0], \
            "\n".join(w.log_tail() for w in workers)
        assert done
        assert settled, "jobs left in flight or records not committed"
        assert max(shares[1], default=0) > 0, "the second worker never got a partition"
        assert min((shares[0] or [0])[-1], (shares[1] or [0])[-1]) > 0, \
            "the partitions ended up on one worker"
        assert sent[0] > 0 and sent[1] > 0, f"one worker sent nothing: {sent}"
        assert status_counts(pg_dsn, tenant) == {"sent": total}
        ledger = sim.ledger("?limit=1000000")
        counts = [e["count"] for e in ledger["entries"]]
        assert len(counts) == total and set(counts) == {1}, \
            f"{sum(c > 1 for c in counts)} messages accepted more than once"
        assert ledger["totals"]["sms"] == total and ledger["duplicates"] == 0
    finally:
        for w in workers:
            if w.alive():
                w.kill()
        sim.stop()
