"""nudgel-receipts end to end (issue 11): real Kafka, Postgres, nudgel-messages and the
carrier simulator send the messages; carrier DLR v1 records (what nudgel-dlr produces)
are produced straight to the namespace's nudgel.carrier-dlr.v1 with kcat; nudgel-receipts
applies them.

- 80% delivered, 15% failed, 5% no report → each receipt final per its report, or
  `expired` (error dlr_timeout) after the shortened window;
- the same reports shuffled, 10% duplicated, with intermediate reports and late
  contradicting ones → the same final states;
- a report before its `sent` outcome is kept and applied when the outcome lands;
- nudgel-receipts SIGKILLed during the run → every report applied once in effect (one
  history row per transition, event ids dedupe to one per final state).

Every final state is checked against the status events read back from Kafka (schema
validated), whose ids equal the ids written on the history rows. NUDGEL_TEST_DLR_COUNT
sets the messages per scenario (default 2000; CI: 20000). A seed is printed.
"""
import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import binary, load_schema, scrape_metrics
from messages_harness import (Worker, consume, enqueue, make_topics, psql, wait_settled,
                              wait_until)
from test_carrier_sim import Sim

COUNT = int(os.environ.get("NUDGEL_TEST_DLR_COUNT", "2000"))
EXPIRY_S = 15


class Receipts:
    """One nudgel-receipts process on namespace @ns; its log in @log_path."""

    def __init__(self, ns, log_path, gateway, *sets):
        self.log_path = Path(log_path)
        args = [binary("nudgel-receipts"), "--set", f"topics.namespace={ns}",
                "--set", f"receipts.group_id=r-{ns}", "--set", "metrics.port=0",
                "--set", "log.level=info", "--set", "kafka.auto.commit.interval.ms=200",
                "--set", "kafka.session.timeout.ms=6000",
                "--set", "receipts.sweep_interval_ms=200",
                # the short window only for this run's gateway: the sweep sees the whole
                # database, other runs' receipts included
                "--set", f"receipts.expiry_by_gateway={gateway}={EXPIRY_S}"]
        for s in sets:
            args += ["--set", s]
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self._log)

    def alive(self):
        return self.proc.poll() is None

    def metrics(self):
        m = re.search(r"metrics on port (\d+)", self.log_path.read_text(errors="replace"))
        return scrape_metrics(int(m.group(1))) if m else {}

    def kill(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._log.close()
        return rc


@pytest.fixture
def stack(tmp_path, topics_ready, run_id):
    """A namespace with its topics, a simulator and a messages worker; stopped after."""
    ns = f"t{run_id}."
    make_topics(ns, partitions=3)
    sim = Sim()
    gateway = f"ib-{run_id}"
    gw = tmp_path / "gateways.json"
    gw.write_text(json.dumps({
        "gateways": [{"name": gateway, "dialect": "infobip",
                      "base_url": f"http://127.0.0.1:{sim.port}/infobip",
                      "api_key_env": "NUDGEL_TEST_INFOBIP_KEY", "tps": 2000,
                      "sender_id": "NUDGEL"}],
        "routes": [{"country": "KE", "operator": "*", "gateways": [gateway]}]}))
    worker = Worker(ns, gw, tmp_path / "messages.log")
    yield {"ns": ns, "tenant": f"r{run_id}", "tmp": tmp_path, "worker": worker,
           "gateway": gateway}
    worker.stop()
    sim.stop()


def send_messages(st, pg_dsn, n):
    """@n messages through nudgel-messages; returns {message_id: gateway_message_id} once every
    receipt is sent."""
    tenant = st["tenant"]
    jobs = [{"tenant_id": f"{tenant}-{i % 7}", "channel": "sms",
             "to": f"+2547{i % 3 + 10}{i:06d}", "body": f"message {i}"} for i in range(n)]
    enqueue(st["ns"], jobs)
    assert wait_settled([st["worker"]], timeout=300), st["worker"].log_tail()
    rows = psql(pg_dsn, "SELECT message_id, status, gateway, gateway_message_id FROM "
                        f"nudgel.message_receipts WHERE tenant_id LIKE '{tenant}-%'")
    out = {}
    for line in rows.splitlines():
        mid, status, gateway, gmid = line.split("|")
        assert status == "sent" and gateway == st["gateway"] and gmid, line
        out[mid] = gmid
    assert len(out) == n
    return out


def dlr(gateway, gmid, status, raw, **extra):
    rec = {"gateway": gateway, "gateway_message_id": gmid, "status": status,
           "raw_status": raw, "dialect": "infobip",
           "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    rec.update(extra)
    return rec


def plan(gateway, sent, seed):
    """{message_id: final state} and one report per message that has one: 80% delivered,
    15% failed, 5% none."""
    rng = random.Random(seed)
    want, reports = {}, []
    for mid, gmid in sorted(sent.items()):
        r = rng.random()
        if r < 0.80:
            want[mid] = "delivered"
            reports.append(dlr(gateway, gmid, "delivered", "DELIVERED_TO_HANDSET", network_code="63903",
                               cost={"amount": "0.0050", "currency": "EUR"}))
        elif r < 0.95:
            want[mid] = "undelivered"
            reports.append(dlr(gateway, gmid, "undelivered", "UNDELIVERABLE_NOT_DELIVERED",
                               error={"code": "EC_ABSENT_SUBSCRIBER", "message": "absent",
                                      "permanent": False}))
        else:
            want[mid] = "expired"
    return want, reports


def produce(ns, reports):
    """Each report as one record keyed by gateway_message_id (kcat, acks=all)."""
    lines = "".join(f"{r['gateway_message_id']}\t{json.dumps(r)}\n" for r in reports)
    subprocess.run(["kcat", "-P", "-b", os.environ["NUDGEL_KAFKA_BOOTSTRAP"], "-t",
                    f"{ns}nudgel.carrier-dlr.v1", "-K", "\t", "-X", "acks=all",
                    "-H", "nudgel-schema=carrier.dlr/v1"],
                   input=lines.encode(), check=True, capture_output=True, timeout=300)


def statuses(pg_dsn, tenant):
    rows = psql(pg_dsn, "SELECT message_id, status FROM nudgel.message_receipts WHERE "
                        f"tenant_id LIKE '{tenant}-%'")
    return dict(line.split("|") for line in rows.splitlines())


def wait_final(pg_dsn, tenant, n, timeout):
    def done():
        out = psql(pg_dsn, "SELECT count(*) FROM nudgel.message_receipts WHERE tenant_id LIKE "
                           f"'{tenant}-%' AND status IN ('delivered','undelivered','expired')")
        return int(out) == n
    return wait_until(done, timeout, interval=0.5)


def check_events_and_history(pg_dsn, ns, tenant, want):
    """One history row per final transition, its event on Kafka with the same id (the only
    id for that message and state), schema-valid."""
    hist = psql(pg_dsn, "SELECT h.message_id, h.to_status, h.event_id, count(*) OVER "
                        "(PARTITION BY h.message_id, h.from_status, h.to_status) FROM "
                        "nudgel.message_receipt_history h JOIN nudgel.message_receipts r USING "
                        f"(message_id) WHERE r.tenant_id LIKE '{tenant}-%' AND h.to_status IN "
                        "('delivered','undelivered','expired')")
    history = {}
    for line in hist.splitlines():
        mid, to, eid, dup = line.split("|")
        assert dup == "1", line
        assert mid not in history, f"two final transitions for {mid}"
        history[mid] = (to, eid)
    assert {m: s for m, (s, _) in history.items()} == want
    validator = load_schema("status.event.v1.schema.json")

    def read():
        ids = {}
        for rec in consume(os.environ["NUDGEL_KAFKA_BOOTSTRAP"],
                           f"{ns}nudgel.delivery-status.v1"):
            ev = json.loads(rec["payload"])
            if ev["source"] != "/nudgel/receipts" or ev["subject"] not in want:
                continue
            validator.validate(ev)
            ids.setdefault(ev["subject"], set()).add((ev["type"], ev["id"]))
        return ids

    ids = wait_until(lambda: (lambda got: got if len(got) == len(want) else None)(read()), 60,
                     interval=1) or read()
    assert len(ids) == len(want)
    for mid, (to, eid) in history.items():
        assert ids[mid] == {(f"ai.nudgel.message.{to}", eid)}, (mid, ids[mid], eid)


def run_scenario(stack, pg_dsn, shuffle_dups, kill_at=None):
    seed = int(os.environ.get("NUDGEL_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed {seed} count {COUNT}")
    rng = random.Random(seed)
    sent = send_messages(stack, pg_dsn, COUNT)
    gateway = stack["gateway"]
    want, reports = plan(gateway, sent, seed)
    if shuffle_dups:
        extra = [dict(r) for r in rng.sample(reports, len(reports) // 10)]
        # intermediate reports, and late ones contradicting a final report
        extra += [dlr(gateway, r["gateway_message_id"], "buffered", "DELIVERED_TO_OPERATOR",
                      network_code="63902") for r in rng.sample(reports, len(reports) // 10)]
        late = [dlr(gateway, r["gateway_message_id"], "undelivered", "UNDELIVERABLE_REJECTED_OPERATOR",
                    error={"code": "late"})
                for r in rng.sample(reports, len(reports) // 20) if r["status"] == "delivered"]
        reports = reports + extra
        rng.shuffle(reports)
    else:
        late = []
    receipts = Receipts(stack["ns"], stack["tmp"] / "receipts.log", gateway)
    try:
        produce(stack["ns"], reports)
        if kill_at is not None:
            applied = lambda: receipts.metrics().get(  # noqa: E731
                'nudgel_receipts_reports_total{outcome="applied"}', 0) >= kill_at
            assert wait_until(applied, 120, interval=0.05), receipts.log_path.read_text()[-3000:]
            receipts.kill()
            receipts = Receipts(stack["ns"], stack["tmp"] / "receipts.log", gateway)
        assert wait_final(pg_dsn, stack["tenant"], COUNT, timeout=240 + EXPIRY_S), \
            receipts.log_path.read_text()[-3000:]
        if late:
            produce(stack["ns"], late)
            group = f"r-{stack['ns']}"
            from conftest import group_lag
            assert wait_until(lambda: group_lag(group, [f"{stack['ns']}nudgel.carrier-dlr.v1"])
                              == 0, 120)
        assert statuses(pg_dsn, stack["tenant"]) == want
        expired_rows = psql(pg_dsn, "SELECT DISTINCT error_code FROM nudgel.message_receipts "
                                    f"WHERE tenant_id LIKE '{stack['tenant']}-%' AND "
                                    "status = 'expired'")
        assert expired_rows.split() in ([], ["dlr_timeout"])
        check_events_and_history(pg_dsn, stack["ns"], stack["tenant"], want)
        reported = psql(pg_dsn, "SELECT count(*) FROM nudgel.message_receipts WHERE tenant_id "
                                f"LIKE '{stack['tenant']}-%' AND status = 'delivered' AND "
                                "(operator_reported IS DISTINCT FROM 'Airtel' OR "
                                "price_currency IS DISTINCT FROM 'EUR')")
        assert int(reported) == 0
    finally:
        assert receipts.stop() == 0


def test_reports_final_or_expired(stack, pg_dsn):
    run_scenario(stack, pg_dsn, shuffle_dups=False)


def test_shuffled_and_duplicated_reports_same_states(stack, pg_dsn):
    run_scenario(stack, pg_dsn, shuffle_dups=True)


def test_sigkill_during_run_applies_each_once(stack, pg_dsn):
    run_scenario(stack, pg_dsn, shuffle_dups=True, kill_at=COUNT // 4)


def test_report_before_sent_is_kept_and_applied(tmp_path, topics_ready, run_id, pg_dsn):
    """A report whose receipt is still submitting (the messages worker has not recorded
    `sent`) is kept; the outcome landing later gets it applied, with its event."""
    ns = f"t{run_id}."
    make_topics(ns, partitions=3)
    mid = "0190a8a4-0000-7000-8000-" + run_id + "0000"
    tenant = f"p{run_id}"
    psql(pg_dsn, "INSERT INTO nudgel.message_receipts (message_id, tenant_id, to_e164, "
                 f"status, attempt) VALUES ('{mid}', '{tenant}-0', '+254722000001', "
                 "'submitting', 1)")
    gateway = f"ib-{run_id}"
    receipts = Receipts(ns, tmp_path / "receipts.log", gateway)
    try:
        produce(ns, [dlr(gateway, f"gm-{run_id}", "delivered", "DELIVERED_TO_HANDSET")])
        kept = lambda: psql(pg_dsn, "SELECT count(*) FROM nudgel.receipt_pending_reports "  # noqa
                                    f"WHERE gateway_message_id = 'gm-{run_id}'").strip() == "1"
        assert wait_until(kept, 60), receipts.log_path.read_text()[-3000:]
        # the messages worker's record of `sent` (nudgel_receipts_record) lands now
        psql(pg_dsn, "UPDATE nudgel.message_receipts SET status = 'sent', gateway = "
                     f"'{gateway}', gateway_message_id = 'gm-{run_id}', submitted_at = now() "
                     f"WHERE message_id = '{mid}'")
        assert wait_final(pg_dsn, tenant, 1, timeout=60)
        assert statuses(pg_dsn, tenant) == {mid: "delivered"}
        assert psql(pg_dsn, "SELECT count(*) FROM nudgel.receipt_pending_reports WHERE "
                            f"gateway_message_id = 'gm-{run_id}'").strip() == "0"
        check_events_and_history(pg_dsn, ns, tenant, {mid: "delivered"})
        assert wait_until(lambda: psql(pg_dsn, "SELECT count(*) FROM "
                                               "nudgel.receipt_event_outbox WHERE message_id = "
                                               f"'{mid}'").strip() == "0", 30)
    finally:
        assert receipts.stop() == 0


def keep_reports(pg_dsn, gateway, gmid, source, n=1, age="0 s"):
    """Writes @n kept reports (`delivered`) as nudgel.receipt_apply_report() keeps one that
    beat its `sent`, received @age ago; with @n > 1, @gmid and @source get -1..-n."""
    suffix = "" if n == 1 else " || '-' || i"
    psql(pg_dsn, f"WITH r AS (SELECT '{gmid}'{suffix} AS gmid, '{source}'{suffix} AS source "
                 f"FROM generate_series(1, {n}) i) "
                 "INSERT INTO nudgel.receipt_pending_reports (gateway, gateway_message_id, report, "
                 f"source, received_at, expires_at) SELECT '{gateway}', r.gmid, "
                 f"jsonb_build_object('gateway', '{gateway}', 'gateway_message_id', r.gmid, "
                 "'target', 'delivered', 'status', 'delivered', 'raw_status', "
                 "'DELIVERED_TO_HANDSET', 'source', r.source), r.source, "
                 f"now() - interval '{age}', now() + interval '1 hour' FROM r")


def test_pending_sweep_locks_receipts_in_message_id_order(run_id, pg_dsn):
    """The pending sweep (nudgel.receipt_apply_pending()) and a batch of reports
    (nudgel.receipt_apply_dlrs(), which locks its receipts in message id order, as the
    messages worker's batches do) never deadlock: the sweep takes its receipts' locks in
    the same order, whatever the order its kept reports arrived in. Here the reports were
    kept B first, then A (A < B); a transaction holding A, as a batch does, then asks for B
    while the sweep waits. (Before the fix the sweep held B and waited for A: Postgres
    found the deadlock and aborted one of the two; it did in a 20 000-message run.)"""
    gateway = f"lk-{run_id}"
    ids = {"a": f"0190a8a4-0000-7000-8000-{run_id}0001", "b": f"0190a8a4-0000-7000-8000-{run_id}0002"}
    tenant = f"lk{run_id}"
    for k in ("a", "b"):
        psql(pg_dsn, "INSERT INTO nudgel.message_receipts (message_id, tenant_id, to_e164, "
                     "status, attempt, gateway, gateway_message_id, submitted_at) VALUES "
                     f"('{ids[k]}', '{tenant}-0', '+254722000001', 'sent', 1, '{gateway}', "
                     f"'gm-{run_id}-{k}', now())")
    for k in ("b", "a"):  # kept in this order: the sweep reaches B's receipt first
        keep_reports(pg_dsn, gateway, f"gm-{run_id}-{k}", f"lk-{run_id}-{k}")
    batch = subprocess.Popen(["psql", pg_dsn, "-Atq", "-v", "ON_ERROR_STOP=1"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    sweep = None
    try:
        batch.stdin.write("BEGIN;\nSELECT 'holding A' FROM "
                          f"nudgel.message_receipts WHERE message_id = '{ids['a']}' "
                          "FOR UPDATE;\n")
        batch.stdin.flush()
        assert batch.stdout.readline().strip() == "holding A"
        sweep = subprocess.Popen(["psql", pg_dsn, "-At", "-v", "ON_ERROR_STOP=1", "-c",
                                  "SELECT applied FROM nudgel.receipt_apply_pending(1000)"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # the sweep waits for a row lock (A's, held above)
        assert wait_until(lambda: psql(pg_dsn, "SELECT count(*) FROM pg_stat_activity WHERE "
                                               "query LIKE '%receipt_apply_pending(1000)%' AND "
                                               "wait_event_type = 'Lock'").strip() == "1", 30)
        out, _ = batch.communicate("SELECT 'holding B' FROM nudgel.message_receipts WHERE "
                                   f"message_id = '{ids['b']}' FOR UPDATE;\nCOMMIT;\n",
                                   timeout=60)
        assert batch.returncode == 0, out
        assert "holding B" in out
        out, _ = sweep.communicate(timeout=60)
        assert sweep.returncode == 0, out
    finally:
        for p in (batch, sweep):
            if p and p.poll() is None:
                p.kill()
                p.wait()
    assert statuses(pg_dsn, tenant) == {ids["a"]: "delivered", ids["b"]: "delivered"}
    assert psql(pg_dsn, "SELECT count(*) FROM nudgel.receipt_pending_reports WHERE "
                        f"gateway = '{gateway}'").strip() == "0"


def test_expiry_sweep_reads_only_receipts_it_may_expire(tmp_path, topics_ready, run_id, pg_dsn):
    """The expiry sweep reads each window's due range, not every sent receipt younger than
    the longest window. 5,000 receipts sent an hour ago on a gateway at the 48 h default
    and 20 sent a minute ago on one with a 15 s window (receipts.expiry_by_gateway): the
    20 end expired, the 5,000 stay sent, and the sweeps that follow read almost no entry of
    the sent-receipt indexes. (Before, each sweep walked the sent receipts from the oldest
    up to the shortest window, the 5,000 every time: with an hour's window beside the
    default, a sweep a second read every sent receipt of the last 48 h.)"""
    ns = f"x{run_id}."
    make_topics(ns, partitions=3)
    short, long_ = f"xs-{run_id}", f"xl-{run_id}"
    tenant = f"x{run_id}"

    def seed(gateway, suffix, n, age):
        psql(pg_dsn, "INSERT INTO nudgel.message_receipts (message_id, tenant_id, to_e164, "
                     "status, attempt, gateway, gateway_message_id, submitted_at) SELECT "
                     f"gen_random_uuid(), '{tenant}{suffix}-0', '+254722000001', 'sent', 1, "
                     f"'{gateway}', 'gm-{run_id}-{suffix}-' || i, now() - interval '{age}' "
                     f"FROM generate_series(1, {n}) i")

    def index_reads():
        return int(psql(pg_dsn, "SELECT coalesce(sum(idx_tup_read), 0) FROM "
                                "pg_stat_user_indexes WHERE indexrelname IN "
                                "('message_receipts_sent_submitted_idx', "
                                "'message_receipts_sent_gateway_submitted_idx')"))

    seed(long_, "l", 5000, "1 hour")
    seed(short, "s", 20, "1 minute")
    receipts = Receipts(ns, tmp_path / "receipts.log", short)
    try:
        assert wait_final(pg_dsn, f"{tenant}s", 20, timeout=60), \
            receipts.log_path.read_text()[-3000:]

        def sweeps():
            return receipts.metrics().get(
                'nudgel_pg_statement_seconds_count{statement="sweeps"}', 0)
        first, reads_before = sweeps(), index_reads()
        # every 200 ms a sweep: pending, expiry, outbox (3 statements at least); 20 of them,
        # over more than 4 s, so the worker's backend has published its statistics (at most
        # a second apart while it works) of most of them
        assert wait_until(lambda: sweeps() >= first + 60, 60)
        read = index_reads() - reads_before
        print(f"\n{sweeps() - first:.0f} sweep statements read {read} sent-receipt index "
              "entries")
        assert read < 1000, f"the sweeps read {read} index entries of sent receipts"
        assert set(statuses(pg_dsn, f"{tenant}l").values()) == {"sent"}
        expired = psql(pg_dsn, "SELECT status, error_code, count(*) FROM "
                               "nudgel.message_receipts WHERE tenant_id LIKE "
                               f"'{tenant}s-%' GROUP BY 1, 2")
        assert expired.strip() == "expired|dlr_timeout|20"
    finally:
        assert receipts.stop() == 0
        psql(pg_dsn, f"DELETE FROM nudgel.message_receipts WHERE tenant_id LIKE '{tenant}%'")


def test_pending_sweep_looks_at_each_report_when_due(tmp_path, topics_ready, run_id, pg_dsn):
    """Kept reports whose receipt never comes (another platform's messages on a shared
    carrier account) are looked at again a tenth of their age later (1 s to 5 min), not on
    every sweep: 2,000 such reports received an hour ago are looked at once, then left for
    5 minutes; the sweeps that follow look at none of them (no row of theirs is updated)
    and read almost no entry of the index of due looks. A report kept a moment ago is
    looked at each second, and applied once its `sent` lands. (Before, each sweep walked
    every kept report, here 2,000 a sweep, 5 sweeps a second.)"""
    ns = f"k{run_id}."
    make_topics(ns, partitions=3)
    gateway = f"kp-{run_id}"
    tenant = f"kp{run_id}"
    mid = f"0190a8a4-0000-7000-8000-{run_id}0003"
    keep_reports(pg_dsn, gateway, f"gm-{run_id}-never", f"kp-{run_id}-never", n=2000,
                 age="1 hour")
    psql(pg_dsn, "INSERT INTO nudgel.message_receipts (message_id, tenant_id, to_e164, status, "
                 f"attempt) VALUES ('{mid}', '{tenant}-0', '+254722000001', 'submitting', 1)")
    keep_reports(pg_dsn, gateway, f"gm-{run_id}-late", f"kp-{run_id}-late")

    def looks():
        """(kept reports updated, entries of the due-look index read), only the sweeps do
        either (the test's own reads of the table are not counted here)."""
        row = psql(pg_dsn, "SELECT t.n_tup_upd, i.idx_tup_read FROM pg_stat_user_tables t "
                           "JOIN pg_stat_user_indexes i USING (relid) WHERE t.relname = "
                           "'receipt_pending_reports' AND i.indexrelname = "
                           "'receipt_pending_reports_next_check_idx'")
        return tuple(int(v) for v in row.split("|"))
    at_start = looks()
    receipts = Receipts(ns, tmp_path / "receipts.log", gateway)
    try:
        looked_at = lambda: psql(pg_dsn, "SELECT count(*) FROM nudgel.receipt_pending_reports "  # noqa
                                         f"WHERE gateway = '{gateway}' AND next_check_at > "
                                         "now() + interval '4 minutes'").strip() == "2000"
        assert wait_until(looked_at, 60), receipts.log_path.read_text()[-3000:]

        def sweeps():
            return receipts.metrics().get(
                'nudgel_pg_statement_seconds_count{statement="sweeps"}', 0)
        # the statistics of that first look are published (at most a second later)
        assert wait_until(lambda: looks()[0] - at_start[0] >= 2000, 30)
        first, before = sweeps(), looks()
        # 20 sweeps (pending, expiry, outbox: 3 statements at least) over more than 4 s; the
        # worker's backend publishes its statistics at most a second apart while it works
        assert wait_until(lambda: sweeps() >= first + 60, 60)
        updated, read = (a - b for a, b in zip(looks(), before))
        print(f"\n{sweeps() - first:.0f} sweep statements looked at {updated} kept reports, "
              f"read {read} entries of the due-look index")
        assert updated < 100, f"the sweeps looked at {updated} kept reports again"
        assert read < 1000, f"the sweeps read {read} entries of the due-look index"
        # the fresh report was looked at (its receipt still submitting) and is still kept;
        # its `sent` lands now: the next look applies it
        assert statuses(pg_dsn, tenant) == {mid: "submitting"}
        psql(pg_dsn, "UPDATE nudgel.message_receipts SET status = 'sent', gateway = "
                     f"'{gateway}', gateway_message_id = 'gm-{run_id}-late', submitted_at = now() "
                     f"WHERE message_id = '{mid}'")
        assert wait_final(pg_dsn, tenant, 1, timeout=30), receipts.log_path.read_text()[-3000:]
        assert statuses(pg_dsn, tenant) == {mid: "delivered"}
    finally:
        assert receipts.stop() == 0
        psql(pg_dsn, f"DELETE FROM nudgel.receipt_pending_reports WHERE gateway = '{gateway}'")
        psql(pg_dsn, f"DELETE FROM nudgel.message_receipts WHERE tenant_id LIKE '{tenant}-%'")
