"""Delivery reports end to end (issue 11): nothing between the carrier and the receipt is
mocked or bypassed.

    nudgel-enqueue ─▶ nudgel-messages ─▶ carrier simulator (Africa's Talking + Infobip)
                                              │ delivery reports (HTTP callbacks)
                                              ▼
                      nudgel-receipts ◀── nudgel-dlr ◀─┘
                      (receipts, history, status events)

- The Infobip gateway's report URL is the `notifyUrl` nudgel-messages sends with each
  submission (messages.callback_url + the gateway's dlr token; the simulator has no
  Infobip URL of its own); the Africa's Talking gateway's is configured on the simulator
  (sim.at.dlr_url), the way AT's dashboard setting works.
- Scenario 1: 80% delivered, 15% failed, 5% no report. Scenario 2: the same mix with 10%
  of the reports sent twice and a jitter that reorders them. Each receipt ends as the
  simulator's ledger says it reported (delivered → delivered, failed → undelivered), a
  message given no report ends `expired` (dlr_timeout) after a window shortened for this
  run's gateways only (receipts.expiry_by_gateway; the sweep sees the whole database), one
  history row per transition, one status event id per transition (schema-valid, equal to
  the id on the history row), every report the simulator sent accepted once by nudgel-dlr.
- Forged reports — a wrong token, another gateway's token, an unknown gateway, a source
  outside the gateway's allow-list, a report posted to the wrong (existing) gateway —
  change no receipt: the rows stay byte for byte as they were, and end `expired`.

NUDGEL_TEST_DLR_E2E_COUNT sets the messages per scenario (default 20000, as the issue
asks: the file took 112 s through ctest on the 2-core ASan build, each scenario ~45 s of
which 20 s is the expiry window).
"""
import http.client
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import binary, group_lag, load_schema, scrape_metrics
from dlr_harness import free_port
from messages_harness import Worker, consume, enqueue, make_topics, psql, wait_settled, wait_until
from test_carrier_sim import Sim

COUNT = int(os.environ.get("NUDGEL_TEST_DLR_E2E_COUNT", "20000"))
EXPIRY_S = 20  # the shortened window; longer than a report takes through the pipeline
FINAL = ("delivered", "undelivered", "expired")
LEDGER_TO_STATE = {"delivered": "delivered", "failed": "undelivered", "none": "expired"}
FORM = "application/x-www-form-urlencoded"


class Proc:
    """A worker process with its log in a file and its /metrics port (given, or read from
    the log's "metrics on port N")."""

    def __init__(self, args, log_path, env=None, metrics_port=None):
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self._log,
                                     env=env)
        self._port = metrics_port

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, lines=40):
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def port(self):
        if self._port is None:
            m = re.search(r"metrics on port (\d+)", self.log_path.read_text(errors="replace"))
            self._port = int(m.group(1)) if m else None
        return self._port

    def metrics(self):
        return scrape_metrics(self.port())

    def readyz(self):
        if not self.port():
            return 0
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port()}/readyz",
                                        timeout=3) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return 0

    def wait_ready(self, what, timeout=60):
        assert wait_until(lambda: not self.alive() or self.readyz() == 200, timeout), \
            f"{what} never ready:\n{self.log_tail()}"
        assert self.alive(), f"{what} exited:\n{self.log_tail()}"

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


class Pipeline:
    """A namespace with its topics; the simulator, nudgel-dlr, nudgel-messages and
    nudgel-receipts on it; gateways at-<run> (Africa's Talking: KE Safaricom) and
    ib-<run> (Infobip: the rest of KE, NG, UG)."""

    def __init__(self, tmp: Path, run: str):
        self.run, self.tmp = run, tmp
        self.ns = f"e{run}."
        self.at_gw, self.ib_gw = f"at-{run}", f"ib-{run}"
        self.tokens = {self.at_gw: "attok_" + uuid.uuid4().hex,
                       self.ib_gw: "ibtok_" + uuid.uuid4().hex}
        self.env = dict(os.environ, NUDGEL_TEST_E2E_DLR_AT=self.tokens[self.at_gw],
                        NUDGEL_TEST_E2E_DLR_IB=self.tokens[self.ib_gw])
        self.procs, self.sim, self.worker = [], None, None
        try:
            self._start_all(tmp)
        except BaseException:
            self.stop()
            raise

    def _start_all(self, tmp):
        make_topics(self.ns, partitions=3)
        self.dlr_port = free_port()
        # Africa's Talking takes no URL per message: its reports go where the account's
        # dashboard says, here the simulator's sim.at.dlr_url. Infobip has none: only the
        # notifyUrl of each submission can bring its reports to nudgel-dlr.
        self.sim = Sim("sim.dlr.enabled=false", "sim.dlr.delay_ms=0",
                       "sim.dlr.retry_backoff_ms=200", "sim.dlr.retry_backoff_max_ms=2000",
                       "sim.dlr.retries=50", "sim.dlr.concurrency=128",
                       f"sim.at.dlr_url={self.url(self.at_gw)}")
        gw = tmp / "gateways.json"
        base = f"http://127.0.0.1:{self.sim.port}"
        gw.write_text(json.dumps({
            "gateways": [
                {"name": self.at_gw, "dialect": "africastalking", "base_url": f"{base}/at",
                 "api_key_env": "NUDGEL_TEST_AT_KEY", "username": "sandbox", "tps": 5000,
                 "sender_id": "NUDGEL",
                 # reports only from the carrier's address (the simulator's, 127.0.0.1)
                 "dlr": {"token_env": "NUDGEL_TEST_E2E_DLR_AT",
                         "allow_cidrs": ["127.0.0.1/32"]}},
                {"name": self.ib_gw, "dialect": "infobip", "base_url": f"{base}/infobip",
                 "api_key_env": "NUDGEL_TEST_INFOBIP_KEY", "tps": 5000, "sender_id": "NUDGEL",
                 "dlr": {"token_env": "NUDGEL_TEST_E2E_DLR_IB"}}],
            "routes": [{"country": "KE", "operator": "Safaricom", "gateways": [self.at_gw]},
                       {"country": "KE", "operator": "*", "gateways": [self.ib_gw]},
                       {"country": "NG", "operator": "*", "gateways": [self.ib_gw]},
                       {"country": "UG", "operator": "*", "gateways": [self.ib_gw]}]}))
        self.dlr = self._start(
            [binary("nudgel-dlr"), "--set", f"topics.namespace={self.ns}",
             "--set", f"dlr.gateways_file={gw}", "--set", "dlr.listen_address=127.0.0.1",
             "--set", f"dlr.port={self.dlr_port}"], "dlr", metrics_port=free_port())
        self.receipts = self._start(
            [binary("nudgel-receipts"), "--set", f"topics.namespace={self.ns}",
             "--set", f"receipts.group_id=r-{self.ns}", "--set", "metrics.port=0",
             "--set", "kafka.auto.commit.interval.ms=200",
             "--set", "receipts.sweep_interval_ms=200",
             "--set", f"receipts.expiry_by_gateway={self.at_gw}={EXPIRY_S},"
                      f"{self.ib_gw}={EXPIRY_S}"], "receipts")
        self.dlr.wait_ready("nudgel-dlr")
        self.receipts.wait_ready("nudgel-receipts")
        os.environ.update(NUDGEL_TEST_E2E_DLR_AT=self.tokens[self.at_gw],
                          NUDGEL_TEST_E2E_DLR_IB=self.tokens[self.ib_gw])
        try:
            self.worker = Worker(self.ns, gw, tmp / "messages.log",
                                 f"messages.callback_url=http://127.0.0.1:{self.dlr_port}/")
        finally:
            for name in ("NUDGEL_TEST_E2E_DLR_AT", "NUDGEL_TEST_E2E_DLR_IB"):
                os.environ.pop(name, None)

    def _start(self, args, name, metrics_port=None):
        if metrics_port:
            args += ["--set", f"metrics.port={metrics_port}"]
        p = Proc(args, self.tmp / f"{name}.log", env=self.env, metrics_port=metrics_port)
        self.procs.append(p)
        return p

    def url(self, gateway, token=None):
        return (f"http://127.0.0.1:{self.dlr_port}/v1/dlr/{gateway}/"
                f"{token or self.tokens[gateway]}")

    def post(self, gateway, body, content_type, token=None, source="127.0.0.1"):
        """(status, body) of one callback to nudgel-dlr, sent from @source."""
        conn = http.client.HTTPConnection("127.0.0.1", self.dlr_port, timeout=30,
                                          source_address=(source, 0))
        try:
            conn.request("POST", f"/v1/dlr/{gateway}/{token or self.tokens[gateway]}",
                         body=body.encode(), headers={"Content-Type": content_type})
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def sim_idle(self, timeout=120):
        """Waits until the simulator has no report left to send."""
        assert wait_until(lambda: self.sim.ledger("?summary=1")["totals"]["dlr_pending"] == 0,
                          timeout), self.sim.ledger("?summary=1")["totals"]

    def configure_sim(self, **kv):
        status, body = self.sim.configure(**{f"sim.dlr.{k}": v for k, v in kv.items()})
        assert status == 200, body

    def stop(self):
        """Stops what was started; {role: exit code}."""
        codes = {"messages": self.worker.stop()} if self.worker else {}
        for name, proc in zip(("dlr", "receipts"), self.procs):
            codes[name] = proc.stop()
        if self.sim:
            self.sim.stop()
        return codes


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, topics_ready):
    p = Pipeline(tmp_path_factory.mktemp("dlr-e2e"), uuid.uuid4().hex[:8])
    yield p
    codes = p.stop()
    assert codes == {"messages": 0, "dlr": 0, "receipts": 0}, codes


# --- helpers over Postgres and Kafka -----------------------------------------------------


def jobs_for(prefix, n):
    """@n jobs of tenants <prefix>-0..4: every other one to a Safaricom number (Africa's
    Talking), the rest to Airtel KE, MTN NG and MTN UG numbers (Infobip)."""
    jobs = []
    for i in range(n):
        if i % 2 == 0:
            to = f"+254722{i:06d}"
        else:
            to = (f"+254733{i:06d}", f"+234803{i:07d}", f"+256772{i:06d}")[i // 2 % 3]
        jobs.append({"tenant_id": f"{prefix}-{i % 5}", "channel": "sms", "to": to,
                     "body": f"Habari {prefix} {i}: your order has shipped."})
    return jobs


def receipts_of(pg_dsn, prefix):
    """{message_id: (status, gateway, gateway_message_id, error_code)} of tenants <prefix>-*."""
    rows = psql(pg_dsn, "SELECT message_id, status, coalesce(gateway, ''), "
                        "coalesce(gateway_message_id, ''), coalesce(error_code, '') FROM "
                        f"nudgel.message_receipts WHERE tenant_id LIKE '{prefix}-%'")
    return {f[0]: tuple(f[1:]) for f in (line.split("|") for line in rows.splitlines())}


def status_counts(pg_dsn, prefix):
    rows = psql(pg_dsn, "SELECT status, count(*) FROM nudgel.message_receipts WHERE "
                        f"tenant_id LIKE '{prefix}-%' GROUP BY 1")
    return {s: int(n) for s, n in (line.split("|") for line in rows.splitlines())}


def wait_statuses(pg_dsn, prefix, n, states, timeout):
    """Waits until the @n receipts of @prefix are all in @states; returns the counts."""
    def done():
        c = status_counts(pg_dsn, prefix)
        return sum(c.get(s, 0) for s in states) == n
    wait_until(done, timeout, interval=0.5)
    return status_counts(pg_dsn, prefix)


def history_of(pg_dsn, prefix):
    """{message_id: [(from, to, event_id), ...] in insertion order}."""
    rows = psql(pg_dsn, "SELECT h.message_id, coalesce(h.from_status, '-'), h.to_status, "
                        "coalesce(h.event_id, '') FROM nudgel.message_receipt_history h JOIN "
                        "nudgel.message_receipts r USING (message_id) WHERE r.tenant_id LIKE "
                        f"'{prefix}-%' ORDER BY h.id", timeout=120)
    out = {}
    for line in rows.splitlines():
        mid, frm, to, eid = line.split("|")
        out.setdefault(mid, []).append((frm, to, eid))
    return out


def ledger_by_gateway_id(p):
    """{gateway message id: ledger entry} of every message the simulator accepted."""
    led = p.sim.ledger("?limit=10000000")
    assert not led["truncated"] and not led["ledger_full"]
    return {e["message_id"]: e for e in led["entries"]}, led["totals"]


def receipt_events(p, subjects, want_count, timeout=120):
    """{subject: {(type, id), ...}} of the receipts updater's status events for @subjects,
    each validated against schemas/status.event.v1.schema.json; waits until
    @want_count subjects have one."""
    validator = load_schema("status.event.v1.schema.json")
    topic = f"{p.ns}nudgel.delivery-status.v1"

    def read(validate=False):
        out = {}
        for rec in consume(os.environ["NUDGEL_KAFKA_BOOTSTRAP"], topic):
            ev = json.loads(rec["payload"])
            if ev.get("subject") not in subjects or ev.get("source") != "/nudgel/receipts":
                continue
            if validate:
                errors = sorted(e.message for e in validator.iter_errors(ev))
                assert not errors, (ev, errors)
            out.setdefault(ev["subject"], set()).add((ev["type"], ev["id"], ev["data"]["status"]))
        return out

    wait_until(lambda: len(read()) >= want_count, timeout, interval=2)
    return read(validate=True)


def check_history_and_events(p, pg_dsn, prefix, want):
    """Each receipt of @want ({message_id: final state}): its history is the one path
    accepted → submitting → sent → final, a row per transition; the final row's event id
    is the one and only id of the status event of that transition on Kafka."""
    history = history_of(pg_dsn, prefix)
    assert set(history) == set(want)
    bad = {}
    for mid, rows in history.items():
        path = [(f, t) for f, t, _ in rows]
        expect = [("-", "accepted"), ("accepted", "submitting"), ("submitting", "sent"),
                  ("sent", want[mid])]
        if path != expect or not rows[-1][2]:
            bad[mid] = rows
    assert not bad, f"{len(bad)} receipts with another history, e.g. {list(bad.items())[:3]}"
    events = receipt_events(p, set(want), len(want))
    assert len(events) == len(want), f"{len(want) - len(events)} receipts without an event"
    wrong = {mid: evs for mid, evs in events.items()
             if evs != {(f"ai.nudgel.message.{want[mid]}", history[mid][-1][2], want[mid])}}
    assert not wrong, f"{len(wrong)} receipts with other events, e.g. {list(wrong.items())[:3]}"
    ids = [history[mid][-1][2] for mid in want]
    assert len(set(ids)) == len(ids), "one event id for two transitions"


def dlr_accepted(p):
    m = p.dlr.metrics()
    return sum(m.get(f'nudgel_dlr_reports_accepted_total{{gateway="{g}"}}', 0)
               for g in (p.at_gw, p.ib_gw))


def run_scenario(p, pg_dsn, scenario, duplicate_permille, jitter_ms):
    """COUNT messages with the simulator's reports on; checks the final states against its
    ledger, then history, events and the receiver's counts. Prints the timings."""
    prefix = f"e{p.run}{scenario}"
    p.sim_idle()
    status, _, body = p.sim.request("POST", "/ledger/reset")
    assert status == 200, body
    p.configure_sim(enabled=True, failure_permille=150, none_permille=50,
                    duplicate_permille=duplicate_permille, jitter_ms=jitter_ms)
    accepted_before = dlr_accepted(p)
    t0 = time.monotonic()
    enqueue(p.ns, jobs_for(prefix, COUNT))
    t_enqueued = time.monotonic()
    assert wait_settled([p.worker], timeout=600), p.worker.log_tail()
    t_sent = time.monotonic()
    counts = wait_statuses(pg_dsn, prefix, COUNT, FINAL + ("failed", "rejected"),
                           timeout=300 + EXPIRY_S)
    t_final = time.monotonic()
    assert sum(counts.get(s, 0) for s in FINAL) == COUNT, (counts, p.receipts.log_tail())
    p.sim_idle()
    print(f"scenario {scenario}: {COUNT} messages, enqueued in {t_enqueued - t0:.1f} s, "
          f"sent (worker settled) at {t_sent - t0:.1f} s, all final at {t_final - t0:.1f} s "
          f"{counts}")

    ledger, totals = ledger_by_gateway_id(p)
    dlr = totals["dlr"]
    # the carrier took every message once and reported on each as decided
    assert totals["accepted"] == totals["sms"] == COUNT, totals
    assert dlr["failed"] == 0 and dlr["dropped"] == 0, dlr
    assert dlr["withheld"] + dlr["queued"] - dlr["duplicated"] == COUNT, dlr
    assert (dlr["duplicated"] > 0) == (duplicate_permille > 0), dlr
    # every report the simulator saw answered 200 was accepted by nudgel-dlr, and no more
    assert dlr_accepted(p) - accepted_before == dlr["sent"], (dlr, dlr_accepted(p))

    receipts = receipts_of(pg_dsn, prefix)
    assert len(receipts) == COUNT
    want, mismatched, by_outcome = {}, [], {}
    for mid, (status, gateway, gmid, error_code) in receipts.items():
        entry = ledger.get(gmid)
        assert entry is not None, f"receipt {mid} ({gateway} {gmid}) not in the ledger"
        dialect = "africastalking" if gateway == p.at_gw else "infobip"
        assert entry["dialect"] == {"africastalking": "at", "infobip": "infobip"}[dialect]
        # Infobip's reports came to the notifyUrl of the submission, AT's to the dashboard URL
        assert entry.get("dlr_url") == ("configured" if dialect == "africastalking"
                                        else "request"), entry
        want[mid] = LEDGER_TO_STATE[entry["dlr"]]
        by_outcome[entry["dlr"]] = by_outcome.get(entry["dlr"], 0) + 1
        if status != want[mid] or (status == "expired") != (error_code == "dlr_timeout"):
            mismatched.append((mid, gateway, gmid, status, error_code, entry))
    assert not mismatched, f"{len(mismatched)} receipts not as reported: {mismatched[:5]}"
    print(f"scenario {scenario}: simulator reported {by_outcome}, dlr counters {dlr}")
    if COUNT >= 200:  # the mix happened (each share has p < 1e-4 of being empty at 200)
        assert set(by_outcome) == {"delivered", "failed", "none"}, by_outcome
    assert {e["dialect"] for e in ledger.values()} == {"at", "infobip"}

    # one report row per report consumed: each final one applied once, its copies unchanged
    rows = psql(pg_dsn, "SELECT outcome, count(*) FROM nudgel.message_receipt_reports rr JOIN "
                        "nudgel.message_receipts r USING (message_id) WHERE r.tenant_id LIKE "
                        f"'{prefix}-%' GROUP BY 1")
    outcomes = {o: int(n) for o, n in (line.split("|") for line in rows.splitlines())}
    reported = by_outcome.get("delivered", 0) + by_outcome.get("failed", 0)
    assert outcomes.get("applied", 0) == reported, outcomes
    assert outcomes.get("refused", 0) == 0 and outcomes.get("intermediate", 0) == 0, outcomes
    assert outcomes.get("unchanged", 0) >= dlr["duplicated"], (outcomes, dlr)
    check_history_and_events(p, pg_dsn, prefix, want)
    slowest = psql(pg_dsn, "SELECT coalesce(max(extract(epoch FROM final_at - submitted_at)), 0)"
                           " FROM nudgel.message_receipts WHERE tenant_id LIKE "
                           f"'{prefix}-%' AND status <> 'expired'").strip()
    kept = {k: v for k, v in p.receipts.metrics().items()
            if k.startswith("nudgel_receipts_reports_total")}
    print(f"scenario {scenario}: checked at {time.monotonic() - t0:.1f} s; slowest report "
          f"applied {float(slowest):.1f} s after its submission (window {EXPIRY_S} s); "
          f"nudgel-receipts so far {kept}")


# --- the tests ---------------------------------------------------------------------------


def test_forged_reports_change_no_receipt(pipeline, pg_dsn, bootstrap):
    """Reports that are not the carrier's own are refused, or land on no receipt; the
    receipts they name stay exactly as they were until their window ends them."""
    p = pipeline
    prefix = f"e{p.run}f"
    p.sim_idle()
    p.configure_sim(enabled=False)
    enqueue(p.ns, jobs_for(prefix, 8))
    assert wait_settled([p.worker], timeout=120), p.worker.log_tail()
    before = receipts_of(pg_dsn, prefix)
    assert {s for s, _, _, _ in before.values()} == {"sent"}, before
    at = [(mid, gmid) for mid, (_, gw, gmid, _) in before.items() if gw == p.at_gw]
    ib = [(mid, gmid) for mid, (_, gw, gmid, _) in before.items() if gw == p.ib_gw]
    assert len(at) == len(ib) == 4

    def snapshot():
        return psql(pg_dsn, "SELECT r.message_id, row_to_json(r)::text, (SELECT count(*) FROM "
                            "nudgel.message_receipt_history h WHERE h.message_id = "
                            "r.message_id), (SELECT count(*) FROM "
                            "nudgel.message_receipt_reports x WHERE x.message_id = "
                            "r.message_id), now() - r.submitted_at < "
                            f"interval '{EXPIRY_S} seconds' FROM nudgel.message_receipts r "
                            f"WHERE tenant_id LIKE '{prefix}-%' ORDER BY 1")

    rows_before = snapshot()
    refused_before = p.dlr.metrics()
    accepted_before = dlr_accepted(p)

    def at_failed(gmid):
        return (f"id={gmid}&status=Failed&phoneNumber=%2B254722000000&networkCode=63902"
                "&failureReason=DeliveryFailure&retryCount=0")

    def ib_failed(gmid):
        return json.dumps({"results": [{
            "messageId": gmid, "to": "254733000000", "doneAt": "2026-01-02T03:04:09.000+0000",
            "status": {"groupId": 2, "groupName": "UNDELIVERABLE", "id": 9,
                       "name": "UNDELIVERABLE_NOT_DELIVERED", "description": "d"},
            "error": {"groupId": 1, "groupName": "HANDSET_ERRORS", "id": 27,
                      "name": "EC_ABSENT_SUBSCRIBER", "description": "d", "permanent": True}}]})

    forged_keys = set()
    for (_, at_id), (_, ib_id) in zip(at, ib):
        # a wrong token, another gateway's token, an unknown gateway: refused, no detail
        assert p.post(p.at_gw, at_failed(at_id), FORM, token="attok_" + "0" * 32) == \
            (401, "unauthorized\n")
        assert p.post(p.ib_gw, ib_failed(ib_id), "application/json",
                      token=p.tokens[p.at_gw])[0] == 401
        assert p.post(f"nowhere-{p.run}", at_failed(at_id), FORM,
                      token=p.tokens[p.at_gw]) == (404, "not found\n")
        # the right token from outside the gateway's allow-list (127.0.0.1/32)
        assert p.post(p.at_gw, at_failed(at_id), FORM, source="127.0.0.2") == \
            (403, "forbidden\n")
        # a well-formed, authenticated report posted to the other gateway: taken (the
        # receiver cannot know), but it names no receipt of that gateway
        assert p.post(p.ib_gw, ib_failed(at_id), "application/json") == (200, "ok\n")
        assert p.post(p.at_gw, at_failed(ib_id), FORM) == (200, "ok\n")
        forged_keys |= {(p.ib_gw, at_id), (p.at_gw, ib_id.lower())}

    m = p.dlr.metrics()
    for reason, n in (("token", 8), ("not_found", 4), ("source", 4)):
        key = f'nudgel_dlr_requests_refused_total{{reason="{reason}"}}'
        assert m.get(key, 0) - refused_before.get(key, 0) == n, (reason, m)
    assert dlr_accepted(p) - accepted_before == 8
    # The refused ones produced nothing; the two per pair that were taken were consumed
    # and kept as reports for receipts that do not exist (gateway + id), never applied.
    topic = f"{p.ns}nudgel.carrier-dlr.v1"
    forged_ids = {gmid for _, gmid in at + ib} | {gmid.lower() for _, gmid in ib}
    produced = {(json.loads(r["payload"])["gateway"], json.loads(r["payload"])[
        "gateway_message_id"]) for r in consume(bootstrap, topic) if r.get("key") in forged_ids}
    assert produced == forged_keys, produced
    assert wait_until(lambda: group_lag(f"r-{p.ns}", [topic]) == 0, 60)
    kept = lambda: int(psql(pg_dsn, "SELECT count(*) FROM nudgel.receipt_pending_reports "  # noqa
                                    f"WHERE gateway IN ('{p.at_gw}', '{p.ib_gw}') AND "
                                    "gateway_message_id IN ("
                                    + ",".join(f"'{g}'" for _, g in forged_keys) + ")"))
    assert wait_until(lambda: kept() == len(forged_keys), 30), kept()
    rows_after = snapshot()
    assert all(line.endswith("|t") for line in rows_after.splitlines()), \
        f"the check ran after the {EXPIRY_S} s window: make it longer"
    assert rows_after == rows_before
    # untouched, they end as a message with no report ends
    counts = wait_statuses(pg_dsn, prefix, 8, ("expired",), timeout=EXPIRY_S + 60)
    assert counts == {"expired": 8}, counts
    assert {e for _, _, _, e in receipts_of(pg_dsn, prefix).values()} == {"dlr_timeout"}
    check_history_and_events(p, pg_dsn, prefix, {mid: "expired" for mid in before})


def test_reports_end_each_receipt_as_the_carrier_said(pipeline, pg_dsn):
    """80% delivered, 15% failed, 5% no report."""
    run_scenario(pipeline, pg_dsn, "a", duplicate_permille=0, jitter_ms=0)


def test_duplicated_and_reordered_reports_same_states(pipeline, pg_dsn):
    """The same mix, 10% of the reports sent twice, a 1 s jitter reordering them."""
    run_scenario(pipeline, pg_dsn, "b", duplicate_permille=100, jitter_ms=1000)
