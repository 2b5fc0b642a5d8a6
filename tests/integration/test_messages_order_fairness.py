"""nudgel-messages: one recipient's jobs in order, and tenant limits (DESIGN §5).

Real Kafka, Postgres and the carrier simulator, as test_messages_worker.py.

- Ordering: 20 recipients × 8 jobs of one tenant, the simulator answering
  after 5–35 ms at random. Submitted concurrently they would reach the
  carrier in a jumble; the worker holds each recipient's next job until the
  one before it is answered, so the simulator's ledger shows every
  recipient's jobs arriving in the order they were enqueued.
- Fairness: a heavy tenant limited to 50 sends/s in nudgel.tenant_limits
  enqueues 400 jobs, then a light tenant on the same partition enqueues 40
  behind them. The heavy tenant's sends spread over the time its rate allows,
  and the light tenant's all go out early, not behind the heavy backlog.
"""
import datetime
import time

from conftest import java_partition
from test_carrier_sim import Sim
from test_messages_worker import enqueue, gateways_file, make_topics, psql, run_worker


def ledger_first_seen(sim):
    """message id (the Infobip client reference) → when the simulator first accepted it."""
    entries = sim.ledger("?limit=100000")["entries"]
    return {e["key"]: datetime.datetime.fromisoformat(e["first"].replace("Z", "+00:00"))
            for e in entries}


def test_one_recipients_jobs_reach_the_carrier_in_order(pg_dsn, topics_ready, run_id, tmp_path):
    sim = Sim("sim.infobip.latency_ms=5", "sim.infobip.jitter_ms=30")
    try:
        ns = f"mo{run_id}."
        make_topics(ns)
        tenant = f"mo{run_id}"
        jobs = [{"tenant_id": f"{tenant}-0", "channel": "sms", "to": f"+2547220{r:05d}",
                 "body": f"step {k} of 8", "idempotency_key": f"{run_id}-{r}-{k}"}
                for k in range(8) for r in range(20)]
        enqueue(ns, jobs)
        run_worker(ns, gateways_file(sim, tmp_path), pg_dsn, tenant, len(jobs), timeout=120)
        rows = psql(pg_dsn, "SELECT message_id, idempotency_key FROM nudgel.message_receipts "
                            f"WHERE tenant_id = '{tenant}-0' AND status = 'sent'")
        seen = ledger_first_seen(sim)
        by_recipient = {}
        for line in rows.splitlines():
            message_id, key = line.split("|")
            _, r, k = key.rsplit("-", 2)
            by_recipient.setdefault(int(r), []).append((int(k), seen[message_id]))
        assert len(by_recipient) == 20
        out_of_order = 0
        for r, sends in by_recipient.items():
            sends.sort()
            assert [k for k, _ in sends] == list(range(8)), f"recipient {r}: {sends}"
            times = [t for _, t in sends]
            # Each job is submitted only after the one before was answered
            # (>= 5 ms later), so arrival times strictly increase.
            out_of_order += sum(1 for a, b in zip(times, times[1:]) if b <= a)
        assert out_of_order == 0, f"{out_of_order} jobs reached the carrier before an earlier one"
        assert sim.ledger("?summary=1")["duplicates"] == 0
    finally:
        sim.stop()


def test_a_rate_limited_tenant_does_not_hold_back_another(pg_dsn, topics_ready, run_id,
                                                          tmp_path):
    sim = Sim()
    try:
        ns = f"mt{run_id}."
        make_topics(ns)  # 3 partitions
        prefix = f"mt{run_id}"
        heavy = f"{prefix}-heavy"
        # A light tenant whose jobs land on the heavy tenant's partition, behind its backlog.
        light = next(f"{prefix}-light{i}" for i in range(1000)
                     if java_partition(f"{prefix}-light{i}", 3) == java_partition(heavy, 3))
        psql(pg_dsn, "INSERT INTO nudgel.tenant_limits (tenant_id, max_in_flight, "
                     f"send_rate_per_second, burst) VALUES ('{heavy}', 20, 50, 10)")
        jobs = [{"tenant_id": heavy, "channel": "sms", "to": f"+2547221{i:05d}",
                 "body": f"bulk {i}"} for i in range(400)]
        jobs += [{"tenant_id": light, "channel": "sms", "to": f"+2567721{i:05d}",
                  "body": f"otp {i}"} for i in range(40)]
        enqueue(ns, jobs)
        started = time.time()
        run_worker(ns, gateways_file(sim, tmp_path), pg_dsn, prefix, len(jobs), timeout=120)

        def submitted(tenant):
            rows = psql(pg_dsn, "SELECT extract(epoch from submitted_at) FROM "
                                f"nudgel.message_receipts WHERE tenant_id = '{tenant}' "
                                "AND status = 'sent' ORDER BY 1")
            return [float(x) for x in rows.split()]

        heavy_at, light_at = submitted(heavy), submitted(light)
        assert len(heavy_at) == 400 and len(light_at) == 40
        heavy_span = heavy_at[-1] - heavy_at[0]
        # 400 sends at 50/s after a burst of 10 need at least 7.8 s.
        print(f"\nheavy tenant: 400 sends over {heavy_span:.1f}s "
              f"({399 / heavy_span:.0f}/s); light tenant done "
              f"{light_at[-1] - started:.1f}s after the worker started")
        assert heavy_span >= 7.0, f"heavy tenant sent 400 in {heavy_span:.1f}s: not rate limited"
        # The light tenant finishes while the heavy one has most of its backlog left.
        heavy_midpoint = heavy_at[len(heavy_at) // 2]
        assert light_at[-1] < heavy_midpoint, \
            "the light tenant waited behind the heavy tenant's backlog"
    finally:
        sim.stop()
