"""nudgel-messages circuit breakers and credential faults (issue 10, items 1 and 2).

Real Kafka, real Postgres, the carrier simulator; one worker per test (messages_harness).

1. A breaker that opens must close: a single-gateway route whose carrier answers
   every request 503 opens its breaker; the carrier is healed; jobs enqueued later
   are sent once breaker_open_ms has passed (a half-open probe goes out and closes
   it), and none of them ends `circuit_open`. A route with a fallback returns to its
   primary after the probe. The breaker's state is a gauge per gateway, its
   transitions are logged.
2. A wrong API key (HTTP 401) on the primary is a gateway fault, not the message's:
   every message goes out through the route's fallback, none fails, the error log
   names the gateway and nudgel_messages_gateway_auth_failures_total counts it.
"""
import json

from messages_harness import (Worker, enqueue, make_topics, psql, status_counts,
                              wait_settled, wait_until)
from test_carrier_sim import Sim

OPEN_MS = 2000
STATE = 'nudgel_messages_breaker_state{gateway="%s"}'
AUTH = 'nudgel_messages_gateway_auth_failures_total{gateway="%s"}'


def gateways(sim, path, routes, infobip_key_env="NUDGEL_TEST_INFOBIP_KEY"):
    conf = {
        "gateways": [
            {"name": "sim-infobip", "dialect": "infobip",
             "base_url": f"http://127.0.0.1:{sim.port}/infobip",
             "api_key_env": infobip_key_env, "tps": 2000, "sender_id": "NUDGEL"},
            {"name": "sim-at", "dialect": "africastalking",
             "base_url": f"http://127.0.0.1:{sim.port}/at",
             "api_key_env": "NUDGEL_TEST_AT_KEY", "username": "sandbox", "tps": 2000,
             "sender_id": "NUDGEL"},
        ],
        "routes": [{"country": "KE", "operator": "*", "gateways": routes}],
    }
    path.write_text(json.dumps(conf))
    return path


def jobs(tenant, run_id, tag, n):
    return [{"tenant_id": f"{tenant}-0", "channel": "sms", "to": f"+2547{len(tag) % 10}2{i:06d}",
             "body": f"{tag} {i}", "idempotency_key": f"{run_id}-{tag}-{i}"} for i in range(n)]


def gauge(worker, gw):
    return worker.metrics().get(STATE % gw)


def receipts(pg_dsn, tenant, tag):
    rows = psql(pg_dsn, "SELECT r.status, coalesce(r.gateway, ''), coalesce(r.error_code, ''), "
                        "count(*) FROM nudgel.message_receipts r "
                        f"WHERE r.tenant_id LIKE '{tenant}-%' AND r.idempotency_key LIKE "
                        f"'%-{tag}-%' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
    return [tuple(line.split("|")) for line in rows.splitlines()]


def test_open_breaker_closes_after_a_probe(pg_dsn, topics_ready, run_id, tmp_path):
    sim = Sim("sim.infobip.error_5xx_permille=1000")  # the only gateway is down
    worker = None
    try:
        ns = f"mb{run_id}."
        make_topics(ns, partitions=3)
        tenant = f"mb{run_id}"
        gw = gateways(sim, tmp_path / "gateways.json", ["sim-infobip"])
        worker = Worker(ns, gw, tmp_path / "worker.log",
                        f"messages.breaker_open_ms={OPEN_MS}", "messages.breaker_min_calls=5",
                        "messages.breaker_window=10", "messages.gateway_max_in_flight=4",
                        "messages.retry_delays_ms=1000,2000,3000,4000")
        assert worker.port() is not None, worker.log_tail()
        enqueue(ns, jobs(tenant, run_id, "down", 10))
        assert wait_until(lambda: gauge(worker, "sim-infobip") == 1, 30), worker.log_tail()
        assert "circuit open" in worker.log()
        # The carrier is back; the jobs that wait on the retry tiers and the ones
        # enqueued now are sent once a probe has closed the breaker.
        status, _ = sim.configure(**{"sim.infobip.error_5xx_permille": 0})
        assert status == 200
        enqueue(ns, jobs(tenant, run_id, "later", 5))
        assert wait_until(lambda: gauge(worker, "sim-infobip") == 0, 20), worker.log_tail()
        assert "circuit half_open" in worker.log() and "circuit closed" in worker.log()
        assert wait_until(lambda: status_counts(pg_dsn, tenant).get("sent") == 15, 60), \
            (status_counts(pg_dsn, tenant), worker.log_tail())
        assert wait_settled([worker])
        assert receipts(pg_dsn, tenant, "later") == [("sent", "sim-infobip", "", "5")]
        ledger = sim.ledger("?summary=1")
        assert ledger["totals"]["sms"] == 15 and ledger["duplicates"] == 0
    finally:
        if worker:
            worker.stop()
        sim.stop()


def test_route_returns_to_its_primary_after_the_probe(pg_dsn, topics_ready, run_id, tmp_path):
    sim = Sim("sim.infobip.error_5xx_permille=1000")  # the primary is down
    worker = None
    try:
        ns = f"mr{run_id}."
        make_topics(ns, partitions=3)
        tenant = f"mr{run_id}"
        gw = gateways(sim, tmp_path / "gateways.json", ["sim-infobip", "sim-at"])
        worker = Worker(ns, gw, tmp_path / "worker.log",
                        f"messages.breaker_open_ms={OPEN_MS}", "messages.breaker_min_calls=5",
                        "messages.breaker_window=10", "messages.gateway_max_in_flight=4",
                        "messages.retry_delays_ms=500,500,500,500")
        assert worker.port() is not None, worker.log_tail()
        enqueue(ns, jobs(tenant, run_id, "down", 20))
        assert wait_until(lambda: status_counts(pg_dsn, tenant).get("sent") == 20, 60), \
            (status_counts(pg_dsn, tenant), worker.log_tail())
        assert gauge(worker, "sim-infobip") in (1, 2)
        assert gauge(worker, "sim-at") == 0
        sim.configure(**{"sim.infobip.error_5xx_permille": 0})
        # After breaker_open_ms the primary's breaker half-opens by itself (a timer),
        # the next job is its probe, and traffic returns to it.
        assert wait_until(lambda: gauge(worker, "sim-infobip") == 2, OPEN_MS / 1000 + 5), \
            worker.log_tail()
        enqueue(ns, jobs(tenant, run_id, "probe", 1))
        assert wait_until(lambda: gauge(worker, "sim-infobip") == 0, 20), worker.log_tail()
        assert receipts(pg_dsn, tenant, "probe") == [("sent", "sim-infobip", "", "1")]
        # Closed again: the route's traffic is back on its primary.
        enqueue(ns, jobs(tenant, run_id, "healed", 10))
        assert wait_until(lambda: status_counts(pg_dsn, tenant).get("sent") == 31, 60), \
            (status_counts(pg_dsn, tenant), worker.log_tail())
        assert receipts(pg_dsn, tenant, "healed") == [("sent", "sim-infobip", "", "10")]
        assert wait_settled([worker])
    finally:
        if worker:
            worker.stop()
        sim.stop()


def test_wrong_key_fails_over_to_the_fallback(pg_dsn, topics_ready, run_id, tmp_path,
                                              monkeypatch):
    sim = Sim()
    worker = None
    try:
        ns = f"ma{run_id}."
        make_topics(ns, partitions=3)
        tenant = f"ma{run_id}"
        monkeypatch.setenv("NUDGEL_TEST_WRONG_KEY", "a-revoked-key")
        gw = gateways(sim, tmp_path / "gateways.json", ["sim-infobip", "sim-at"],
                      infobip_key_env="NUDGEL_TEST_WRONG_KEY")
        # A key revoked after the start: the start-up probe (which would refuse to start
        # with it, test_check_config.py) is off.
        worker = Worker(ns, gw, tmp_path / "worker.log", "messages.breaker_open_ms=60000",
                        "messages.retry_delays_ms=500,500,500,500",
                        "messages.startup_probe=false")
        assert worker.port() is not None, worker.log_tail()
        enqueue(ns, jobs(tenant, run_id, "key", 30))
        assert wait_until(lambda: sum(status_counts(pg_dsn, tenant).values()) == 30 and
                          "submitting" not in status_counts(pg_dsn, tenant), 60), \
            (status_counts(pg_dsn, tenant), worker.log_tail())
        assert wait_settled([worker])
        assert receipts(pg_dsn, tenant, "key") == [("sent", "sim-at", "", "30")]
        ledger = sim.ledger("?summary=1")
        assert ledger["by_dialect"]["infobip"]["unauthorized"] >= 1
        assert ledger["by_dialect"]["at"]["sms"] == 30
        auth = worker.metrics().get(AUTH % "sim-infobip")
        assert auth == ledger["by_dialect"]["infobip"]["unauthorized"], auth
        errors = [json.loads(line) for line in worker.log().splitlines()
                  if line.startswith("{") and '"error"' in line]
        assert any(e.get("level") == "error" and "sim-infobip" in e.get("msg", "") and
                   "credentials" in e.get("msg", "") for e in errors), worker.log_tail()
    finally:
        if worker:
            worker.stop()
        sim.stop()
