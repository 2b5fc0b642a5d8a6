"""Helpers the webhook integration tests share (tests/integration/test_webhooks_*.py).

The Node sink (sink.js, verifying with the official `standardwebhooks`
package), endpoints registered with SQL and secrets sealed like the deliverer
opens them (seal.js), the deliverer and dispatcher as processes whose logs go
to files, and Postgres polling. Everything listens on 127.0.0.1 only.
"""
import base64
import json
import os
import secrets
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

# tests/integration/conftest.py: importable whenever pytest runs the tests that use this.
from conftest import group_offsets, listening_port, offsets_lag, scrape_metrics

SINK_DIR = Path(__file__).resolve().parent
FINAL = ("delivered", "failed", "exhausted", "cancelled")

# A test keyring: the deliverer opens sealed secrets with it (NUDGEL_SECRET_KEY).
# A key id of its own per run: the stack's database keeps the secrets earlier runs sealed under
# their own keys, and a deliverer refuses to start with another key under a stored id.
KEY_ID = f"test-{secrets.token_hex(4)}"
KEYRING = f"{KEY_ID}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def psql(dsn, sql):
    return subprocess.run(["psql", dsn, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          capture_output=True, text=True, check=True, timeout=60).stdout


def seal(*plain):
    out = subprocess.run(["node", str(SINK_DIR / "seal.js"), KEYRING, *plain],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return out.split()


class Sink:
    """The Node receiver: configure paths, read the ledger."""

    def __init__(self):
        if not (SINK_DIR / "node_modules" / "standardwebhooks").is_dir():
            raise RuntimeError("tests/webhook-sink/node_modules missing: run scripts/bootstrap")
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(["node", str(SINK_DIR / "sink.js"), "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        self.port = json.loads(line)["listening"]
        self.base = f"http://127.0.0.1:{self.port}"

    def url(self, path, host="127.0.0.1"):
        return f"http://{host}:{self.port}{path}"

    def _req(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def configure(self, path, **cfg):
        return self._req("PUT", "/_sink/paths" + path, cfg)

    def ledger(self, path=None, summary=False):
        q = []
        if path:
            q.append("path=" + urllib.request.quote(path))
        if summary:
            q.append("summary=1")
        return self._req("GET", "/_sink/ledger" + ("?" + "&".join(q) if q else ""))

    def path_ledger(self, path, summary=False):
        return self.ledger(path, summary)["paths"][path]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def add_endpoint(dsn, tenant, url, event_types=(), secret=None, previous_secret=None,
                 previous_valid_s=3600, max_concurrency=None, rate=None):
    """Registers an endpoint with SQL (sealed secrets); returns (endpoint_id, secret)."""
    return add_endpoints(dsn, [dict(tenant=tenant, url=url, event_types=event_types,
                                    secret=secret, previous_secret=previous_secret,
                                    previous_valid_s=previous_valid_s,
                                    max_concurrency=max_concurrency, rate=rate)])[0]


def add_endpoints(dsn, specs):
    """Many endpoints in one statement; returns [(endpoint_id, secret)]."""
    for s in specs:
        s["secret"] = s.get("secret") or new_secret()
    plain = [s["secret"] for s in specs] + [s["previous_secret"] for s in specs
                                           if s.get("previous_secret")]
    sealed = iter(seal(*plain))
    sealed_current = [next(sealed) for _ in specs]
    rows, out = [], []
    for s, sc in zip(specs, sealed_current):
        eid = str(uuid.uuid4())
        types = "ARRAY[" + ",".join(f"'{t}'" for t in s.get("event_types") or ()) + "]::text[]"
        prev, prev_id, prev_exp = "NULL", "NULL", "NULL"
        if s.get("previous_secret"):
            prev = f"'\\x{next(sealed)}'::bytea"
            prev_id = f"'{KEY_ID}'"
            prev_exp = f"now() + interval '{int(s.get('previous_valid_s', 3600))} seconds'"
        mc = s.get("max_concurrency")
        rate = s.get("rate")
        rows.append(f"('{eid}', '{s['tenant']}', '{s['url']}', {types}, "
                    f"{mc if mc else 'NULL'}, {rate if rate else 'NULL'}, "
                    f"'\\x{sc}'::bytea, '{KEY_ID}', {prev}, {prev_id}, {prev_exp})")
        out.append((eid, s["secret"]))
    psql(dsn, "INSERT INTO nudgel.webhook_endpoints (endpoint_id, tenant_id, url, event_types, "
              "max_concurrency, rate_limit_per_second, secret_ciphertext, secret_key_id, "
              "previous_secret_ciphertext, previous_secret_key_id, previous_secret_expires_at) "
              "VALUES " + ",".join(rows))
    return out


def make_topics(binary, ns, partitions=3):
    subprocess.run([binary("nudgel-admin"), "--set", f"topics.namespace={ns}",
                    "--set", f"topics.partitions={partitions}", "topics", "ensure"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([binary("nudgel-admin"), "migrate"], check=True, capture_output=True,
                   timeout=120)


def webhook_job(tenant, endpoint_id, i, run_id, event_type="message.sent", data=None):
    return {"id": str(uuid.uuid4()), "tenant_id": tenant, "endpoint_id": endpoint_id,
            "event_type": event_type, "event_id": f"evt_{run_id}_{i}",
            "payload": {"type": event_type, "timestamp": "2026-11-29T05:00:00Z",
                        "data": data if data is not None else {"n": i, "run": run_id}},
            "created_at": "2026-11-29T05:00:00Z"}


def enqueue(binary, ns, jobs):
    run = subprocess.run([binary("nudgel-enqueue"), "--quiet", "--json", "--topic", "webhooks",
                          "--set", f"producer.webhooks_topic={ns}nudgel.webhooks.v1"],
                         input="\n".join(json.dumps(j) for j in jobs) + "\n",
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]


class Proc:
    """A worker process with its log in a file (never a pipe that could fill).

    @group and @topics: its consumer group and what it consumes; @idle_gauges: the
    gauges of its /metrics that are 0 when it holds no work (see settled())."""

    def __init__(self, args, env=None, group=None, topics=(), idle_gauges=()):
        self.log = tempfile.NamedTemporaryFile(mode="w+", prefix="nudgel-wh-", suffix=".log",
                                               delete=False)
        self.args = args
        self.env = dict(os.environ, **(env or {}))
        self.group, self.topics, self.idle_gauges = group, list(topics), list(idle_gauges)
        self.proc = subprocess.Popen(args, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=self.log, text=True)

    def text(self):
        return Path(self.log.name).read_text(errors="replace")

    def metrics(self):
        """Its /metrics samples as {'name{labels}': value}; {} when it does not answer."""
        return scrape_metrics(listening_port(self.proc.pid))

    def idle(self):
        """True when its /metrics answers with every idle gauge at 0."""
        m = self.metrics()
        return bool(m) and all(m.get(g) == 0 for g in self.idle_gauges)

    def terminate(self, timeout=60):
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("did not stop within %ss after SIGTERM:\n%s"
                                 % (timeout, self.text()[-3000:]))

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def worker_binary(binary, name):
    """conftest.binary() for the webhook workers too (built in workers/webhooks)."""
    try:
        return binary(name)
    except FileNotFoundError:
        build = Path(os.environ.get("NUDGEL_BUILD_DIR", SINK_DIR.parents[1] / "build" / "dev"))
        path = build / "workers" / "webhooks" / name
        if not path.exists():
            raise
        return str(path)


def deliverer_args(binary, ns, *sets, allow_loopback=True):
    args = [worker_binary(binary, "nudgel-webhooks"), "--set", f"topics.namespace={ns}",
            "--set", f"webhooks.group_id=wh-{ns}", "--set", "metrics.port=0",
            "--set", "log.level=warn", "--set", "kafka.auto.commit.interval.ms=200",
            "--set", "kafka.session.timeout.ms=6000"]
    if allow_loopback:
        # Only in tests: the sink listens on loopback, which the SSRF guard refuses by default.
        args += ["--set", "webhooks.ssrf_allow_cidrs=127.0.0.0/8"]
    for s in sets:
        args += ["--set", s]
    return args


WEBHOOK_RETRY_TIERS = ("5s", "5m", "30m", "2h", "5h", "10h")


def start_deliverer(binary, ns, *sets, allow_loopback=True):
    return Proc(deliverer_args(binary, ns, *sets, allow_loopback=allow_loopback),
                env={"NUDGEL_SECRET_KEY": KEYRING}, group=f"wh-{ns}",
                topics=[f"{ns}nudgel.webhooks.v1"] + [f"{ns}nudgel.webhooks.retry.{t}"
                                                      for t in WEBHOOK_RETRY_TIERS],
                idle_gauges=("nudgel_webhooks_in_flight", "nudgel_webhooks_lane_waiting"))


DISPATCH_REFRESH_MS = 500  # how long the dispatcher trusts a tenant's endpoint list


def start_dispatcher(binary, ns, *sets):
    args = [worker_binary(binary, "nudgel-dispatch"), "--set", f"topics.namespace={ns}",
            "--set", f"dispatch.group_id=dp-{ns}", "--set", "metrics.port=0",
            "--set", "log.level=warn", "--set", "kafka.auto.commit.interval.ms=200",
            "--set", "kafka.session.timeout.ms=6000",
            "--set", f"dispatch.endpoint_refresh_ms={DISPATCH_REFRESH_MS}"]
    for s in sets:
        args += ["--set", s]
    return Proc(args, group=f"dp-{ns}", topics=[f"{ns}nudgel.delivery-status.v1"],
                idle_gauges=("nudgel_dispatch_in_flight",))


def final_count(dsn, tenant_like):
    return int(psql(dsn, "SELECT count(*) FROM nudgel.webhook_deliveries WHERE tenant_id LIKE "
                         f"'{tenant_like}' AND status IN ('delivered','failed','exhausted',"
                         "'cancelled')"))


def wait_until(fn, timeout, what, proc=None, interval=0.3):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        if proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"worker exited ({proc.proc.returncode}) while waiting for "
                                 f"{what}:\n{proc.text()[-3000:]}")
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last})"
                         + (f"\n{proc.text()[-3000:]}" if proc else ""))


def wait_settled(procs, timeout=60, what="the workers to settle"):
    """Waits until every worker of @procs (deliverer, dispatcher) holds no work (its idle
    gauges at 0) and its group has committed to the end of its topics (lag 0), on two polls
    in a row with no record produced or committed in between: one's output is the other's
    input (the dispatcher's jobs feed the deliverer, whose status events come back to the
    dispatcher), so only a repeat of the same snapshot shows that nothing moves any more."""
    previous = []

    def quiet():
        snapshot = []
        for p in procs:
            if p.proc.poll() is not None:
                raise AssertionError(f"worker exited ({p.proc.returncode}) while waiting for "
                                     f"{what}:\n{p.text()[-3000:]}")
            offsets = p.idle() and group_offsets(p.group, p.topics)
            if not offsets or offsets_lag(offsets) != 0:
                previous.clear()
                return False
            snapshot.append(offsets)
        settled = previous == [snapshot]
        previous[:] = [snapshot]
        return settled

    return wait_until(quiet, timeout, what)
