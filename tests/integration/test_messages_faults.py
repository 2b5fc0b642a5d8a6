"""nudgel-messages while the stack's Postgres or Kafka goes away mid-run.

These tests stop and start the services of the stack under test through
`scripts/stack down|up pg|kafka`, so they run only when NUDGEL_KAFKA_BOOTSTRAP
and NUDGEL_PG_DSN are that stack's own (else they skip), every test restores
the stack in a `finally` (both services up and answering) and ctest runs this
file alone (RUN_SERIAL in tests/CMakeLists.txt): other tests never see the
outage.

- Postgres stopped for 20 s (`pg_ctl stop -m fast`): the worker must stay up,
  pause consumption (the carrier sees at most the jobs already in flight, not
  new ones), fail nothing and dead-letter nothing, and once Postgres is back
  finish every job: each message sent exactly once at the carrier.
- The Kafka broker restarted (controlled shutdown, a few seconds down, start):
  nothing lost, every job final, no duplicate SMS (Infobip dialect).

Sizes: NUDGEL_TEST_OUTAGE_MESSAGES (default 8 000 per test).
"""
import json
import os
import time

import pytest

from conftest import headers_of
from messages_harness import (Stack, Worker, consume, count_where, enqueue, gateways_file,
                              make_topics, psql, status_counts, wait_settled, wait_until)
from test_carrier_sim import Sim

MAX_IN_FLIGHT = 500


@pytest.fixture
def stack():
    s = Stack()
    if not s.is_under_test():
        pytest.skip("NUDGEL_KAFKA_BOOTSTRAP / NUDGEL_PG_DSN are not scripts/stack's own stack "
                    "(with the same NUDGEL_STACK_* settings): nothing of it is stopped")
    yield s
    s.restore()


def outage_jobs(tenant, run_id, total):
    numbers = ["+2547{:08d}", "+2567{:08d}"]
    return [{"tenant_id": f"{tenant}-{i % 13}", "channel": "sms",
             "to": numbers[i % 2].format(20_000_000 + i), "body": f"outage {run_id} {i}",
             "idempotency_key": f"{run_id}-{i}"} for i in range(total)]


def finish_run(pg_dsn, ns, gw, tenant, total, worker, tmp_path, sets, problems):
    """Waits until every job is final. A worker that died is noted and replaced, so
    what it left behind is still checked (nothing lost, nothing doubled)."""
    deadline = time.monotonic() + 600
    replacements = 0
    while time.monotonic() < deadline:
        if count_where(pg_dsn, tenant, "status NOT IN ('accepted', 'submitting')") == total:
            break
        if not worker.alive():
            problems.append(f"the worker exited {worker.proc.returncode}; last log lines:\n"
                            f"{worker.log_tail(15)}")
            replacements += 1
            worker = Worker(ns, gw, tmp_path / f"worker-r{replacements}.log", *sets)
        time.sleep(0.5)
    # The last events and offsets: nothing in flight, every record committed.
    settled = wait_settled([worker], timeout=60)
    alive = worker.alive()
    code = worker.stop()
    if not alive or code != 0:
        problems.append(f"the last worker exited {code}:\n{worker.log_tail(15)}")
    elif not settled:
        problems.append("jobs left in flight or records not committed after 60 s:\n"
                        f"{worker.log_tail(15)}")
    return worker


def check_all_sent_once(bootstrap, pg_dsn, sim, ns, tenant, total, problems, label):
    counts = status_counts(pg_dsn, tenant)
    ledger = sim.ledger("?summary=1")
    totals = ledger["totals"]
    dead = consume(bootstrap, f"{ns}nudgel.messages.dlq.v1")
    sent_events = {json.loads(r["payload"])["data"]["message_id"]
                   for r in consume(bootstrap, f"{ns}nudgel.delivery-status.v1")
                   if json.loads(r["payload"])["type"] == "ai.nudgel.message.sent"}
    print(f"{label}: receipts {counts}; ledger sms {totals['sms']} keys {ledger['keys']} "
          f"(resubmitted keys {ledger['duplicates']}, repeat attempts "
          f"{totals['duplicate_attempts']}); dead letters {len(dead)}; "
          f"messages with a sent event {len(sent_events)}")
    if counts != {"sent": total}:
        problems.append(f"receipts are not all sent: {counts}")
    if dead:
        reasons = [headers_of(d).get("nudgel-dlq-reason") for d in dead[:3]]
        problems.append(f"{len(dead)} dead letters, e.g. {reasons}")
    if totals["sms"] != total or ledger["keys"] != total:
        problems.append(f"the carrier has {totals['sms']} SMS for {ledger['keys']} keys, "
                        f"expected {total} once each")
    if len(sent_events) != total:
        problems.append(f"{total - len(sent_events)} messages without a sent event")


def test_postgres_stopped_20s_mid_run(stack, bootstrap, pg_dsn, topics_ready, run_id, tmp_path):
    total = int(os.environ.get("NUDGEL_TEST_OUTAGE_MESSAGES", "8000"))
    sim = Sim("sim.infobip.latency_ms=10", "sim.infobip.jitter_ms=10")
    problems = []
    try:
        ns, tenant = f"fp{run_id}.", f"fp{run_id}"
        make_topics(ns, partitions=6)
        enqueue(ns, outage_jobs(tenant, run_id, total))
        gw = gateways_file(sim, tmp_path / "gateways.json", "infobip", tps=100000)
        sets = (f"messages.max_in_flight={MAX_IN_FLIGHT}",
                "messages.retry_delays_ms=500,500,500,500", "messages.claim_stale_ms=5000",
                "pg.connect_timeout_s=2")
        started = time.monotonic()
        worker = Worker(ns, gw, tmp_path / "worker.log", *sets)
        wait_until(lambda: (count_where(pg_dsn, tenant, "status NOT IN ('accepted', 'submitting')") or 0)
                   >= total // 5 or not worker.alive(), timeout=300)
        assert worker.alive(), worker.log_tail()
        before = count_where(pg_dsn, tenant, "status NOT IN ('accepted', 'submitting')")

        stack.down("pg")
        stopped = time.monotonic()
        # Counted once Postgres is down: from here no claim can succeed, so the
        # carrier may only see jobs the worker had already claimed (in flight).
        sms_at_stop = sim.ledger("?summary=1")["totals"]["sms"]
        print(f"\npostgres stop: stopped at {stopped - started:.1f}s with {before}/{total} final")
        samples = []
        while time.monotonic() - stopped < 20:
            time.sleep(2)  # a sample every 2 s of a 20 s outage: the span is the test
            m = worker.metrics()
            samples.append((round(time.monotonic() - stopped, 1),
                            sim.ledger("?summary=1")["totals"]["sms"] - sms_at_stop,
                            m.get("nudgel_messages_in_flight"),
                            m.get("nudgel_messages_postgres_up"), worker.alive()))
        print("postgres stop: (seconds, new SMS at the carrier, jobs in flight, postgres_up "
              f"gauge, worker alive) during the outage: {samples}")
        grew = samples[-1][1]
        if any(not s[4] for s in samples):
            problems.append("the worker exited while Postgres was away")
        # Consumption paused: the carrier saw at most the jobs already in flight.
        if grew > MAX_IN_FLIGHT:
            problems.append(f"{grew} new SMS during the outage: more than the {MAX_IN_FLIGHT} "
                            "jobs in flight at the stop; consumption did not pause")
        if samples[-1][1] != samples[len(samples) // 2][1]:
            problems.append("SMS still reached the carrier in the second half of the outage")
        stack.up("pg")
        restarted = time.monotonic()
        worker = finish_run(pg_dsn, ns, gw, tenant, total, worker, tmp_path, sets, problems)
        print(f"postgres stop: every job final {time.monotonic() - restarted:.1f}s after the "
              f"restart; {time.monotonic() - started:.1f}s in all")
        check_all_sent_once(bootstrap, pg_dsn, sim, ns, tenant, total, problems, "postgres stop")
        assert not problems, "\n".join(problems)
    finally:
        sim.stop()


def test_kafka_broker_restarted_mid_run(stack, bootstrap, pg_dsn, topics_ready, run_id, tmp_path):
    total = int(os.environ.get("NUDGEL_TEST_OUTAGE_MESSAGES", "8000"))
    sim = Sim("sim.infobip.latency_ms=10", "sim.infobip.jitter_ms=10")
    problems = []
    try:
        ns, tenant = f"fk{run_id}.", f"fk{run_id}"
        make_topics(ns, partitions=6)
        enqueue(ns, outage_jobs(tenant, run_id, total))
        gw = gateways_file(sim, tmp_path / "gateways.json", "infobip", tps=100000)
        sets = ("messages.retry_delays_ms=500,500,500,500", "messages.claim_stale_ms=5000")
        started = time.monotonic()
        worker = Worker(ns, gw, tmp_path / "worker.log", *sets)
        wait_until(lambda: (count_where(pg_dsn, tenant, "status NOT IN ('accepted', 'submitting')") or 0)
                   >= total // 4 or not worker.alive(), timeout=300)
        assert worker.alive(), worker.log_tail()
        before = count_where(pg_dsn, tenant, "status NOT IN ('accepted', 'submitting')")
        stack.down("kafka")
        down_at = time.monotonic()
        time.sleep(5)  # the outage itself lasts 5 s: a span of time, not a wait for state
        stack.up("kafka")
        print(f"\nbroker restart: down at {down_at - started:.1f}s with {before}/{total} final, "
              f"up again {time.monotonic() - down_at:.1f}s later")
        if not worker.alive():
            problems.append("the worker exited while the broker was away")
        worker = finish_run(pg_dsn, ns, gw, tenant, total, worker, tmp_path, sets, problems)
        print(f"broker restart: {time.monotonic() - started:.1f}s in all")
        check_all_sent_once(bootstrap, pg_dsn, sim, ns, tenant, total, problems,
                            "broker restart")
        assert not problems, "\n".join(problems)
    finally:
        sim.stop()
