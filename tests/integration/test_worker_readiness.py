"""Readiness, SIGHUP and draining, the same for every worker role.

DESIGN §8: a worker is ready only when Kafka is reachable and its group is
joined with its partitions assigned, every Postgres connection it needs is
up, and it is not draining. Each role runs on the shared runtime
(workers/runtime: worker.c, readiness.c), so each must answer /readyz the
same way:

- 503 from its first answer until its group is joined, then 200;
- SIGHUP reloads or is ignored: the process keeps running and stays ready;
- 503 while the stack's Postgres is stopped, 200 again after it is back;
- 503 while the stack's Kafka broker is stopped, 200 again after;
- 503 while draining after SIGTERM (requests in flight at a slow carrier or
  a slow webhook endpoint), then exit 0.

Every role runs at once, so each outage is made once. The test stops and
starts the stack's services through `scripts/stack`, so it runs only
against the stack of this checkout (else it skips), restores both services
in a `finally`, and ctest runs it alone (RUN_SERIAL).
"""
import socket
import sys
import time
import urllib.error
import urllib.request

import pytest

from conftest import SOURCE_DIR, binary, readyz
from messages_harness import Stack, Worker, enqueue, gateways_file, make_topics, wait_until
from test_carrier_sim import Sim

sys.path.insert(0, str(SOURCE_DIR / "tests" / "webhook-sink"))
import harness as h  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


class Role:
    def __init__(self, name, proc, port):
        self.name, self.proc, self.port = name, proc, port

    def alive(self):
        return self.proc.poll() is None


@pytest.fixture
def stack():
    s = Stack()
    if not s.is_under_test():
        pytest.skip("NUDGEL_KAFKA_BOOTSTRAP / NUDGEL_PG_DSN are not scripts/stack's own stack: "
                    "nothing of it is stopped")
    yield s
    s.restore()


def first_answers(roles, timeout=60):
    """Each role's /readyz answers from the moment its port opens until its first 200,
    all roles polled together (they start together)."""
    seen = {r.name: [] for r in roles}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = [r for r in roles if r.alive() and (not seen[r.name] or
                                                      seen[r.name][-1][0] != 200)]
        if not waiting:
            break
        for role in waiting:
            code, why = readyz(role.port)
            if code:
                seen[role.name].append((code, why))
        time.sleep(0.02)
    return seen


def all_ready(roles, code):
    return all(readyz(r.port)[0] == code for r in roles)


def test_readiness_follows_kafka_postgres_and_drain(stack, bootstrap, pg_dsn, topics_ready,
                                                    run_id, tmp_path):
    ns = f"rd{run_id}."
    make_topics(ns, partitions=3)
    sim = Sim("sim.infobip.latency_ms=4000")
    sink = h.Sink()
    gw = gateways_file(sim, tmp_path / "gateways.json")
    ports = {name: free_port() for name in ("messages", "webhooks", "dispatch")}
    roles = []
    try:
        msg = Worker(ns, gw, tmp_path / "messages.log", f"metrics.port={ports['messages']}",
                     "messages.drain_timeout_ms=20000")
        roles.append(Role("messages", msg.proc, ports["messages"]))
        wh = h.start_deliverer(binary, ns, f"metrics.port={ports['webhooks']}",
                               "webhooks.drain_timeout_ms=20000", "log.level=info")
        roles.append(Role("webhooks", wh.proc, ports["webhooks"]))
        dp = h.start_dispatcher(binary, ns, f"metrics.port={ports['dispatch']}", "log.level=info")
        roles.append(Role("dispatch", dp.proc, ports["dispatch"]))
        logs = {"messages": msg.log, "webhooks": wh.text, "dispatch": dp.text}

        # Before the group is joined: 503, then 200.
        answers = first_answers(roles)
        for role in roles:
            seen = answers[role.name]
            assert seen, f"{role.name}: /readyz never answered:\n{logs[role.name]()[-3000:]}"
            assert seen[0][0] == 503, f"{role.name}: first /readyz answer {seen[0]}, " \
                                      "before its partitions were assigned"
            assert seen[-1][0] == 200, f"{role.name}: never ready: {seen[-1]}\n" \
                                       f"{logs[role.name]()[-3000:]}"
            assert healthz(role.port) == 200

        # SIGHUP: the configuration is read again; still running, still ready.
        for role in roles:
            role.proc.send_signal(1)
        for role in roles:
            assert wait_until(lambda: "SIGHUP: configuration reloaded" in logs[role.name]()
                              or not role.alive(), 30), f"{role.name}: no reload logged"
            assert role.alive(), f"{role.name} died on SIGHUP: rc {role.proc.returncode}"
        assert wait_until(lambda: all_ready(roles, 200), 10), \
            {r.name: readyz(r.port) for r in roles}

        # Postgres stopped: 503 everywhere; back: 200.
        stack.down("pg")
        assert wait_until(lambda: all_ready(roles, 503), 60), \
            {r.name: readyz(r.port) for r in roles}
        assert all(r.alive() for r in roles)
        stack.up("pg")
        assert wait_until(lambda: all_ready(roles, 200), 90), \
            {r.name: readyz(r.port) for r in roles}

        # Kafka stopped: 503 everywhere; back: 200.
        stack.down("kafka")
        assert wait_until(lambda: all_ready(roles, 503), 60), \
            {r.name: readyz(r.port) for r in roles}
        assert all(r.alive() for r in roles)
        stack.up("kafka")
        assert wait_until(lambda: all_ready(roles, 200), 120), \
            {r.name: readyz(r.port) for r in roles}

        # Draining: work in flight at a slow carrier and a slow endpoint.
        ep, secret = h.add_endpoint(pg_dsn, f"rd{run_id}", sink.url("/slow"))
        sink.configure("/slow", secrets=[secret], sleep_ms=4000)
        h.enqueue(binary, ns, [h.webhook_job(f"rd{run_id}", ep, i, run_id) for i in range(3)])
        enqueue(ns, [{"tenant_id": f"rd{run_id}", "channel": "sms",
                      "to": f"+2547{20_000_000 + i:08d}", "body": f"drain {i}"}
                     for i in range(3)])
        assert wait_until(lambda: sink.path_ledger("/slow", summary=True)["requests"] >= 3, 60)
        assert wait_until(lambda: sim.ledger("?summary=1")["totals"]["sms"] >= 3, 60)
        for role in roles[:2]:
            role.proc.send_signal(15)
        # The signal reaches the worker's loop asynchronously: wait for it to be taken,
        # while the carrier and the endpoint still hold the work (4 s each).
        for role in roles[:2]:
            assert wait_until(lambda: readyz(role.port)[0] == 503 or not role.alive(), 3), \
                f"{role.name} while draining: {readyz(role.port)}"
            assert role.alive(), f"{role.name} exited before its work in flight was done"
            code, why = readyz(role.port)
            assert code == 503 and "shutting down" in why, f"{role.name} draining: {code} {why}"
        for role in roles[:2]:
            assert role.proc.wait(timeout=60) == 0, logs[role.name]()[-3000:]
    finally:
        for role in roles:
            if role.alive():
                role.proc.kill()
                role.proc.wait()
        sink.stop()
        sim.proc.kill()
