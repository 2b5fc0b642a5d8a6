"""Helpers for the nudgel-messages fault and corpus tests (not a test file itself).

A worker here is a real `nudgel-messages` process against the stack's Kafka and
Postgres and a carrier simulator, on an isolated set of topics (a namespace per
test), with its log in a file (never a pipe that could fill and block it) and
its /metrics port read from that log. `Stack` stops and starts the stack's own
Kafka and Postgres through `scripts/stack`, and only when the environment under
test is that stack.
"""
import json
import os
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

from conftest import SOURCE_DIR, binary, group_lag, scrape_metrics
from test_carrier_sim import AT_KEY, GENERIC_KEY, INFOBIP_KEY

SCHEMA_HEADER = "message.job/v1"
FINAL_SQL = "status NOT IN ('accepted', 'submitting')"  # accepted: claimed, not yet sent


def uuid7() -> str:
    """A lower-case UUIDv7 (48-bit ms timestamp, version 7, RFC 4122 variant)."""
    ms = time.time_ns() // 1_000_000
    raw = bytearray(ms.to_bytes(6, "big") + secrets.token_bytes(10))
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def psql(dsn, sql, timeout=30):
    return subprocess.run(["psql", dsn, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          capture_output=True, text=True, check=True, timeout=timeout).stdout


def try_psql(dsn, sql, timeout=10):
    """psql, or None while Postgres is away."""
    try:
        return psql(dsn, sql, timeout=timeout)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None


def count_where(dsn, tenant, cond):
    out = try_psql(dsn, "SELECT count(*) FROM nudgel.message_receipts WHERE "
                        f"tenant_id LIKE '{tenant}-%' AND {cond}")
    return int(out) if out is not None else None


def status_counts(dsn, tenant):
    rows = psql(dsn, "SELECT status, count(*) FROM nudgel.message_receipts WHERE "
                     f"tenant_id LIKE '{tenant}-%' GROUP BY 1 ORDER BY 1")
    return {s: int(n) for s, n in (line.split("|") for line in rows.splitlines())}


def make_topics(ns, partitions=6):
    subprocess.run([binary("nudgel-admin"), "--set", f"topics.namespace={ns}",
                    "--set", f"topics.partitions={partitions}", "topics", "ensure"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([binary("nudgel-admin"), "migrate"], check=True, capture_output=True,
                   timeout=120)


def enqueue(ns, jobs, timeout=600):
    """Jobs through nudgel-enqueue (validated, canonical, with the contract headers)."""
    run = subprocess.run([binary("nudgel-enqueue"), "--quiet", "--json", "--topic", "messages",
                          "--set", f"producer.messages_topic={ns}nudgel.messages.v1"],
                         input="".join(json.dumps(j) + "\n" for j in jobs),
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-2000:]


def produce_raw(bootstrap, topic, records, workdir):
    """Produces each (key, value bytes or None, headers) as one record, in order, with kcat.

    Every value goes through its own file (kcat sends a file named on the command
    line as one message), so newlines, NUL bytes and invalid UTF-8 arrive intact.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for n, (key, value, headers) in enumerate(records):
        args = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-X", "acks=all"]
        for name, val in headers:
            args += ["-H", f"{name}={val}"]
        if not value:
            # kcat sends no empty file and skips empty lines, but "key<TAB>" is a
            # record with an empty value (-Z: a null value, a tombstone).
            args += ["-K", "\t"] + (["-Z"] if value is None else [])
            subprocess.run(args, input=f"{key or ''}\t\n".encode(), check=True,
                           capture_output=True, timeout=60)
            continue
        path = workdir / f"record-{n:04d}.bin"
        path.write_bytes(value)
        if key is not None:
            args += ["-k", key]
        subprocess.run(args + [str(path)], check=True, capture_output=True, timeout=60)


def consume(bootstrap, topic, timeout=300):
    """Every record of @topic from the beginning, as dicts from kcat -J.

    Like conftest.kcat_consume, but bytes that are not UTF-8 (kcat -J passes a
    payload through as is) survive as surrogate escapes instead of failing.
    """
    out = subprocess.run(
        ["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-J", "-q",
         "-X", "fetch.wait.max.ms=50"],
        capture_output=True, timeout=timeout, check=True).stdout
    return [json.loads(line) for line in out.decode("utf-8", "surrogateescape").splitlines()
            if line.startswith("{")]


def gateways_file(sim, path, dialect="infobip", tps=2000, **keys):
    """One simulator gateway of @dialect routing KE, NG and UG (no default route); @keys are
    more keys of the gateway (unknown_outcome="hold", timeout_ms=1000, ...)."""
    if dialect == "infobip":
        gw = {"name": "sim-infobip", "dialect": "infobip",
              "base_url": f"http://127.0.0.1:{sim.port}/infobip",
              "api_key_env": "NUDGEL_TEST_INFOBIP_KEY", "tps": tps, "sender_id": "NUDGEL"}
    elif dialect == "africastalking":
        gw = {"name": "sim-at", "dialect": "africastalking",
              "base_url": f"http://127.0.0.1:{sim.port}/at",
              "api_key_env": "NUDGEL_TEST_AT_KEY", "username": "sandbox", "tps": tps,
              "sender_id": "NUDGEL"}
    else:
        raise ValueError(dialect)
    gw.update(keys)
    conf = {"gateways": [gw],
            "routes": [{"country": c, "operator": "*", "gateways": [gw["name"]]}
                       for c in ("KE", "NG", "UG")]}
    Path(path).write_text(json.dumps(conf))
    return Path(path)


class Worker:
    """One nudgel-messages process; its log goes to @log_path."""

    def __init__(self, ns, gw_file, log_path, *sets, worker_id=None):
        self.log_path = Path(log_path)
        self.worker_id = worker_id
        self.ns = ns
        env = dict(os.environ, NUDGEL_TEST_INFOBIP_KEY=INFOBIP_KEY,
                   NUDGEL_TEST_GENERIC_KEY=GENERIC_KEY, NUDGEL_TEST_AT_KEY=AT_KEY)
        args = [binary("nudgel-messages"), "--set", f"topics.namespace={ns}",
                "--set", f"messages.gateways_file={gw_file}",
                "--set", f"messages.group_id=g-{ns}",
                "--set", "metrics.port=0", "--set", "log.level=info",
                "--set", "kafka.auto.commit.interval.ms=200",
                "--set", "kafka.session.timeout.ms=6000"]
        if worker_id:
            args += ["--set", f"messages.worker_id={worker_id}"]
        for s in sets:
            args += ["--set", s]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=self._log)
        self._port = None

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines=40):
        return "\n".join(self.log().splitlines()[-lines:])

    def port(self, timeout=30):
        deadline = time.monotonic() + timeout
        while self._port is None and time.monotonic() < deadline and self.alive():
            m = re.search(r"metrics on port (\d+)", self.log())
            if m:
                self._port = int(m.group(1))
            else:
                time.sleep(0.1)
        return self._port

    def metrics(self):
        """Prometheus samples as {'name{labels}': value}; {} when unreachable."""
        return scrape_metrics(self.port(timeout=5))

    def assigned_jobs_partitions(self):
        """Partitions of the jobs topic this worker held at some point (from its log)."""
        return [int(a) for a in re.findall(r"\((\d+) of \d+ partitions of", self.log())]

    def kill(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log.close()

    def stop(self, timeout=60):
        """SIGTERM; returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        return self.proc.returncode


RETRY_TIERS = ("5s", "30s", "2m", "10m")


def messages_lag(ns, group=None):
    """Records nudgel-messages (messages.group_id @group, default g-@ns as Worker sets it)
    has not committed past: the jobs topic in @group, the retry tiers in @group.retry (the
    worker's two consumers). None while Kafka does not answer."""
    group = group or f"g-{ns}"
    jobs = group_lag(group, [f"{ns}nudgel.messages.v1"])
    retries = group_lag(f"{group}.retry", [f"{ns}nudgel.messages.retry.{t}" for t in RETRY_TIERS])
    return None if jobs is None or retries is None else jobs + retries


def settled(workers, ns):
    """True when every worker (each with a metrics() of its own) answers with nothing in
    flight and the group has committed to the end of the jobs topic and retry tiers (lag 0):
    each job's receipt, event and offset are durable and nothing is left to poll."""
    for w in workers:
        if w.metrics().get("nudgel_messages_in_flight") != 0:
            return False
    return messages_lag(ns) == 0


def wait_settled(workers, timeout=60):
    """Waits until @workers (Worker, one namespace) have settled (see settled()) or one
    died; returns whether they settled."""
    return bool(wait_until(lambda: not all(w.alive() for w in workers) or
                           settled(workers, workers[0].ns),
                           timeout, interval=0.3)) and all(w.alive() for w in workers)


def wait_until(predicate, timeout, interval=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


class Stack:
    """The local stack's services, through scripts/stack (same env, same ports)."""

    def __init__(self):
        self.script = str(SOURCE_DIR / "scripts" / "stack")

    def _run(self, *args, timeout=180):
        return subprocess.run([self.script, *args], capture_output=True, text=True,
                              timeout=timeout)

    def is_under_test(self):
        """True when NUDGEL_KAFKA_BOOTSTRAP and NUDGEL_PG_DSN are scripts/stack's own."""
        env = self._run("env", timeout=30)
        if env.returncode != 0:
            return False
        exports = dict(re.findall(r"export (\w+)=(\S+)", env.stdout))
        return (exports.get("NUDGEL_KAFKA_BOOTSTRAP") == os.environ.get("NUDGEL_KAFKA_BOOTSTRAP")
                and exports.get("NUDGEL_PG_DSN") == os.environ.get("NUDGEL_PG_DSN")
                and self._run("status", timeout=60).returncode == 0)

    def down(self, service):
        run = self._run("down", service)
        assert run.returncode == 0, run.stderr

    def up(self, service):
        """Starts @service and waits until it answers (scripts/stack up does)."""
        run = self._run("up", service)
        assert run.returncode == 0, run.stderr

    def restore(self):
        """Both services up and answering, whatever state a test left them in."""
        run = self._run("up")
        if run.returncode != 0:
            raise AssertionError(f"could not restore the stack: {run.stderr[-2000:]}")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self._run("status", timeout=60).returncode == 0 and \
                    try_psql(os.environ["NUDGEL_PG_DSN"], "SELECT 1") is not None:
                return
            time.sleep(1)
        raise AssertionError("the stack did not answer again within 120 s")
