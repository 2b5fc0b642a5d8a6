"""Kafka credentials from a file (kafka.properties_file), as a mounted Kubernetes Secret gives them.

The stack's Kafka also listens on SASL_PLAINTEXT (mechanism PLAIN, user nudgel, a random
password made by scripts/stack; `scripts/stack env` names the listener and the password's file).
Every test here talks to that listener only, with the credentials only in a properties file:

- `nudgel-admin --check-config=connect` passes with the right password and, with a wrong one,
  exits 2 naming kafka.properties_file and Kafka's refusal (not "unreachable");
- a nudgel-messages worker consumes, sends, publishes and commits over SASL: every job is
  recorded sent and the group's lag falls to 0;
- with a wrong password a worker stays alive and not ready (503), and says why in its log;
- the password is in nothing the binaries print or log (--print-config redacts the file's
  properties).
"""
import os
import subprocess
from pathlib import Path

import pytest

from conftest import binary, readyz
from messages_harness import (Worker, count_where, enqueue, gateways_file, make_topics,
                              messages_lag, wait_until)
from test_carrier_sim import Sim

SASL_BOOTSTRAP = os.environ.get("NUDGEL_STACK_KAFKA_SASL_BOOTSTRAP")
PASSWORD_FILE = os.environ.get("NUDGEL_STACK_KAFKA_SASL_PASSWORD_FILE")

pytestmark = pytest.mark.skipif(
    not SASL_BOOTSTRAP or not PASSWORD_FILE,
    reason="not scripts/stack's Kafka: NUDGEL_STACK_KAFKA_SASL_* are unset")


@pytest.fixture
def password():
    return Path(PASSWORD_FILE).read_text().strip()


def properties(path, password):
    """A client.properties as the chart mounts it: comments, CRLF, blanks around '='."""
    path.write_text("# Kafka client credentials (a Kubernetes Secret's key)\r\n"
                    "security.protocol = SASL_PLAINTEXT\r\n"
                    "sasl.mechanism=PLAIN\n"
                    "\n"
                    "sasl.username=nudgel\n"
                    f"sasl.password={password}\n")
    return str(path)


def admin(*args, env_extra=None, timeout=90):
    env = dict(os.environ, NUDGEL_KAFKA_BOOTSTRAP=SASL_BOOTSTRAP, **(env_extra or {}))
    return subprocess.run([binary("nudgel-admin"), "--set", "admin.timeout_ms=8000", *args],
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_check_config_connect_with_credentials_from_a_file(tmp_path, password):
    good = properties(tmp_path / "good.properties", password)
    bad = properties(tmp_path / "bad.properties", "not-" + password)

    ok = admin("--check-config=connect", env_extra={"NUDGEL_KAFKA_PROPERTIES_FILE": good})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "configuration OK" in ok.stdout

    # Without the file the SASL listener never answers a plaintext client: unreachable (3).
    bare = admin("--check-config=connect")
    assert bare.returncode == 3, bare.stdout + bare.stderr
    assert "kafka.bootstrap:" in bare.stderr

    refused = admin("--check-config=connect", env_extra={"NUDGEL_KAFKA_PROPERTIES_FILE": bad})
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "kafka.properties_file: Kafka refused the credentials" in refused.stderr
    assert "Authentication failed" in refused.stderr

    printed = admin("--print-config", env_extra={"NUDGEL_KAFKA_PROPERTIES_FILE": good})
    assert printed.returncode == 0, printed.stderr
    assert "kafka.sasl.password = [redacted]  # librdkafka, kafka.properties_file" in printed.stdout
    for run in (ok, bare, refused, printed):
        assert password not in run.stdout + run.stderr


def test_worker_delivers_over_sasl_with_credentials_from_a_file(bootstrap, pg_dsn, topics_ready,
                                                                run_id, tmp_path, password):
    ns = f"ks{run_id}."
    tenant = f"ks{run_id}"
    make_topics(ns, partitions=3)
    sim = Sim()
    good = properties(tmp_path / "client.properties", password)
    worker = None
    try:
        gw = gateways_file(sim, tmp_path / "gateways.json")
        worker = Worker(ns, gw, tmp_path / "messages.log", f"kafka.bootstrap={SASL_BOOTSTRAP}",
                        f"kafka.properties_file={good}")
        n = 30
        enqueue(ns, [{"tenant_id": f"{tenant}-{i % 3}", "channel": "sms",
                      "to": f"+2547{22_000_000 + i:08d}", "body": f"sasl {i}",
                      "idempotency_key": f"{run_id}-{i}"} for i in range(n)])
        sent = "status = 'sent'"
        assert wait_until(lambda: count_where(pg_dsn, tenant, sent) == n or not worker.alive(),
                          90), f"{count_where(pg_dsn, tenant, sent)} of {n} sent:\n" \
                               f"{worker.log_tail()}"
        assert worker.alive(), worker.log_tail()
        # Ready once the consumer's first statistics arrive (the sends may come first).
        assert wait_until(lambda: readyz(worker.port())[0] == 200, 30), readyz(worker.port())
        # Offsets committed over SASL: the group's lag (read on the plaintext listener) is 0.
        assert wait_until(lambda: messages_lag(ns, f"g-{ns}") == 0, 30), messages_lag(ns)
        assert sim.ledger("?summary=1")["totals"]["sms"] >= n
        assert worker.stop() == 0, worker.log_tail()
        assert password not in worker.log()
    finally:
        if worker is not None and worker.alive():
            worker.proc.kill()
        sim.stop()


def test_worker_with_refused_credentials_stays_alive_and_not_ready(bootstrap, topics_ready,
                                                                    run_id, tmp_path, password):
    ns = f"kr{run_id}."
    make_topics(ns, partitions=1)
    sim = Sim()
    bad = properties(tmp_path / "client.properties", "not-" + password)
    worker = None
    try:
        gw = gateways_file(sim, tmp_path / "gateways.json")
        worker = Worker(ns, gw, tmp_path / "messages.log", f"kafka.bootstrap={SASL_BOOTSTRAP}",
                        f"kafka.properties_file={bad}")
        assert wait_until(lambda: "Authentication failed" in worker.log() or not worker.alive(),
                          60), worker.log_tail()
        assert worker.alive(), worker.log_tail()
        code, why = readyz(worker.port())
        assert code == 503, (code, why)
        assert password not in worker.log()
        assert worker.stop() == 0, worker.log_tail()
    finally:
        if worker is not None and worker.alive():
            worker.proc.kill()
        sim.stop()
