"""nudgel-messages end to end: real Kafka, real Postgres, the carrier simulator.

Jobs for KE, NG and UG go through nudgel-enqueue into an isolated set of
topics; the worker claims, renders, routes (KE/UG → Infobip dialect, NG →
generic dialect), submits to the simulator and records. Checked: every job
ends in exactly one final receipt and one status event (validated against
the schema), the simulator's ledger shows each sent message exactly once,
permanent rejections end `rejected` without a retry, a reused idempotency
key yields `deduplicated` without a send, malformed jobs reach the DLQ.
"""
import json
import os
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import (binary, headers_of, kcat_consume, listening_port, load_schema,
                      scrape_metrics)
from messages_harness import messages_lag, wait_until
from test_carrier_sim import GENERIC_KEY, INFOBIP_KEY, Sim


def psql(dsn, sql):
    return subprocess.run(["psql", dsn, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          capture_output=True, text=True, check=True, timeout=30).stdout


@pytest.fixture
def sim():
    s = Sim("sim.infobip.reject_regex=999$")
    yield s
    s.stop()


def gateways_file(sim, tmp_path):
    gateways = {
        "gateways": [
            {"name": "sim-infobip", "dialect": "infobip",
             "base_url": f"http://127.0.0.1:{sim.port}/infobip",
             "api_key_env": "NUDGEL_TEST_INFOBIP_KEY", "tps": 2000, "sender_id": "NUDGEL"},
            {"name": "sim-generic", "dialect": "generic",
             "base_url": f"http://127.0.0.1:{sim.port}/generic",
             "api_key_env": "NUDGEL_TEST_GENERIC_KEY", "tps": 2000,
             "auth_header": "Authorization", "auth_scheme": "Bearer",
             "message_id_pointer": "/id", "status_pointer": "/status",
             "success_statuses": ["accepted"], "permanent_statuses": ["rejected"],
             "transient_statuses": []},
        ],
        "routes": [
            {"country": "KE", "operator": "*", "gateways": ["sim-infobip"]},
            {"country": "UG", "operator": "*", "gateways": ["sim-infobip"]},
            {"country": "NG", "operator": "*", "gateways": ["sim-generic"]},
        ],
    }
    path = tmp_path / "gateways.json"
    path.write_text(json.dumps(gateways))
    return path


def make_topics(ns):
    subprocess.run([binary("nudgel-admin"), "--set", f"topics.namespace={ns}",
                    "--set", "topics.partitions=3", "topics", "ensure"], check=True,
                   capture_output=True, timeout=120)
    subprocess.run([binary("nudgel-admin"), "migrate"], check=True, capture_output=True,
                   timeout=120)


def enqueue(ns, jobs):
    run = subprocess.run([binary("nudgel-enqueue"), "--quiet", "--json", "--topic", "messages",
                          "--set", f"producer.messages_topic={ns}nudgel.messages.v1"],
                         input="\n".join(json.dumps(j) for j in jobs) + "\n",
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def start_worker(ns, gw_file, *sets, stderr=subprocess.DEVNULL):
    env = dict(os.environ, NUDGEL_TEST_INFOBIP_KEY=INFOBIP_KEY,
               NUDGEL_TEST_GENERIC_KEY=GENERIC_KEY)
    args = [binary("nudgel-messages"), "--set", f"topics.namespace={ns}",
            "--set", f"messages.gateways_file={gw_file}", "--set", f"messages.group_id=g-{ns}",
            "--set", "metrics.port=0", "--set", "log.level=warn",
            "--set", "kafka.auto.commit.interval.ms=200", "--set", "kafka.session.timeout.ms=6000"]
    for s in sets:
        args += ["--set", s]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)


def wait_settled(workers, ns, timeout=60):
    """Waits until each worker process of group g-@ns answers /metrics with no job in flight
    and its groups have committed to the end of the jobs topic and retry tiers (lag 0): every job's receipt, event
    and offset durable, nothing left to poll. Returns whether they settled (False at once
    when one exited)."""
    def quiet():
        if any(w.poll() is not None for w in workers):
            return True
        return (all(scrape_metrics(listening_port(w.pid)).get("nudgel_messages_in_flight") == 0
                    for w in workers)
                and messages_lag(ns) == 0)
    return bool(wait_until(quiet, timeout, interval=0.3)) and \
        all(w.poll() is None for w in workers)


def run_worker(ns, gw_file, pg_dsn, tenant, expected_final, *sets, timeout=90):
    """Runs nudgel-messages until @expected_final receipts of @tenant are final, then SIGTERM."""
    log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a full pipe would block it
    worker = start_worker(ns, gw_file, *sets, stderr=log)
    final = 0
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and worker.poll() is None:
            final = int(psql(pg_dsn, "SELECT count(*) FROM nudgel.message_receipts WHERE "
                                     f"tenant_id LIKE '{tenant}-%' AND status NOT IN ('accepted', 'submitting')"))
            if final >= expected_final:
                break
            time.sleep(0.5)
        # The events and offsets of the last jobs.
        settled = final >= expected_final and wait_settled([worker], ns)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        log.seek(0)
        stderr = log.read()
    assert worker.returncode == 0, stderr[-2000:]
    assert final == expected_final, f"{final} of {expected_final} receipts final"
    assert settled, "jobs still in flight or offsets not committed:\n" + stderr[-2000:]


def test_messages_end_to_end(bootstrap, pg_dsn, topics_ready, sim, run_id, tmp_path):
    ns = f"mw{run_id}."
    make_topics(ns)
    tenant = f"mw{run_id}"
    psql(pg_dsn, "INSERT INTO nudgel.message_templates (tenant_id, name, locale, body) VALUES "
                 f"('{tenant}-0', 'order-confirmation', 'en', "
                 "'Hi {{name}}, order {{order_id}} is confirmed')")
    gw_file = gateways_file(sim, tmp_path)

    jobs, expected = [], {}
    numbers = {"KE": "+2547220{:05d}", "NG": "+23480312{:05d}", "UG": "+2567721{:05d}"}
    for i in range(300):
        country = ["KE", "NG", "UG"][i % 3]
        job = {"tenant_id": f"{tenant}-{i % 4}", "channel": "sms",
               "to": numbers[country].format(i), "idempotency_key": f"{run_id}-{i}"}
        if i % 4 == 0:
            job["template"] = "order-confirmation"
            job["variables"] = {"name": "Ada", "order_id": f"AC-{i}"}
        else:
            job["body"] = f"Habari {i}! Ẹ ku aarọ" if i % 5 == 0 else f"Your code is {i:04d}"
        expected[job["idempotency_key"]] = "sent"
        jobs.append(job)
    for i in range(5):  # KE numbers the simulator rejects (…999): final without a retry
        key = f"{run_id}-rej-{i}"
        jobs.append({"tenant_id": f"{tenant}-1", "channel": "sms", "to": f"+25472200{i}999",
                     "body": "rejected", "idempotency_key": key})
        expected[key] = "rejected"
    dupes = [dict(jobs[j], body="again") for j in (1, 2, 3)]  # same keys, new ids
    for d in dupes:
        d.pop("template", None), d.pop("variables", None)
    enqueue(ns, jobs)
    enqueue(ns, dupes)
    for bad in ('{"tenant_id": "x"}', "not json", '{"id": 7}'):
        subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", f"{ns}nudgel.messages.v1",
                        "-k", f"{tenant}-bad"], input=bad, text=True, check=True, timeout=30)
    run_worker(ns, gw_file, pg_dsn, tenant, len(expected))

    rows = psql(pg_dsn, "SELECT idempotency_key, status, encoding, segments, gateway FROM "
                        f"nudgel.message_receipts WHERE tenant_id LIKE '{tenant}-%'")
    receipts = {r.split("|")[0]: r.split("|")[1:] for r in rows.splitlines()}
    assert {k: v[0] for k, v in receipts.items()} == expected
    assert receipts[f"{run_id}-5"][1:3] == ["ucs2", "1"]  # Yoruba needs UCS-2
    assert receipts[f"{run_id}-1"][1:3] == ["gsm7", "1"]
    assert receipts[f"{run_id}-1"][3] == "sim-generic"  # NG → generic dialect

    ledger = sim.ledger("?summary=1")
    assert ledger["duplicates"] == 0
    assert ledger["totals"]["sms"] == 300

    validator = load_schema("status.event.v1.schema.json")
    events = kcat_consume(bootstrap, f"{ns}nudgel.delivery-status.v1")
    by_type, malformed = {}, 0
    for rec in events:
        ev = json.loads(rec["payload"])
        errors = list(validator.iter_errors(ev))
        assert not errors, errors[0].message
        by_type[ev["type"]] = by_type.get(ev["type"], 0) + 1
        malformed += (ev["data"].get("error") or {}).get("code") == "malformed"
    # The 3 malformed jobs each yield a failed event (and a dead letter, below).
    assert by_type == {"ai.nudgel.message.sent": 300, "ai.nudgel.message.rejected": 5,
                       "ai.nudgel.message.deduplicated": 3, "ai.nudgel.message.failed": 3}
    assert malformed == 3
    dead = kcat_consume(bootstrap, f"{ns}nudgel.messages.dlq.v1")
    assert len(dead) == 3
    assert all(headers_of(r)["nudgel-dlq-reason"] for r in dead)


def test_transient_faults_retry_until_sent_once(bootstrap, pg_dsn, topics_ready, run_id,
                                                tmp_path):
    sim = Sim("sim.infobip.error_5xx_permille=300", "sim.generic.error_5xx_permille=300",
              "sim.infobip.error_429_permille=50")
    try:
        ns = f"mf{run_id}."
        make_topics(ns)
        tenant = f"mf{run_id}"
        numbers = {"KE": "+2547220{:05d}", "NG": "+23480312{:05d}", "UG": "+2567721{:05d}"}
        jobs = [{"tenant_id": f"{tenant}-{i % 3}", "channel": "sms",
                 "to": numbers[["KE", "NG", "UG"][i % 3]].format(i), "body": f"try {i}",
                 "idempotency_key": f"{run_id}-{i}"} for i in range(200)]
        # Older than the validity: ends expired, in the DLQ, never sent.
        jobs.append({"tenant_id": f"{tenant}-0", "channel": "sms", "to": "+254722000999",
                     "body": "too late", "idempotency_key": f"{run_id}-late",
                     "created_at": "2020-01-01T00:00:00Z"})
        enqueue(ns, jobs)
        # This test is about the retry ladder: the breakers only open if a gateway
        # is all but down (a 35% fault rate must not open them on a lucky streak).
        run_worker(ns, gateways_file(sim, tmp_path), pg_dsn, tenant, 201,
                   "messages.retry_delays_ms=300,300,300,300",
                   "messages.breaker_failure_percent=90", timeout=120)
        statuses = psql(pg_dsn, "SELECT status, count(*) FROM nudgel.message_receipts WHERE "
                                f"tenant_id LIKE '{tenant}-%' GROUP BY 1 ORDER BY 1")
        counts = dict(line.split("|") for line in statuses.splitlines())
        # 30% 5xx and up to four retries: a job fails only after five faults in a row
        # (0.35^5 ≈ 0.5%), and then it is failed, not lost.
        assert int(counts.get("sent", 0)) + int(counts.get("failed", 0)) == 200
        assert int(counts.get("sent", 0)) >= 190
        assert counts.get("expired") == "1"
        ledger = sim.ledger("?summary=1")
        assert ledger["duplicates"] == 0
        assert ledger["totals"]["sms"] == int(counts["sent"])
        assert ledger["totals"]["requests"] > 200  # faults were drawn and retried
        events = [json.loads(r["payload"])["type"]
                  for r in kcat_consume(bootstrap, f"{ns}nudgel.delivery-status.v1")]
        assert events.count("ai.nudgel.message.sent") == int(counts["sent"])
        assert events.count("ai.nudgel.message.expired") == 1
        dead = kcat_consume(bootstrap, f"{ns}nudgel.messages.dlq.v1")
        reasons = [headers_of(r)["nudgel-dlq-reason"] for r in dead]
        assert reasons.count("expired before it could be sent") == 1
    finally:
        sim.stop()


def final_count(pg_dsn, tenant):
    return int(psql(pg_dsn, "SELECT count(*) FROM nudgel.message_receipts WHERE "
                            f"tenant_id LIKE '{tenant}-%' AND status NOT IN ('accepted', 'submitting')"))


def test_sigkill_and_two_workers_lose_and_double_nothing(bootstrap, pg_dsn, topics_ready, run_id,
                                                          tmp_path):
    """Infobip takes our message id as its client reference, so resubmitting a job whose
    worker died between the carrier's accept and the receipt write cannot send it twice."""
    sim = Sim("sim.infobip.latency_ms=40", "sim.infobip.jitter_ms=40")
    try:
        ns = f"mk{run_id}."
        make_topics(ns)
        tenant = f"mk{run_id}"
        jobs = [{"tenant_id": f"{tenant}-{i % 9}", "channel": "sms",
                 "to": f"+2547220{i:05d}", "body": f"kill test {i}",
                 "idempotency_key": f"{run_id}-{i}"} for i in range(1500)]
        enqueue(ns, jobs)
        gw = gateways_file(sim, tmp_path)
        sets = ("messages.claim_stale_ms=2000", "messages.retry_delays_ms=500,500,500,500")
        # Kill each worker mid-run: once the receipts pass a threshold, not at a fixed time.
        for threshold in (300, 700, 1100):
            worker = start_worker(ns, gw, *sets)
            deadline = time.monotonic() + 60
            while final_count(pg_dsn, tenant) < threshold and time.monotonic() < deadline:
                time.sleep(0.05)
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        # Two workers of one group finish the rest together.
        workers = [start_worker(ns, gw, *sets) for _ in range(2)]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and final_count(pg_dsn, tenant) < 1500:
            time.sleep(0.5)
        settled = wait_settled(workers, ns)  # the events and offsets of the last jobs
        for w in workers:
            w.send_signal(signal.SIGTERM)
        assert [w.wait(timeout=60) for w in workers] == [0, 0]
        assert final_count(pg_dsn, tenant) == 1500
        assert settled, "jobs still in flight or offsets not committed"
        sent = int(psql(pg_dsn, "SELECT count(*) FROM nudgel.message_receipts WHERE "
                                f"tenant_id LIKE '{tenant}-%' AND status = 'sent'"))
        assert sent == 1500
        ledger = sim.ledger("?summary=1")
        # Every message reached the carrier once; resubmissions of the same client
        # reference were recognised as repeats, not new SMS.
        assert ledger["totals"]["sms"] == 1500
        print(f"kills: {ledger['totals'].get('duplicate_attempts', 0)} resubmitted client "
              f"references, 0 duplicate SMS")
    finally:
        sim.stop()


def test_twenty_thousand_messages_twenty_tenants(bootstrap, pg_dsn, topics_ready, run_id,
                                                 tmp_path):
    sim = Sim()
    try:
        ns = f"mt{run_id}."
        make_topics(ns)
        tenant = f"mt{run_id}"
        numbers = {"KE": "+2547{:08d}", "NG": "+234803{:07d}", "UG": "+25677{:07d}"}
        jobs = [{"tenant_id": f"{tenant}-{i % 20}", "channel": "sms",
                 "to": numbers[["KE", "NG", "UG"][i % 3]].format(i), "body": f"burst {i}",
                 "idempotency_key": f"{run_id}-{i}"} for i in range(20000)]
        enqueue(ns, jobs)
        started = time.monotonic()
        run_worker(ns, gateways_file(sim, tmp_path), pg_dsn, tenant, 20000, timeout=300)
        elapsed = time.monotonic() - started
        sent = int(psql(pg_dsn, "SELECT count(*) FROM nudgel.message_receipts WHERE "
                                f"tenant_id LIKE '{tenant}-%' AND status = 'sent'"))
        history = int(psql(pg_dsn, "SELECT count(*) FROM nudgel.message_receipt_history h "
                                   "JOIN nudgel.message_receipts r USING (message_id) "
                                   f"WHERE r.tenant_id LIKE '{tenant}-%'"))
        ledger = sim.ledger("?summary=1")
        print(f"20 000 messages in {elapsed:.1f}s ({20000 / elapsed:.0f}/s end to end)")
        assert sent == 20000
        # accepted (claimed), submitting (handed to the gateway), sent: one row per transition
        assert history == 3 * 20000
        assert ledger["totals"]["sms"] == 20000 and ledger["duplicates"] == 0
        events = kcat_consume(bootstrap, f"{ns}nudgel.delivery-status.v1", timeout=300)
        assert len(events) == 20000
        assert len({json.loads(r["payload"])["id"] for r in events}) == 20000
    finally:
        sim.stop()


def test_open_circuit_moves_traffic_to_the_next_gateway(bootstrap, pg_dsn, topics_ready, run_id,
                                                         tmp_path):
    sim = Sim("sim.infobip.error_5xx_permille=1000")  # the primary is down
    try:
        ns = f"mc{run_id}."
        make_topics(ns)
        tenant = f"mc{run_id}"
        gw = gateways_file(sim, tmp_path)
        conf = json.loads(gw.read_text())
        conf["routes"] = [{"country": "KE", "operator": "*",
                           "gateways": ["sim-infobip", "sim-generic"]}]
        gw.write_text(json.dumps(conf))
        enqueue(ns, [{"tenant_id": f"{tenant}-0", "channel": "sms", "to": f"+2547220{i:05d}",
                      "body": f"fallback {i}", "idempotency_key": f"{run_id}-{i}"}
                     for i in range(200)])
        run_worker(ns, gw, pg_dsn, tenant, 200, "messages.retry_delays_ms=200,200,200,200",
                   "messages.breaker_open_ms=60000", "messages.gateway_max_in_flight=32")
        rows = psql(pg_dsn, "SELECT status, gateway, count(*) FROM nudgel.message_receipts "
                            f"WHERE tenant_id LIKE '{tenant}-%' GROUP BY 1, 2")
        assert rows.strip() == "sent|sim-generic|200"
        ledger = sim.ledger("?summary=1")
        assert ledger["totals"]["sms"] == 200 and ledger["duplicates"] == 0
        # The breaker opened after its first window: Infobip saw at most the per-gateway
        # in-flight cap plus that window, not all 200.
        infobip_5xx = ledger["totals"]["faults"]["5xx"]
        assert 10 <= infobip_5xx <= 32 + 20, infobip_5xx
    finally:
        sim.stop()
