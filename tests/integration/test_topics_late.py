"""A worker started before its topics exist waits for them (issue 10, item 19).

Every role (nudgel-messages, nudgel-webhooks, nudgel-dispatch) is started on a
namespace whose topics do not exist yet. Each must stay up and not ready (/readyz
503 naming the missing topic) instead of exiting (nudgel-messages exited rc 3,
"cannot read its partition count"); once `nudgel-admin topics ensure` has created
the topics, each becomes ready, and a message job is sent.
"""
import time

from conftest import binary
from messages_harness import Worker, enqueue, gateways_file, make_topics, status_counts, \
    wait_until
from test_carrier_sim import Sim
from test_worker_readiness import Role, free_port, readyz

import harness as h  # noqa: E402  (tests/webhook-sink, on sys.path via test_worker_readiness)


def test_workers_wait_for_their_topics(pg_dsn, topics_ready, run_id, tmp_path):
    ns = f"tl{run_id}."
    tenant = f"tl{run_id}"
    sim = Sim()
    gw = gateways_file(sim, tmp_path / "gateways.json")
    ports = {name: free_port() for name in ("messages", "webhooks", "dispatch")}
    roles, stoppers = [], []
    try:
        msg = Worker(ns, gw, tmp_path / "messages.log", f"metrics.port={ports['messages']}")
        stoppers.append(msg.stop)
        roles.append(Role("messages", msg.proc, ports["messages"]))
        wh = h.start_deliverer(binary, ns, f"metrics.port={ports['webhooks']}", "log.level=info")
        stoppers.append(wh.terminate)
        roles.append(Role("webhooks", wh.proc, ports["webhooks"]))
        dp = h.start_dispatcher(binary, ns, f"metrics.port={ports['dispatch']}", "log.level=info")
        stoppers.append(dp.terminate)
        roles.append(Role("dispatch", dp.proc, ports["dispatch"]))
        logs = {"messages": msg.log, "webhooks": wh.text, "dispatch": dp.text}

        # Up and answering, not ready, for a while: statistics every second, a topic
        # check every second, so 5 s is several rounds of each.
        assert wait_until(lambda: all(readyz(r.port)[0] == 503 for r in roles), 30), \
            {r.name: (r.alive(), readyz(r.port), logs[r.name]()[-2000:]) for r in roles}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for r in roles:
                assert r.alive(), f"{r.name} exited: {logs[r.name]()[-3000:]}"
                code, why = readyz(r.port)
                assert code == 503, f"{r.name} ready without its topics: {why}"
            time.sleep(0.2)
        for r in roles:
            assert "does not exist yet" in readyz(r.port)[1], (r.name, readyz(r.port))
            assert logs[r.name]().count("does not exist yet") >= 1

        make_topics(ns, partitions=3)
        assert wait_until(lambda: all(readyz(r.port)[0] == 200 for r in roles), 60), \
            {r.name: (r.alive(), readyz(r.port), logs[r.name]()[-2000:]) for r in roles}
        enqueue(ns, [{"tenant_id": f"{tenant}-0", "channel": "sms", "to": "+254722000123",
                      "body": "late topics", "idempotency_key": f"{run_id}-late"}])
        assert wait_until(lambda: status_counts(pg_dsn, tenant).get("sent") == 1, 60), \
            (status_counts(pg_dsn, tenant), msg.log_tail())
        assert all(r.alive() for r in roles)
    finally:
        for stop in stoppers:
            stop()
        sim.stop()
