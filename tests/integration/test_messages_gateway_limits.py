"""nudgel-messages and a gateway's own limits (issue 10, item 3).

- A gateway's timeout_ms bounds each submission: with the simulator answering
  after 3 s and timeout_ms=1500 the attempt ends as a timeout after about
  1.5 s (not after 3 s with a success, nor after a fixed 10 s).
- Every gateway the file may define has a lane: a route whose only gateway is
  the 40th of the file sends (the lanes used to stop at 32 of the 64 allowed).
"""
import json
import re
import signal
import tempfile
import time

from test_carrier_sim import Sim
from test_messages_worker import enqueue, make_topics, psql, run_worker, start_worker


def infobip_gateway(sim, name, **extra):
    return dict({"name": name, "dialect": "infobip",
                 "base_url": f"http://127.0.0.1:{sim.port}/infobip",
                 "api_key_env": "NUDGEL_TEST_INFOBIP_KEY", "tps": 2000, "sender_id": "NUDGEL"},
                **extra)


def test_gateway_timeout_ms_bounds_each_submission(bootstrap, pg_dsn, topics_ready, run_id,
                                                   tmp_path):
    sim = Sim("sim.infobip.latency_ms=3000")
    worker = None
    log = tempfile.TemporaryFile(mode="w+")
    try:
        ns = f"mt{run_id}."
        make_topics(ns)
        tenant = f"mt{run_id}"
        gw = tmp_path / "gateways.json"
        gw.write_text(json.dumps({
            "gateways": [infobip_gateway(sim, "slow-infobip", timeout_ms=1500,
                                         connect_timeout_ms=500)],
            "routes": [{"country": "KE", "operator": "*", "gateways": ["slow-infobip"]}]}))
        enqueue(ns, [{"tenant_id": f"{tenant}-0", "channel": "sms", "to": "+254722000001",
                      "body": "slow carrier", "idempotency_key": f"{run_id}-0"}])
        worker = start_worker(ns, gw, "messages.retry_delays_ms=200,200,200,200",
                              "messages.breaker_failure_percent=100", stderr=log)
        final = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and worker.poll() is None:
            final = psql(pg_dsn, "SELECT status FROM nudgel.message_receipts WHERE "
                                 f"tenant_id = '{tenant}-0' AND status NOT IN ('accepted', 'submitting')").strip()
            if final:
                break
            time.sleep(0.3)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        sim.stop()
        log.seek(0)
        stderr = log.read()
    # Every attempt timed out at the gateway's 1.5 s: the job is never sent.
    assert final == "failed", f"receipt {final!r}:\n{stderr[-2000:]}"
    waits = [float(ms) for ms in
             re.findall(r"gateway slow-infobip: timed out after (\d+) ms", stderr)]
    assert waits, stderr[-2000:]
    assert all(1400 <= ms < 2500 for ms in waits), waits


def test_every_gateway_of_the_file_has_a_lane(bootstrap, pg_dsn, topics_ready, run_id,
                                              tmp_path):
    sim = Sim()
    try:
        ns = f"ml{run_id}."
        make_topics(ns)
        tenant = f"ml{run_id}"
        gw = tmp_path / "gateways.json"
        gw.write_text(json.dumps({
            "gateways": [infobip_gateway(sim, f"gw-{i:02d}") for i in range(40)],
            "routes": [{"country": "KE", "operator": "*", "gateways": ["gw-39"]}]}))
        enqueue(ns, [{"tenant_id": f"{tenant}-0", "channel": "sms", "to": f"+2547220{i:05d}",
                      "body": f"lane {i}", "idempotency_key": f"{run_id}-{i}"}
                     for i in range(5)])
        run_worker(ns, gw, pg_dsn, tenant, 5, "messages.retry_delays_ms=200,200,200,200")
        rows = psql(pg_dsn, "SELECT status, gateway, count(*) FROM nudgel.message_receipts "
                            f"WHERE tenant_id LIKE '{tenant}-%' GROUP BY 1, 2")
        assert rows.strip() == "sent|gw-39|5"
        assert sim.ledger("?summary=1")["totals"]["sms"] == 5
    finally:
        sim.stop()
