"""nudgel-messages against a corpus of malformed jobs, interleaved with good ones.

Every record is produced as raw bytes straight to the jobs topic with kcat (no
producer-side validation), keyed by tenant, with the contract headers
(`nudgel-schema: message.job/v1`, `nudgel-tenant`, `content-type`) unless the
case is about a header, and an `x-test-case` header naming the case (the DLQ
keeps a job's headers, so a dead letter is matched to its case by it).

One worker run serves every check; each case is then its own test:

- the bad job is in the namespaced DLQ exactly once, with its original bytes
  and a `nudgel-dlq-reason` that names the problem (a per-case regular
  expression, case-insensitive: a wrong reason fails);
- a job is *addressable* when its bytes are a JSON document the worker can read
  (RFC 8259 syntax, UTF-8, no duplicate key, nesting and size within the
  limits) whose `id` is a lower-case UUID and whose `tenant_id` is valid. An
  addressable bad job gets one final status event for its id, `failed` or
  `rejected` (`expired` for a job past its expires_at), with an error (for a
  template that cannot be rendered, one naming the missing variable or the
  unknown template);
- a job that is not addressable has no id of its own. DESIGN §4 keys events
  by tenant_id and makes their subject the message id, and §5 says nothing is
  dropped silently: the worker dead-letters it (original bytes, reason,
  origin topic/partition/offset) and emits one `failed` event with error code
  `malformed`, whose subject is an id derived from the record's
  topic/partition/offset (stable over redeliveries, so the event id is too)
  and whose tenant is the job's if valid, else the Kafka key's, else
  `unknown` (a parseable UUID in an otherwise unusable job is used as the
  subject). No receipt is written (no id to own a row). Checked: one such
  event per non-addressable case;
- no bad job is ever sent: the carrier's ledger holds exactly the good jobs,
  once each, and no receipt of a bad job is `sent`.

Then the good jobs (before, between and after the bad ones) all end `sent`,
each once at the simulator (Infobip dialect, which keys its ledger by our
message id), and the worker is still alive at the end and exits 0 on SIGTERM.
"""
import json
import re
import time
from dataclasses import dataclass, field

import pytest

from conftest import headers_of, load_schema
from messages_harness import (SCHEMA_HEADER, Worker, consume, gateways_file, make_topics,
                              produce_raw, psql, uuid7, wait_settled, wait_until)
from test_carrier_sim import Sim

FAILED = {"ai.nudgel.message.failed", "ai.nudgel.message.rejected"}
EXPIRED = {"ai.nudgel.message.expired"}


@dataclass
class Case:
    name: str
    value: bytes
    reason: str  # regular expression the nudgel-dlq-reason must match (case-insensitive)
    job_id: str = None  # set when the job is addressable: an event is expected for it
    events: set = field(default_factory=lambda: FAILED)
    key: str = None
    headers: list = None
    event_error: str = None  # regular expression its final event's error message must match


def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def build_corpus(tenant, tpl_tenant):
    """The bad jobs: (case name, bytes, reason pattern, addressable id or None)."""
    now = int(time.time() * 1000)
    bad = f"{tenant}-bad"
    cases = []
    serial = iter(range(100, 1000))

    def job(**over):
        j = {"id": uuid7(), "tenant_id": bad, "channel": "sms",
             "to": f"+2547220{next(serial):05d}", "body": "corpus", "created_at": iso(now)}
        for k, v in over.items():
            if v is DROP:
                j.pop(k, None)
            else:
                j[k] = v
        return j

    def add(name, j, reason, addressable=True, events=FAILED, headers=None, raw=None,
            event_error=None):
        value = raw if raw is not None else json.dumps(j).encode()
        ident = j.get("id") if addressable and j is not None else None
        tenant_key = j.get("tenant_id") if isinstance(j, dict) else None
        key = tenant_key if isinstance(tenant_key, str) and tenant_key else bad
        cases.append(Case(name, value, reason, ident, events, key, headers, event_error))

    # -- not a job-shaped JSON document: no id can be trusted -----------------
    add("not_json", None, r"json", raw=b"hello, this is not JSON")
    good_bytes = json.dumps(job()).encode()
    add("truncated_json", None, r"end of input|unterminated|truncated", raw=good_bytes[:40])
    add("json_array", None, r"object", raw=b"[" + good_bytes + b"]")
    add("json_string", None, r"object", raw=b'"just a string"')
    add("json_number", None, r"object", raw=b"42")
    add("json_null_literal", None, r"object", raw=b"null")
    add("empty_value", None, r"no input|empty|end of input", raw=b"")
    add("null_value_tombstone", None, r"no input|empty|null|end of input|object", raw=None)
    add("whitespace_only", None, r"end of input|empty", raw=b"  \n\t ")
    add("trailing_garbage", None, r"after|trailing", raw=good_bytes + b" {}")
    j = job(body="caf\u00e9")
    add("invalid_utf8", j, r"utf-?8", addressable=False,
        raw=json.dumps(j, ensure_ascii=False).encode().replace(b"\xc3\xa9", b"\xc3\x28"))
    j = job(body="nul")
    add("raw_nul_byte_in_string", j, r"control char|nul", addressable=False,
        raw=json.dumps(j).encode().replace(b'"nul"', b'"n\x00l"'))
    add("escaped_nul_in_body", job(body="a\u0000b"), r"u0000|nul", addressable=False)
    j = job()
    dup = json.dumps(j)[:-1] + ', "to": "+254722000999"}'
    add("duplicate_key", j, r"duplicate", addressable=False, raw=dup.encode())
    deep = {}
    for _ in range(100):
        deep = {"d": deep}
    add("nesting_100_deep", job(metadata=deep), r"nest|deep|depth", addressable=False)
    add("oversize_job_70k", job(metadata={"blob": "x" * 70_000}), r"limit|too large|bytes",
        addressable=False)

    # -- id and tenant: without them there is nothing to address an event to ---
    add("missing_id", job(id=DROP), r"\bid\b", addressable=False)
    add("id_not_a_string", job(id=7), r"\bid\b", addressable=False)
    add("id_not_a_uuid", job(id="order-1042"), r"\bid\b.*uuid", addressable=False)
    add("id_upper_case_uuid", job(id=uuid7().upper()), r"\bid\b.*(uuid|lower)",
        addressable=False)
    add("missing_tenant_id", job(tenant_id=DROP), r"tenant_id", addressable=False)
    add("tenant_id_not_a_string", job(tenant_id=12), r"tenant_id", addressable=False)
    add("tenant_id_bad_characters", job(tenant_id="acme corp!"), r"tenant_id",
        addressable=False)

    # -- addressable jobs with one bad field ------------------------------------
    add("unknown_field", job(priority="high"), r"priority|unknown")
    add("missing_channel", job(channel=DROP), r"channel")
    add("channel_whatsapp", job(channel="whatsapp"), r"channel.*whatsapp|whatsapp.*channel")
    add("channel_not_a_string", job(channel=1), r"channel")
    add("missing_to", job(to=DROP), r"\bto\b.*(required|missing)|(required|missing).*\bto\b")
    add("to_not_a_string", job(to=254722000001), r"\bto\b.*string")
    add("to_bad_e164", job(to="+12"), r"\bto\b.*(e\.?164|valid)")
    add("to_letters", job(to="+2547ABC0001"), r"\bto\b.*(character|valid)")
    add("to_fixed_line_ke", job(to="+254202222222"), r"\bto\b.*(fixed|mobile)")
    add("body_and_template", job(template="order-confirmation", variables={"name": "A"}),
        r"both|either")
    add("neither_body_nor_template", job(body=DROP), r"body.*template|template.*body")
    add("empty_body", job(body=""), r"body")
    add("body_not_a_string", job(body=["hi"]), r"body.*string")
    add("body_1601_chars", job(body="a" * 1601), r"body.*(1600|characters|long)")
    add("created_at_not_a_date", job(created_at="yesterday"), r"created_at")
    add("missing_created_at", job(created_at=DROP), r"created_at")
    add("expires_before_created", job(expires_at=iso(now - 60_000)), r"expires_at")
    add("variables_not_an_object", job(body=DROP, template="order-confirmation",
                                       variables="name=Ada"), r"variables")
    add("variables_nested_object", job(body=DROP, template="order-confirmation",
                                       variables={"name": {"first": "Ada"}}), r"variables")
    add("variables_without_template", job(variables={"name": "Ada"}), r"variables")
    add("metadata_not_an_object", job(metadata=[1, 2]), r"metadata")
    add("from_sender_id_too_long", job(**{"from": "THIS-SENDER-IS-TOO-LONG"}), r"\bfrom\b")
    add("country_not_iso", job(to="0722000777", country="Kenya"), r"country")
    add("idempotency_key_300_bytes", job(idempotency_key="k" * 300), r"idempotency_key")

    # -- well-formed jobs the worker must still refuse -------------------------
    add("expires_at_in_the_past", job(created_at=iso(now - 7_200_000),
                                      expires_at=iso(now - 3_600_000)),
        r"expire", events=EXPIRED)
    add("number_outside_ke_ng_ug_no_default_route", job(to="+447700900123"),
        r"route|outside")
    add("template_missing_variable",
        job(tenant_id=tpl_tenant, body=DROP, template="order-confirmation",
            variables={"name": "Ada"}), r"template", event_error=r"order_id")
    add("unknown_template", job(tenant_id=tpl_tenant, body=DROP, template="no-such-template"),
        r"template.*(exist|unknown|not found)", event_error=r"no-such-template")
    add("schema_header_v2", job(), r"schema",
        headers=[("nudgel-schema", "message.job/v2")])
    add("schema_header_webhook_job", job(), r"schema",
        headers=[("nudgel-schema", "webhook.job/v1")])
    j = job()
    add("tenant_header_mismatch", j, r"nudgel-tenant|tenant.*header|header.*tenant|mismatch",
        headers=[("nudgel-tenant", f"{tenant}-someone-else")])
    return cases


DROP = object()


@pytest.fixture(scope="module")
def corpus_run(bootstrap, pg_dsn, topics_ready, tmp_path_factory):
    """Produces the corpus and the good jobs, runs one worker, gathers what it did."""
    tmp = tmp_path_factory.mktemp("corpus")
    run = uuid7()[-8:]
    ns = f"mx{run}."
    tenant = f"mx{run}"
    tpl_tenant = f"{tenant}-tpl"
    make_topics(ns, partitions=3)
    psql(pg_dsn, "INSERT INTO nudgel.message_templates (tenant_id, name, locale, body) VALUES "
                 f"('{tpl_tenant}', 'order-confirmation', 'en', "
                 "'Hi {{name}}, order {{order_id}} is confirmed')")
    cases = build_corpus(tenant, tpl_tenant)
    assert len(cases) >= 30

    numbers = ["+2547221{:05d}", "+23480322{:05d}", "+2567722{:05d}"]
    goods = []

    def good():
        n = len(goods)
        j = {"id": uuid7(), "tenant_id": f"{tenant}-good{n % 3}", "channel": "sms",
             "to": numbers[n % 3].format(n), "created_at": iso(int(time.time() * 1000))}
        if n % 4 == 0:
            j.update(tenant_id=tpl_tenant, template="order-confirmation",
                     variables={"name": "Ada", "order_id": f"AC-{n}"})
        else:
            j["body"] = f"Habari {n}! Ẹ ku aarọ" if n % 5 == 0 else f"Your code is {n:04d}"
        goods.append(j)
        return (j["tenant_id"], json.dumps(j).encode(),
                [("nudgel-schema", SCHEMA_HEADER), ("nudgel-tenant", j["tenant_id"]),
                 ("content-type", "application/json"), ("x-test-case", f"good-{n}")])

    records = []
    for case in cases:
        records.append(good())
        tenant_hdr = case.key
        hdrs = {"nudgel-schema": SCHEMA_HEADER, "nudgel-tenant": tenant_hdr,
                "content-type": "application/json"}
        hdrs.update(dict(case.headers or []))
        hdrs["x-test-case"] = case.name
        records.append((case.key, case.value, list(hdrs.items())))
    for _ in range(10):  # the worker keeps going after the last bad job
        records.append(good())
    jobs_topic = f"{ns}nudgel.messages.v1"
    produce_raw(bootstrap, jobs_topic, records, tmp / "records")

    sim = Sim()
    worker = None
    try:
        gw = gateways_file(sim, tmp / "gateways.json")
        worker = Worker(ns, gw, tmp / "worker.log", "messages.retry_delays_ms=300,300,300,300")
        good_ids = {j["id"] for j in goods}
        id_list = ",".join(f"'{i}'" for i in good_ids)

        def goods_done():
            n = psql(pg_dsn, "SELECT count(*) FROM nudgel.message_receipts WHERE "
                             f"message_id IN ({id_list}) AND status NOT IN ('accepted', 'submitting')")
            return int(n) == len(goods) or not worker.alive()

        wait_until(goods_done, timeout=120, interval=0.5)
        # Dead letters and events of the bad jobs: as many as there are cases, or
        # a quiet spell when some never come.
        dlq_topic = f"{ns}nudgel.messages.dlq.v1"
        wait_until(lambda: len(consume(bootstrap, dlq_topic)) >= len(cases)
                   or not worker.alive(), timeout=20, interval=1)
        # The last events and offsets: nothing in flight, every record committed.
        settled = wait_settled([worker], timeout=60)
        alive = worker.alive()
        metrics = worker.metrics()
        exit_code = worker.stop()
        ledger = sim.ledger("?limit=100000")
        yield {
            "cases": cases, "goods": goods, "alive": alive, "settled": settled,
            "exit_code": exit_code,
            "log": worker.log_tail(60), "metrics": metrics, "ledger": ledger,
            "jobs": consume(bootstrap, jobs_topic),
            "dlq": consume(bootstrap, dlq_topic),
            "events": consume(bootstrap, f"{ns}nudgel.delivery-status.v1"),
            "receipts": dict(line.split("|") for line in psql(
                pg_dsn, "SELECT message_id, status FROM nudgel.message_receipts WHERE "
                        f"tenant_id LIKE '{tenant}-%'").splitlines()),
        }
    finally:
        if worker and worker.alive():
            worker.kill()
        sim.stop()


def events_by_message(run):
    out = {}
    for rec in run["events"]:
        ev = json.loads(rec["payload"])
        out.setdefault(ev["data"]["message_id"], []).append(ev)
    return out


def test_worker_survives_and_sends_every_good_job_once(corpus_run):
    run = corpus_run
    assert run["alive"], f"the worker died during the corpus:\n{run['log']}"
    assert run["settled"], f"jobs left in flight or records not committed:\n{run['log']}"
    assert run["exit_code"] == 0, run["log"]
    good_ids = {j["id"] for j in run["goods"]}
    statuses = {i: run["receipts"].get(i) for i in good_ids}
    assert set(statuses.values()) == {"sent"}, \
        {i: s for i, s in statuses.items() if s != "sent"}
    ledger = run["ledger"]
    keys = {e["key"]: e["count"] for e in ledger["entries"]}
    assert not ledger["truncated"]
    # Bad jobs that reached the carrier fail their own case; here: every good one, once.
    assert good_ids <= set(keys), f"{len(good_ids - set(keys))} good jobs never reached the carrier"
    assert {keys[i] for i in good_ids} == {1}
    assert ledger["duplicates"] == 0
    sent = {m for m, evs in events_by_message(run).items()
            if any(e["type"] == "ai.nudgel.message.sent" for e in evs)}
    assert good_ids <= sent
    validator = load_schema("status.event.v1.schema.json")
    for rec in run["events"]:
        errors = list(validator.iter_errors(json.loads(rec["payload"])))
        assert not errors, errors[0].message


def test_no_dead_letter_without_a_case(corpus_run):
    """Every dead letter belongs to a bad job of the corpus, once (none for a good one)."""
    names = [headers_of(r).get("x-test-case") for r in corpus_run["dlq"]]
    bad_names = {c.name for c in corpus_run["cases"]}
    assert [n for n in names if n not in bad_names] == []
    assert sorted(n for n in names if names.count(n) > 1) == []


def test_unaddressable_jobs_get_one_malformed_event_each(corpus_run):
    cases = corpus_run["cases"]
    unaddressable = [c for c in cases if not c.job_id]
    ours = {c.job_id for c in cases if c.job_id} | {j["id"] for j in corpus_run["goods"]}
    derived = {}
    for mid, evs in events_by_message(corpus_run).items():
        for ev in evs:
            error = ev["data"].get("error") or {}
            if mid not in ours and error.get("code") == "malformed":
                derived.setdefault(mid, set()).add(ev["id"])
    assert len(derived) == len(unaddressable), \
        f"{len(derived)} malformed events with derived subjects for {len(unaddressable)} cases"
    assert {len(ids) for ids in derived.values()} <= {1}


def case_ids():
    return [c.name for c in build_corpus("t", "t-tpl")]


@pytest.mark.parametrize("name", case_ids())
def test_malformed_job(corpus_run, name):
    run = corpus_run
    case = next(c for c in run["cases"] if c.name == name)
    problems = []
    origin = [r for r in run["jobs"] if headers_of(r).get("x-test-case") == name]
    assert len(origin) == 1, "the case was not produced"
    dead = [r for r in run["dlq"] if headers_of(r).get("x-test-case") == name]
    if len(dead) != 1:
        problems.append(f"{len(dead)} dead letters (expected 1)")
    else:
        h = headers_of(dead[0])
        reason = h.get("nudgel-dlq-reason") or ""
        if not re.search(case.reason, reason, re.IGNORECASE):
            problems.append(f"dead-letter reason {reason!r} does not match /{case.reason}/")
        if dead[0]["payload"] != origin[0]["payload"]:
            problems.append("the dead letter does not carry the original bytes")
        want_origin = f"{origin[0]['topic']}/{origin[0]['partition']}/{origin[0]['offset']}"
        if h.get("nudgel-origin") != want_origin:
            problems.append(f"nudgel-origin {h.get('nudgel-origin')!r}, expected {want_origin!r}")
    evs = events_by_message(run)
    if case.job_id:
        types = [e["type"] for e in evs.get(case.job_id, [])]
        finals = [t for t in types if t in case.events]
        if not finals:
            problems.append(f"no {'/'.join(sorted(case.events))} event for its id "
                            f"{case.job_id} (events: {types or 'none'})")
        elif not all(e.get("data", {}).get("error") for e in evs[case.job_id]
                     if e["type"] in case.events):
            problems.append("its final event carries no error")
        elif case.event_error:
            messages = [e["data"]["error"].get("message", "") for e in evs[case.job_id]
                        if e["type"] in case.events]
            if not any(re.search(case.event_error, m, re.IGNORECASE) for m in messages):
                problems.append(f"its event's error {messages} does not match "
                                f"/{case.event_error}/")
    # Never sent, whatever else happened.
    try:
        job_id = json.loads(case.value).get("id") if case.value else None
    except (ValueError, AttributeError):
        job_id = None
    if isinstance(job_id, str):
        if run["receipts"].get(job_id) == "sent":
            problems.append("its receipt says sent")
        if any(e["type"] == "ai.nudgel.message.sent" for e in evs.get(job_id, [])):
            problems.append("a sent event exists for it")
        if any(e["key"] == job_id for e in run["ledger"]["entries"]):
            problems.append("it reached the carrier")
    assert not problems, f"{name}: " + "; ".join(problems)
