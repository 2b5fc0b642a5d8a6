"""/metrics of every role, read by an independent parser (issue 12).

The five roles run together on one namespace, the way a deployment runs them:

    nudgel-enqueue ─▶ nudgel-messages ─▶ carrier simulator ─▶ nudgel-dlr ─▶ nudgel-receipts
                            │ status events
                            ▼
                      nudgel-dispatch ─▶ nudgel-webhooks ─▶ the Node sink

Each /metrics is parsed with `prometheus_client` (PyPI), not with our own reader:
- at start-up, before any job, every fleet family is there in every role, with zero
  series for the label sets the role knows (its topics, retry tiers, failure reasons,
  gateways), and histogram bounds read as Prometheus prints them (`le="0.005"`);
- after a run, the counters moved by the number of jobs (good ones succeeded, malformed
  ones failed and dead-lettered with reason "malformed"), nothing is in flight and the
  consumer lag falls to 0;
- the run's logs and /metrics hold none of the secrets configured for it (carrier API
  keys, DLR tokens, the keyring, an endpoint's signing secret, the DSN's password).
"""
import json
import math
import os
import subprocess
import time
import urllib.request
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

import sys

from conftest import SOURCE_DIR, binary, listening_port
from messages_harness import produce_raw, psql, wait_until
from test_carrier_sim import AT_KEY, GENERIC_KEY, INFOBIP_KEY
from test_dlr_e2e import Pipeline, jobs_for, wait_statuses

sys.path.insert(0, str(SOURCE_DIR / "tests" / "webhook-sink"))
import harness as h  # noqa: E402

ROLES = ("messages", "dlr", "receipts", "dispatch", "webhooks")
DB_PASSWORD = "pw" + uuid.uuid4().hex  # trust auth on the test stack: accepted, unused

# Sample names every role serves from start-up (counters with their _total).
FLEET_SAMPLES = (
    "nudgel_build_info", "nudgel_ready", "nudgel_readiness_transitions_total",
    "nudgel_jobs_succeeded_total", "nudgel_jobs_in_flight",
    "nudgel_kafka_consumer_lag_total", "nudgel_kafka_producer_queue_messages",
    "process_cpu_seconds_total", "process_resident_memory_bytes",
    "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
    "process_start_time_seconds",
)
# Families every role declares (a family may have no series yet, e.g. lag in dlr).
FLEET_FAMILIES = ("nudgel_jobs_consumed", "nudgel_jobs_failed", "nudgel_job_retries",
                  "nudgel_dead_letters", "nudgel_kafka_consumer_lag",
                  "nudgel_pg_statement_seconds")
CONSUMED_TOPICS = {
    "messages": ["nudgel.messages.v1"] + [f"nudgel.messages.retry.{t}"
                                          for t in ("5s", "30s", "2m", "10m")],
    "webhooks": ["nudgel.webhooks.v1"] + [f"nudgel.webhooks.retry.{t}"
                                          for t in ("5s", "5m", "30m", "2h", "5h", "10h")],
    "dispatch": ["nudgel.delivery-status.v1"],
    "receipts": ["nudgel.carrier-dlr.v1"],
}


def go_float(v: float) -> str:
    """What Prometheus' Go client prints for @v (strconv.FormatFloat(v, 'g', -1, 64))."""
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "0"
    for digits in range(1, 18):
        text = f"{v:.{digits - 1}e}"
        if float(text) == v:
            break
    exponent = int(text.split("e")[1])
    if exponent < -4 or exponent >= 6:
        mantissa, exp = text.split("e")
        return f"{mantissa}e{exp[0]}{abs(int(exp)):02d}"
    return f"{v:.{max(digits - (exponent + 1), 0)}f}"


class Scrape:
    """One /metrics body parsed by prometheus_client: families by name, samples."""

    def __init__(self, text):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def names(self):
        return {s.name for s in self.samples}

    def value(self, name, **labels):
        """The one sample @name with exactly @labels; None when absent."""
        hits = [s.value for s in self.samples if s.name == name and s.labels == labels]
        assert len(hits) <= 1, (name, labels, hits)
        return hits[0] if hits else None

    def series(self, name):
        return [(s.labels, s.value) for s in self.samples if s.name == name]

    def total(self, name, **match):
        return sum(s.value for s in self.samples if s.name == name
                   and all(s.labels.get(k) == v for k, v in match.items()))


def scrape(port) -> Scrape:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers
        return Scrape(r.read().decode())


class Fleet:
    """The Pipeline of test_dlr_e2e (simulator, dlr, receipts, messages) plus the
    dispatcher and the deliverer on the same namespace, and an endpoint of tenant
    <prefix>-0 subscribed to message.sent."""

    def __init__(self, tmp, pg_dsn):
        self.run = uuid.uuid4().hex[:8]
        self.prefix = f"mx{self.run}"
        self.pipe = Pipeline(tmp, self.run)
        self.ns = self.pipe.ns
        self.sink = h.Sink()
        self.endpoint_id, self.endpoint_secret = h.add_endpoint(
            pg_dsn, f"{self.prefix}-0", self.sink.url("/hook"), event_types=["message.sent"])
        self.sink.configure("/hook", secrets=[self.endpoint_secret])
        self.dispatcher = h.start_dispatcher(binary, self.ns, "log.level=info")
        self.deliverer = h.start_deliverer(binary, self.ns, "log.level=info")
        assert wait_until(lambda: all(self.ports().values()), 60), self.ports()

    def ports(self):
        return {"messages": self.pipe.worker.port(), "dlr": self.pipe.dlr.port(),
                "receipts": self.pipe.receipts.port(),
                "dispatch": listening_port(self.dispatcher.proc.pid),
                "webhooks": listening_port(self.deliverer.proc.pid)}

    def scrapes(self):
        return {role: scrape(port) for role, port in self.ports().items()}

    def logs(self):
        texts = [p.log_path.read_text(errors="replace") for p in self.pipe.procs]
        texts += [self.pipe.worker.log(), self.dispatcher.text(), self.deliverer.text()]
        return "\n".join(texts)

    def stop(self):
        codes = {"dispatch": self.dispatcher.terminate(), "webhooks": self.deliverer.terminate()}
        codes.update(self.pipe.stop())
        self.sink.stop()
        return codes


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, topics_ready, pg_dsn):
    parts = urlsplit(pg_dsn)
    secret_dsn = urlunsplit(parts._replace(
        netloc=f"{parts.username or 'nudgel'}:{DB_PASSWORD}@{parts.hostname}:{parts.port}"))
    saved = os.environ.get("NUDGEL_PG_DSN")
    os.environ["NUDGEL_PG_DSN"] = secret_dsn  # every role of this run connects with it
    try:
        f = Fleet(tmp_path_factory.mktemp("metrics"), pg_dsn)
    finally:
        if saved is None:
            os.environ.pop("NUDGEL_PG_DSN", None)
        else:
            os.environ["NUDGEL_PG_DSN"] = saved
    yield f
    codes = f.stop()
    assert codes == {role: 0 for role in ROLES}, codes


def wait_ready(fleet):
    def ready():
        try:
            return all(s.value("nudgel_ready") == 1 for s in fleet.scrapes().values())
        except OSError:
            return False
    assert wait_until(ready, 90), {r: s.value("nudgel_ready") for r, s in fleet.scrapes().items()}


def test_every_role_serves_the_fleet_families_from_startup(fleet, pg_dsn):
    wait_ready(fleet)
    version = subprocess.run([binary("nudgel-messages"), "--version"], capture_output=True,
                             text=True, check=True).stdout.split()[-1]
    for role, s in fleet.scrapes().items():
        missing = [n for n in FLEET_SAMPLES if n not in s.names()]
        assert not missing, (role, missing)
        missing = [n for n in FLEET_FAMILIES if n not in s.families]
        assert not missing, (role, missing)
        assert s.value("nudgel_build_info", role=role, version=version) == 1, \
            (role, s.series("nudgel_build_info"))
        assert s.value("nudgel_jobs_succeeded_total") == 0, role
        assert s.value("nudgel_jobs_in_flight") == 0, role
        assert s.value("process_resident_memory_bytes") > 1 << 20, role
        assert s.value("process_open_fds") >= 3, role
        assert s.value("process_max_fds") >= s.value("process_open_fds"), role
        assert abs(s.value("process_start_time_seconds") - time.time()) < 600, role
        assert s.value("nudgel_readiness_transitions_total") >= 1, role
        # Histogram bounds as Prometheus prints them: 0.005, not 0.0050000000000000001.
        for sample in s.samples:
            if "le" in sample.labels:
                le = sample.labels["le"]
                assert le == go_float(float(le)), (role, sample)
        for topic in CONSUMED_TOPICS.get(role, []):
            assert s.value("nudgel_jobs_consumed_total", topic=fleet.ns + topic) == 0, \
                (role, topic, s.series("nudgel_jobs_consumed_total"))
            if ".retry." in topic:
                tier = topic.rsplit(".", 1)[1]
                assert s.value("nudgel_job_retries_total", tier=tier) == 0, (role, tier)
        if role in ("messages", "webhooks", "dispatch"):
            assert s.value("nudgel_jobs_failed_total", reason="malformed") == 0, \
                (role, s.series("nudgel_jobs_failed_total"))
            assert s.value("nudgel_dead_letters_total", reason="malformed") == 0, role
    s = fleet.scrapes()
    gateways = (fleet.pipe.at_gw, fleet.pipe.ib_gw)
    for gw in gateways:
        m = s["messages"]
        assert m.value("nudgel_messages_breaker_state", gateway=gw) == 0, gw
        assert any(labels.get("gateway") == gw
                   for labels, _ in m.series("nudgel_gateway_request_seconds_count")), gw
        assert m.value("nudgel_messages_end_to_end_seconds_count", gateway=gw) == 0, gw
        assert m.value("nudgel_messages_throttle_tokens", gateway=gw) is not None, gw
        assert any(labels.get("gateway") == gw
                   for labels, _ in s["dlr"].series("nudgel_dlr_reports_by_gateway_total")), gw
    assert s["webhooks"].value("nudgel_webhooks_end_to_end_seconds_count") == 0
    # The gauge counts the shared table (other runs' reports may wait there too).
    def pending_matches():
        rows = int(psql(pg_dsn, "SELECT count(*) FROM nudgel.receipt_pending_reports"))
        return fleet.scrapes()["receipts"].value("nudgel_receipts_pending_reports") == rows
    assert wait_until(pending_matches, 20), \
        fleet.scrapes()["receipts"].value("nudgel_receipts_pending_reports")
    # Every consumer role publishes its assigned partitions' lag once statistics came.
    def lags_known():
        return all(fleet.scrapes()[r].series("nudgel_kafka_consumer_lag")
                   for r in CONSUMED_TOPICS)
    assert wait_until(lags_known, 30), {
        r: fleet.scrapes()[r].series("nudgel_kafka_consumer_lag") for r in CONSUMED_TOPICS}


N_GOOD = 400
N_MALFORMED = 6


def test_counters_move_by_the_number_of_jobs(fleet, bootstrap, pg_dsn):
    wait_ready(fleet)
    fleet.pipe.configure_sim(enabled="true")  # every message gets its delivery report
    ns = fleet.ns
    bad = [(f"{fleet.prefix}-0", b"{not json" + bytes([i]), [("nudgel-schema", "message.job/v1")])
           for i in range(N_MALFORMED)]
    produce_raw(bootstrap, f"{ns}nudgel.messages.v1", bad, fleet.pipe.tmp / "raw")
    from messages_harness import enqueue
    enqueue(ns, jobs_for(fleet.prefix, N_GOOD))
    wait_statuses(pg_dsn, fleet.prefix, N_GOOD, ("sent", "delivered", "undelivered"), 180)
    # Every message's report applied (the simulator's default mix has no final "none").
    fleet.pipe.sim_idle()
    endpoint_jobs = N_GOOD // 5  # tenant <prefix>-0's message.sent events

    def settled():
        s = fleet.scrapes()
        return (s["messages"].value("nudgel_jobs_succeeded_total") == N_GOOD
                and s["webhooks"].value("nudgel_jobs_succeeded_total") == endpoint_jobs
                and all(x.value("nudgel_jobs_in_flight") == 0 for x in s.values())
                and all(s[r].value("nudgel_kafka_consumer_lag_total") == 0
                        for r in CONSUMED_TOPICS))
    wait_until(settled, 120)
    s = fleet.scrapes()
    m = s["messages"]
    assert m.value("nudgel_jobs_consumed_total", topic=f"{ns}nudgel.messages.v1") == \
        N_GOOD + N_MALFORMED
    assert m.value("nudgel_jobs_succeeded_total") == N_GOOD
    assert m.value("nudgel_jobs_failed_total", reason="malformed") == N_MALFORMED
    assert m.value("nudgel_dead_letters_total", reason="malformed") == N_MALFORMED
    assert m.total("nudgel_jobs_failed_total") == N_MALFORMED
    assert m.total("nudgel_gateway_request_seconds_count") == N_GOOD
    assert m.total("nudgel_gateway_request_seconds_count", outcome="accepted") == N_GOOD, \
        m.series("nudgel_gateway_request_seconds_count")
    assert m.total("nudgel_messages_end_to_end_seconds_count") == N_GOOD
    assert m.total("nudgel_pg_statement_seconds_count") > 0
    assert m.value("nudgel_jobs_in_flight") == 0
    assert m.value("nudgel_kafka_consumer_lag_total") == 0
    assert all(v == 0 for _, v in m.series("nudgel_kafka_consumer_lag"))

    d = s["dlr"]
    reports = fleet.pipe.sim.ledger("?summary=1")["totals"]
    assert d.total("nudgel_dlr_reports_by_gateway_total", result="accepted") >= N_GOOD, reports
    r = s["receipts"]
    consumed = r.value("nudgel_jobs_consumed_total", topic=f"{ns}nudgel.carrier-dlr.v1")
    assert consumed == d.total("nudgel_dlr_reports_by_gateway_total", result="accepted")
    assert r.value("nudgel_jobs_succeeded_total") + r.total("nudgel_jobs_failed_total") <= consumed
    assert r.value("nudgel_jobs_succeeded_total") >= N_GOOD

    w = s["webhooks"]
    assert w.value("nudgel_jobs_consumed_total", topic=f"{ns}nudgel.webhooks.v1") == endpoint_jobs
    assert w.value("nudgel_jobs_succeeded_total") == endpoint_jobs
    assert w.total("nudgel_webhooks_end_to_end_seconds_count") == endpoint_jobs
    assert fleet.sink.ledger()["paths"]["/hook"]["unique_ids"] == endpoint_jobs
    dp = s["dispatch"]
    status_events = dp.value("nudgel_jobs_consumed_total",
                             topic=f"{ns}nudgel.delivery-status.v1")
    assert status_events >= N_GOOD + N_MALFORMED  # a sent (or failed) event per job, then DLRs


def test_no_secret_in_logs_or_metrics(fleet):
    secrets = {"africastalking key": AT_KEY, "infobip key": INFOBIP_KEY,
               "generic key": GENERIC_KEY, "database password": DB_PASSWORD,
               "keyring": h.KEYRING.split(":", 1)[1], "endpoint secret": fleet.endpoint_secret,
               "endpoint secret key": fleet.endpoint_secret.split("_", 1)[1]}
    secrets.update({f"dlr token of {gw}": tok for gw, tok in fleet.pipe.tokens.items()})
    texts = {"logs": fleet.logs()}
    texts.update({f"/metrics of {r}": s.text for r, s in fleet.scrapes().items()})
    assert len(texts["logs"]) > 1000  # the roles did log (info level)
    for where, text in texts.items():
        leaked = [what for what, value in secrets.items() if value and value in text]
        assert not leaked, f"{leaked} in {where}"
