"""nudgel-webhooks: tenant isolation, the envelope check, and deduplicated jobs.

Issue 10: item 12 (a job of tenant A naming tenant B's endpoint was POSTed to
B's URL, signed with B's secret, and A's event carried B's URL; a poison
corpus found the deliverer delivering records whose Kafka key or
`nudgel-tenant` header differs from `tenant_id`, and records without a
`nudgel-schema` header or naming `message.job/v1`) and item 17 (a second job
with a new id for an event already delivered to the endpoint was dropped with
no row and no event).

One deliverer and one Node sink (verifying with the official standardwebhooks
package) serve the module; its own topics, tenants and endpoints.

- The corpus: bad records produced raw with kcat between good jobs of the same
  tenants, each record tagged with an `x-test-case` header (dead letters keep
  the job's headers). Every bad record is dead-lettered exactly once with a
  reason naming its problem, gets one `ai.nudgel.webhook.failed` event for its
  id and tenant, never reaches any endpoint, and leaves no delivery row; every
  good job arrives exactly once and ends delivered.
- A job naming another tenant's endpoint: nothing reaches that endpoint, the
  refused job's event and dead letter and the worker's log never carry the
  other tenant's URL, and the owner's own job for the same event id is then
  delivered (the refused one took nothing of its).
- A job with a new id for an (endpoint, event) already delivered: nothing
  sent, an `ai.nudgel.webhook.deduplicated` event naming the delivery that
  holds the event, a row in `webhook_duplicates`; two such jobs at once: one
  delivered, the other deduplicated.
"""
import json
import re
import sys
import time
import uuid

import pytest

from conftest import SOURCE_DIR, binary, headers_of, load_schema
from messages_harness import consume, produce_raw

sys.path.insert(0, str(SOURCE_DIR / "tests" / "webhook-sink"))
import harness as h  # noqa: E402

SCHEMA = "webhook.job/v1"


@pytest.fixture(scope="module")
def env(bootstrap, pg_dsn, topics_ready):
    run = uuid.uuid4().hex[:8]
    ns = f"wi{run}."
    h.make_topics(binary, ns)
    sink = h.Sink()
    worker = h.start_deliverer(binary, ns, "webhooks.retry_schedule=300ms,300ms",
                               "webhooks.retry_jitter_percent=0", "log.level=info")
    yield {"ns": ns, "sink": sink, "worker": worker, "run": run, "dsn": pg_dsn,
           "bootstrap": bootstrap}
    code = worker.terminate()
    sink.stop()
    assert code == 0, worker.text()[-3000:]


def events(env):
    """Every status event of the module's topics, each validated against the schema."""
    validator = load_schema("status.event.v1.schema.json")
    out = []
    for rec in consume(env["bootstrap"], f"{env['ns']}nudgel.delivery-status.v1"):
        ev = json.loads(rec["payload"])
        errors = list(validator.iter_errors(ev))
        assert not errors, f"{errors[0].message} in {ev}"
        out.append((rec, ev))
    return out


def dead_letters(env):
    return consume(env["bootstrap"], f"{env['ns']}nudgel.webhooks.dlq.v1")


def events_for(env, delivery_id, at_least=1, timeout=60):
    def enough():
        evs = [ev for _, ev in events(env) if ev["subject"] == delivery_id]
        return evs if len(evs) >= at_least else None
    return h.wait_until(enough, timeout, f"{at_least} event(s) of {delivery_id}", env["worker"])


def job(tenant, endpoint_id, event_id, n):
    return {"id": str(uuid.uuid4()), "tenant_id": tenant, "endpoint_id": endpoint_id,
            "event_type": "message.sent", "event_id": event_id,
            "payload": {"type": "message.sent", "timestamp": "2026-11-29T05:00:00Z",
                        "data": {"n": n}},
            "created_at": "2026-11-29T05:00:00Z"}


# --- the corpus ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(env, tmp_path_factory):
    """Produces bad records between good jobs; waits until every one has an outcome."""
    run, sink, dsn = env["run"], env["sink"], env["dsn"]
    tenants = [f"wc{run}-a", f"wc{run}-b"]
    eps = h.add_endpoints(dsn, [dict(tenant=t, url=sink.url(f"/c{run}/{t}")) for t in tenants])
    for t, (_, secret) in zip(tenants, eps):
        sink.configure(f"/c{run}/{t}", secrets=[secret])
    own = dict(zip(tenants, [e[0] for e in eps]))
    serial = iter(range(10_000))

    def record(case, tenant, endpoint, key=None, schema=SCHEMA, tenant_header=None):
        n = next(serial)
        j = job(tenant, endpoint, f"evt_{run}_{case}_{n}", n)
        hdrs = [("content-type", "application/json"), ("x-test-case", case)]
        if schema is not None:
            hdrs.append(("nudgel-schema", schema))
        hdrs.append(("nudgel-tenant", tenant_header or tenant))
        return j, (key or tenant, json.dumps(j).encode(), hdrs)

    a, b = tenants
    # (case, tenant, endpoint, produce options, reason pattern); each twice, once per tenant.
    specs = []
    for t, other in ((a, b), (b, a)):
        specs += [
            ("key_is_another_tenant", t, own[t], dict(key=other), r"key.*tenant|tenant.*key"),
            ("key_is_a_prefix", t, own[t], dict(key=t[:-1]), r"key.*tenant|tenant.*key"),
            ("tenant_header_is_another_tenant", t, own[t], dict(tenant_header=other),
             r"nudgel-tenant"),
            ("schema_header_missing", t, own[t], dict(schema=None), r"nudgel-schema.*missing"),
            ("schema_header_message_job", t, own[t], dict(schema="message.job/v1"),
             r"nudgel-schema.*message\.job/v1"),
            ("schema_header_v2", t, own[t], dict(schema="webhook.job/v2"), r"nudgel-schema"),
            ("endpoint_of_another_tenant", t, own[other], {}, r"endpoint_tenant_mismatch"),
        ]
    cases, goods, records = [], [], []

    def good():
        t = tenants[len(goods) % 2]
        j, rec = record(f"good-{len(goods)}", t, own[t])
        goods.append(j)
        records.append(rec)

    for name, t, endpoint, opts, reason in specs:
        good()
        j, rec = record(f"{name}-{t[-1]}", t, endpoint, **opts)
        cases.append({"name": f"{name}-{t[-1]}", "job": j, "reason": reason,
                      "endpoint": endpoint})
        records.append(rec)
    for _ in range(10):  # the worker keeps going after the last bad record
        good()
    produce_raw(env["bootstrap"], f"{env['ns']}nudgel.webhooks.v1", records,
                tmp_path_factory.mktemp("corpus"))

    good_ids = ",".join(f"'{j['id']}'" for j in goods)
    h.wait_until(lambda: int(h.psql(dsn, "SELECT count(*) FROM nudgel.webhook_deliveries WHERE "
                                         f"delivery_id IN ({good_ids}) AND status = "
                                         "'delivered'")) == len(goods),
                 120, f"{len(goods)} good jobs delivered", env["worker"])
    # Nothing held and every record committed: a record's offset is stored only once its
    # event, dead letter or retry hop is acknowledged, so all of them are in by now.
    h.wait_settled([env["worker"]], 60)
    return {"cases": cases, "goods": goods, "tenants": tenants, "own": own,
            "dlq": dead_letters(env), "events": events(env),
            "ledger": sink.ledger(), "rows": h.psql(
                dsn, "SELECT delivery_id FROM nudgel.webhook_deliveries WHERE tenant_id IN "
                     f"('{a}', '{b}')").split()}


def test_corpus_good_jobs_each_delivered_once(corpus, env):
    ledger = corpus["ledger"]["paths"]
    arrivals = {}
    for t in corpus["tenants"]:
        lg = ledger[f"/c{env['run']}/{t}"]
        assert lg["failures"] == 0
        for webhook_id, entry in lg["ids"].items():
            arrivals[webhook_id] = arrivals.get(webhook_id, 0) + entry["count"]
    want = {j["event_id"]: 1 for j in corpus["goods"]}
    assert {k: v for k, v in arrivals.items() if k in want} == want
    bad = {c["job"]["event_id"] for c in corpus["cases"]}
    assert sorted(bad & set(arrivals)) == [], "bad records reached an endpoint"
    assert set(arrivals) == set(want)


@pytest.mark.parametrize("name", [f"{n}-{s}" for s in "ab" for n in (
    "key_is_another_tenant", "key_is_a_prefix", "tenant_header_is_another_tenant",
    "schema_header_missing", "schema_header_message_job", "schema_header_v2",
    "endpoint_of_another_tenant")])
def test_corpus_bad_record(corpus, name):
    case = next(c for c in corpus["cases"] if c["name"] == name)
    j = case["job"]
    problems = []
    dead = [r for r in corpus["dlq"] if headers_of(r).get("x-test-case") == name]
    if len(dead) != 1:
        problems.append(f"{len(dead)} dead letters (expected 1)")
    else:
        reason = headers_of(dead[0]).get("nudgel-dlq-reason") or ""
        if not re.search(case["reason"], reason, re.IGNORECASE):
            problems.append(f"dead-letter reason {reason!r} does not match /{case['reason']}/")
        if json.loads(dead[0]["payload"]) != j:
            problems.append("the dead letter does not carry the original bytes")
    evs = [ev for _, ev in corpus["events"] if ev["subject"] == j["id"]]
    types = sorted(ev["type"] for ev in evs)
    if types != ["ai.nudgel.webhook.failed"]:
        problems.append(f"events {types} (expected one ai.nudgel.webhook.failed)")
    for ev in evs:
        if ev["tenantid"] != j["tenant_id"] or ev["data"]["tenant_id"] != j["tenant_id"]:
            problems.append(f"event for tenant {ev['tenantid']}, not {j['tenant_id']}")
        if not (ev["data"].get("error") or {}).get("code"):
            problems.append("its failed event carries no error code")
        if "url" in ev["data"]:
            problems.append(f"its event carries a url: {ev['data']['url']}")
    if j["id"] in corpus["rows"]:
        problems.append("it has a delivery row")
    assert not problems, f"{name}: " + "; ".join(problems)


# --- another tenant's endpoint ---------------------------------------------------------------

def test_job_naming_another_tenants_endpoint_is_refused(env):
    run, sink, dsn = env["run"], env["sink"], env["dsn"]
    ta, tb = f"wa{run}", f"wb{run}"
    secret_path_b = f"/iso{run}/b-private-hook"
    (ep_a, sec_a), (ep_b, sec_b) = h.add_endpoints(dsn, [
        dict(tenant=ta, url=sink.url(f"/iso{run}/a")), dict(tenant=tb, url=sink.url(secret_path_b))])
    sink.configure(f"/iso{run}/a", secrets=[sec_a])
    sink.configure(secret_path_b, secrets=[sec_b])
    event_id = f"evt_{run}_shared"
    # Tenant A names B's endpoint twice: row unknown (read while the job waits), then cached.
    attack = [job(ta, ep_b, event_id, 1), job(ta, ep_b, f"evt_{run}_again", 2)]
    h.enqueue(binary, env["ns"], attack[:1])
    evs = events_for(env, attack[0]["id"])
    h.enqueue(binary, env["ns"], attack[1:])
    evs += events_for(env, attack[1]["id"])
    # B's own job for the same event id is delivered: A's refusal took nothing of it.
    own = job(tb, ep_b, event_id, 3)
    h.enqueue(binary, env["ns"], [own])
    delivered = events_for(env, own["id"])
    assert [e["type"] for e in delivered] == ["ai.nudgel.webhook.delivered"]
    assert delivered[0]["data"]["url"] == sink.url(secret_path_b)

    lg = sink.path_ledger(secret_path_b)
    assert lg["requests"] == 1 and list(lg["ids"]) == [event_id]  # only B's own job
    for ev in evs:
        assert ev["type"] == "ai.nudgel.webhook.failed", ev
        assert ev["tenantid"] == ta and ev["data"]["tenant_id"] == ta
        assert ev["data"]["error"]["code"] == "endpoint_tenant_mismatch"
        assert ev["data"]["error"]["permanent"] is True
        assert "url" not in ev["data"]
    dumped = [json.dumps(ev) for ev in evs]
    dead = [r for r in dead_letters(env) if json.loads(r["payload"])["id"] in
            {j["id"] for j in attack}]
    assert len(dead) == 2
    for r in dead:
        assert "endpoint_tenant_mismatch" in headers_of(r)["nudgel-dlq-reason"]
        dumped.append(json.dumps(headers_of(r)))
    log = env["worker"].text()
    for text in dumped + [log]:
        assert "b-private-hook" not in text and secret_path_b not in text
    assert "endpoint_tenant_mismatch" in log  # the refusal is logged, without B's URL
    rows = h.psql(dsn, "SELECT count(*) FROM nudgel.webhook_deliveries WHERE delivery_id IN "
                       f"('{attack[0]['id']}', '{attack[1]['id']}')")
    assert rows.strip() == "0"


# --- deduplicated ------------------------------------------------------------------------------

def test_new_job_for_a_delivered_event_is_deduplicated(env):
    run, sink, dsn = env["run"], env["sink"], env["dsn"]
    tenant = f"wq{run}"
    path = f"/dedupe{run}"
    ep, secret = h.add_endpoint(dsn, tenant, sink.url(path))
    sink.configure(path, secrets=[secret])
    first = job(tenant, ep, f"evt_{run}_once", 1)
    h.enqueue(binary, env["ns"], [first])
    assert [e["type"] for e in events_for(env, first["id"])] == ["ai.nudgel.webhook.delivered"]
    # A new job (new id) for the same event and endpoint, after the first was delivered.
    again = dict(first, id=str(uuid.uuid4()))
    # Two new jobs for another event at once: one delivers, the other is deduplicated (by the
    # job in flight or by its row, whichever the timing gives).
    twin_a = job(tenant, ep, f"evt_{run}_twin", 2)
    twin_b = dict(twin_a, id=str(uuid.uuid4()))
    h.enqueue(binary, env["ns"], [again, twin_a, twin_b])
    dedup = events_for(env, again["id"])
    assert [e["type"] for e in dedup] == ["ai.nudgel.webhook.deduplicated"]
    data = dedup[0]["data"]
    assert data["status"] == "deduplicated"
    assert data["duplicate_of"] == first["id"]
    assert data["event_id"] == first["event_id"] and data["endpoint_id"] == ep
    twins = {j["id"]: [e["type"] for e in events_for(env, j["id"])] for j in (twin_a, twin_b)}
    assert sorted(t for ts in twins.values() for t in ts) == [
        "ai.nudgel.webhook.deduplicated", "ai.nudgel.webhook.delivered"], twins
    h.wait_settled([env["worker"]], 60)

    lg = sink.path_ledger(path)
    assert {k: v["count"] for k, v in lg["ids"].items()} == {first["event_id"]: 1,
                                                             twin_a["event_id"]: 1}
    rows = h.psql(dsn, "SELECT delivery_id, duplicate_of, event_id FROM "
                       f"nudgel.webhook_duplicates WHERE tenant_id = '{tenant}' ORDER BY 3")
    got = [r.split("|") for r in rows.split()]
    loser = next(i for i, ts in twins.items() if ts == ["ai.nudgel.webhook.deduplicated"])
    winner = next(i for i in twins if i != loser)
    assert got == [[again["id"], first["id"], first["event_id"]],
                   [loser, winner, twin_a["event_id"]]]
    # Never a delivery row of its own: the (endpoint, event) pair is the first delivery's.
    n = h.psql(dsn, "SELECT count(*) FROM nudgel.webhook_deliveries WHERE delivery_id IN "
                    f"('{again['id']}', '{loser}')")
    assert n.strip() == "0"


# --- fleet metrics (issue 12) -------------------------------------------------------------------

def test_fleet_metrics_count_a_delivery_and_a_refusal(env):
    """A delivered job counts in nudgel_jobs_succeeded_total and its event time to delivery in
    nudgel_webhooks_end_to_end_seconds; a refused one in nudgel_jobs_failed_total and
    nudgel_dead_letters_total under the same reason; the series exist before either."""
    run, sink, dsn, worker = env["run"], env["sink"], env["dsn"], env["worker"]
    before = h.wait_until(worker.metrics, 30, "the deliverer's /metrics", worker)
    ok, mismatch = ('nudgel_jobs_succeeded_total',
                    'nudgel_jobs_failed_total{reason="endpoint_tenant_mismatch"}')
    dead = 'nudgel_dead_letters_total{reason="endpoint_tenant_mismatch"}'
    e2e_count, e2e_30s = ("nudgel_webhooks_end_to_end_seconds_count",
                          'nudgel_webhooks_end_to_end_seconds_bucket{le="30"}')
    for key in (ok, mismatch, dead, e2e_count, e2e_30s,
                'nudgel_webhooks_attempt_seconds_count{outcome="delivered"}',
                'nudgel_webhooks_outcomes_total{outcome="refused"}'):
        assert key in before, key
    ta, tb = f"wma{run}", f"wmb{run}"
    (ep_a, sec_a), (ep_b, _) = h.add_endpoints(dsn, [
        dict(tenant=ta, url=sink.url(f"/mx{run}/a")), dict(tenant=tb, url=sink.url(f"/mx{run}/b"))])
    sink.configure(f"/mx{run}/a", secrets=[sec_a])
    good, refused = job(ta, ep_a, f"evt_{run}_mx", 1), job(ta, ep_b, f"evt_{run}_mx2", 2)
    good["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    h.enqueue(binary, env["ns"], [good, refused])
    assert [e["type"] for e in events_for(env, good["id"])] == ["ai.nudgel.webhook.delivered"]
    assert [e["type"] for e in events_for(env, refused["id"])] == ["ai.nudgel.webhook.failed"]
    after = worker.metrics()
    assert after[ok] - before[ok] == 1
    assert after[e2e_count] - before[e2e_count] == 1
    assert after[e2e_30s] - before[e2e_30s] == 1  # created just now: delivered within 30 s
    assert after[mismatch] - before[mismatch] == 1
    assert after[dead] - before[dead] == 1
