"""nudgel-webhooks end to end: real Kafka, real Postgres, the Node sink.

One deliverer (retry ladder shortened to 300 ms steps by configuration, the
SSRF allow-list opened for 127.0.0.0/8 because the sink is on loopback) serves
the tests of this module from one isolated set of topics; each test uses its
own tenant. The sink verifies every request with the official
`standardwebhooks` npm package.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SOURCE_DIR, binary, headers_of, kcat_consume, load_schema

sys.path.insert(0, str(SOURCE_DIR / "tests" / "webhook-sink"))
import harness as h  # noqa: E402

SCHEDULE = "300ms,300ms,300ms"  # 4 attempts in all
ENDPOINT_CACHE_MS = 1000  # webhooks.endpoint_cache_ms: how long a cached endpoint row is trusted


@pytest.fixture(scope="module")
def env(bootstrap, pg_dsn, topics_ready):
    run = h.uuid.uuid4().hex[:8]
    ns = f"wd{run}."
    h.make_topics(binary, ns)
    sink = h.Sink()
    worker = h.start_deliverer(binary, ns, f"webhooks.retry_schedule={SCHEDULE}",
                               "webhooks.retry_jitter_percent=0",
                               f"webhooks.endpoint_cache_ms={ENDPOINT_CACHE_MS}")
    yield {"ns": ns, "sink": sink, "worker": worker, "run": run, "dsn": pg_dsn,
           "bootstrap": bootstrap}
    code = worker.terminate()
    sink.stop()
    assert code == 0, worker.text()[-3000:]


def events_of(env, tenant, at_least=1):
    """The tenant's status events (each validated); waits until @at_least are there."""
    def enough():
        evs = _events(env, tenant)
        return evs if len(evs) >= at_least else None
    return h.wait_until(enough, 30, f"{at_least} events of {tenant}", env["worker"])


def _events(env, tenant):
    validator = load_schema("status.event.v1.schema.json")
    out = []
    for rec in kcat_consume(env["bootstrap"], f"{env['ns']}nudgel.delivery-status.v1"):
        ev = json.loads(rec["payload"])
        if ev.get("tenantid") != tenant:
            continue
        errors = list(validator.iter_errors(ev))
        assert not errors, f"{errors[0].message} in {ev}"
        out.append(ev)
    return out


def attempts_of(dsn, tenant):
    rows = h.psql(dsn, "SELECT d.event_id, a.attempt, coalesce(a.status_code, 0), "
                       "coalesce(a.error_class, ''), coalesce(a.error_message, '') FROM "
                       "nudgel.webhook_attempts a JOIN nudgel.webhook_deliveries d USING "
                       f"(delivery_id) WHERE d.tenant_id = '{tenant}' ORDER BY 1, 2")
    return [r.split("|") for r in rows.splitlines()]


def wait_final(env, tenant, n, timeout=120):
    h.wait_until(lambda: h.final_count(env["dsn"], tenant) >= n, timeout,
                 f"{n} final deliveries of {tenant}", env["worker"])


def test_node_verifies_10000_deliveries(env):
    """10 000 deliveries over 20 endpoints, each verified by the standardwebhooks package."""
    tenant = f"wv{env['run']}"
    sink, n, endpoints = env["sink"], 10000, 20
    eps = h.add_endpoints(env["dsn"], [dict(tenant=tenant, url=sink.url(f"/v{env['run']}/{i}"))
                                       for i in range(endpoints)])
    for i, (eid, secret) in enumerate(eps):
        sink.configure(f"/v{env['run']}/{i}", secrets=[secret])
    jobs = [h.webhook_job(tenant, eps[i % endpoints][0], i, env["run"],
                          data={"n": i, "text": "Habari ✓ — ẹ ku aarọ"}) for i in range(n)]
    started = time.monotonic()
    h.enqueue(binary, env["ns"], jobs)
    wait_final(env, tenant, n, timeout=300)
    took = time.monotonic() - started
    ledgers = [sink.path_ledger(f"/v{env['run']}/{i}", summary=True) for i in range(endpoints)]
    verified = sum(lg["verified"] for lg in ledgers)
    failures = sum(lg["failures"] for lg in ledgers)
    unique = sum(lg["unique_ids"] for lg in ledgers)
    dupes = sum(lg["duplicates"] for lg in ledgers)
    print(f"\n{n} deliveries in {took:.1f} s: verified {verified}, verification failures "
          f"{failures}, unique webhook-ids {unique}, duplicates {dupes}")
    assert failures == 0
    assert unique == n
    assert verified >= n
    statuses = h.psql(env["dsn"], "SELECT status, attempts, count(*) FROM "
                                  f"nudgel.webhook_deliveries WHERE tenant_id = '{tenant}' "
                                  "GROUP BY 1, 2")
    assert statuses.strip() == f"delivered|1|{n}"
    rows = int(h.psql(env["dsn"], "SELECT count(*) FROM nudgel.webhook_attempts a JOIN "
                                  "nudgel.webhook_deliveries d USING (delivery_id) WHERE "
                                  f"d.tenant_id = '{tenant}' AND a.status_code = 200"))
    assert rows == n
    types = {}
    for ev in events_of(env, tenant, at_least=n):
        types[ev["type"]] = types.get(ev["type"], 0) + 1
    assert types == {"ai.nudgel.webhook.delivered": n}


def test_500_twice_then_delivered_on_attempt_3(env):
    tenant, sink = f"w5{env['run']}", env["sink"]
    eid, secret = h.add_endpoint(env["dsn"], tenant, sink.url(f"/five{env['run']}"))
    sink.configure(f"/five{env['run']}", secrets=[secret], statuses=[500, 500],
                   body='{"error":"try later"}')
    h.enqueue(binary, env["ns"], [h.webhook_job(tenant, eid, 1, env["run"])])
    wait_final(env, tenant, 1)
    rows = attempts_of(env["dsn"], tenant)
    assert [(r[1], r[2], r[3]) for r in rows] == [("1", "500", "http_5xx"),
                                                   ("2", "500", "http_5xx"), ("3", "200", "")]
    snippet = h.psql(env["dsn"], "SELECT response_snippet FROM nudgel.webhook_attempts a JOIN "
                                 "nudgel.webhook_deliveries d USING (delivery_id) WHERE "
                                 f"d.tenant_id = '{tenant}' AND a.attempt = 1").strip()
    assert snippet == '{"error":"try later"}'
    assert h.psql(env["dsn"], "SELECT status, attempts, last_status_code FROM "
                              "nudgel.webhook_deliveries WHERE "
                              f"tenant_id = '{tenant}'").strip() == "delivered|3|200"
    ledger = sink.path_ledger(f"/five{env['run']}")
    assert ledger["failures"] == 0
    assert list(ledger["ids"].values())[0]["count"] == 3  # one webhook-id over 3 attempts
    evs = events_of(env, tenant)
    assert [(e["type"], e["data"]["attempt"], e["data"]["status_code"]) for e in evs] == \
        [("ai.nudgel.webhook.delivered", 3, 200)]


def test_410_disables_the_endpoint(env):
    tenant, sink, dsn = f"wg{env['run']}", env["sink"], env["dsn"]
    path = f"/gone{env['run']}"
    eid, secret = h.add_endpoint(dsn, tenant, sink.url(path))
    sink.configure(path, secrets=[secret], status=410)
    h.enqueue(binary, env["ns"], [h.webhook_job(tenant, eid, 1, env["run"])])
    wait_final(env, tenant, 1)
    enabled, reason = h.psql(dsn, "SELECT enabled, disabled_reason FROM "
                                  f"nudgel.webhook_endpoints WHERE endpoint_id = '{eid}'"
                             ).strip().split("|")
    assert enabled == "f" and "410" in reason
    # Later jobs for the disabled endpoint are never sent.
    h.enqueue(binary, env["ns"], [h.webhook_job(tenant, eid, i, env["run"]) for i in (2, 3)])
    wait_final(env, tenant, 3)
    assert sink.path_ledger(path, summary=True)["requests"] == 1
    assert [(r[1], r[2], r[3]) for r in attempts_of(dsn, tenant)] == [("1", "410", "http_410")]
    statuses = h.psql(dsn, "SELECT event_id, status FROM nudgel.webhook_deliveries WHERE "
                           f"tenant_id = '{tenant}' ORDER BY 1")
    assert [s.split("|")[1] for s in statuses.splitlines()] == ["failed", "cancelled",
                                                                 "cancelled"]
    types = sorted(e["type"] for e in events_of(env, tenant, at_least=4))
    assert types == ["ai.nudgel.webhook.endpoint_disabled", "ai.nudgel.webhook.failed",
                     "ai.nudgel.webhook.failed", "ai.nudgel.webhook.failed"]
    disabled = [e for e in events_of(env, tenant)
                if e["type"] == "ai.nudgel.webhook.endpoint_disabled"][0]
    assert "410" in disabled["data"]["disabled_reason"]


def test_301_is_a_failure_and_never_followed(env):
    tenant, sink, dsn = f"wr{env['run']}", env["sink"], env["dsn"]
    path, target = f"/moved{env['run']}", f"/target{env['run']}"
    eid, secret = h.add_endpoint(dsn, tenant, sink.url(path))
    sink.configure(target, secrets=[secret])
    sink.configure(path, secrets=[secret], redirect=sink.url(target))
    h.enqueue(binary, env["ns"], [h.webhook_job(tenant, eid, 1, env["run"])])
    wait_final(env, tenant, 1)
    rows = attempts_of(dsn, tenant)
    assert [(r[2], r[3]) for r in rows] == [("301", "http_3xx")] * 4  # the whole ladder
    assert sink.path_ledger(path, summary=True)["requests"] == 4
    assert sink.path_ledger(target, summary=True)["requests"] == 0
    assert h.psql(dsn, "SELECT status FROM nudgel.webhook_deliveries WHERE "
                       f"tenant_id = '{tenant}'").strip() == "exhausted"
    assert [e["type"] for e in events_of(env, tenant)] == ["ai.nudgel.webhook.exhausted"]
    def dead_letters():
        return [r for r in kcat_consume(env["bootstrap"], f"{env['ns']}nudgel.webhooks.dlq.v1")
                if headers_of(r).get("nudgel-tenant") == tenant]
    # The row is final before the dead letter is acknowledged: wait for it.
    dead = h.wait_until(dead_letters, 30, "the dead letter", env["worker"])
    assert len(dead) == 1
    assert "exhausted" in headers_of(dead[0])["nudgel-dlq-reason"]


def test_slow_endpoint_does_not_delay_the_others(env):
    """An endpoint answering after 5 s; 50 others on the same tenant (one partition).

    All 51 on a receiver of their own, so the slow endpoint's requests are the
    first this deliverer sends to that host:port: nothing may wait behind them
    (neither the lanes nor the HTTP client's connection handling)."""
    tenant, dsn, run = f"ws{env['run']}", env["dsn"], env["run"]
    sink = h.Sink()
    try:
        _slow_endpoint_case(env, sink, tenant, dsn, run)
    finally:
        sink.stop()


def _slow_endpoint_case(env, sink, tenant, dsn, run):
    eps = h.add_endpoints(dsn, [dict(tenant=tenant, url=sink.url(f"/s{run}/{i}"))
                                for i in range(51)])
    sink.configure(f"/s{run}/0", secrets=[eps[0][1]], sleep_ms=5000)
    for i in range(1, 51):
        sink.configure(f"/s{run}/{i}", secrets=[eps[i][1]])
    # The slow endpoint's jobs first, so they sit at the head of the partition.
    jobs = [h.webhook_job(tenant, eps[0][0], k, run) for k in range(40)]
    jobs += [h.webhook_job(tenant, eps[1 + k % 50][0], 100 + k, run) for k in range(500)]
    h.enqueue(binary, env["ns"], jobs)
    wait_final(env, tenant, 540, timeout=120)
    slow = sink.path_ledger(f"/s{run}/0")
    others = [sink.path_ledger(f"/s{run}/{i}") for i in range(1, 51)]
    first_slow = min(r["first_ms"] for r in slow["ids"].values())
    last_other = max(lg["last_arrival_ms"] for lg in others)
    first_other = min(r["first_ms"] for lg in others for r in lg["ids"].values())
    print(f"\nothers: 500 delivered within {last_other - first_other} ms; the slow endpoint "
          f"answers its first request {5000} ms after {first_slow}")
    assert sum(lg["unique_ids"] for lg in others) == 500
    # Every other delivery completed before the slow endpoint answered even once.
    assert last_other < first_slow + 5000, (last_other - first_slow)
    # The slow endpoint got at most its concurrency at once: 16 by default.
    assert slow["unique_ids"] == 40


def test_rotation_signs_with_both_secrets(env):
    tenant, sink, dsn, run = f"wt{env['run']}", env["sink"], env["dsn"], env["run"]
    old, new = h.new_secret(), h.new_secret()
    eid, _ = h.add_endpoint(dsn, tenant, sink.url(f"/rot{run}"), secret=new,
                            previous_secret=old, previous_valid_s=3600)
    sink.configure(f"/rot{run}", secrets=[old, new])
    h.enqueue(binary, env["ns"], [h.webhook_job(tenant, eid, i, run) for i in range(5)])
    wait_final(env, tenant, 5)
    lg = sink.path_ledger(f"/rot{run}", summary=True)
    assert lg["max_signatures"] == 2
    assert lg["verified_by_secret"] == [5, 5]  # each secret alone verifies every request
    assert lg["failures"] == 0
    # After the overlap the old secret no longer signs, once the cached row is stale. A
    # row is read before the jobs that need it are sent, so it was read at the latest when
    # the last request arrived, and it is trusted for webhooks.endpoint_cache_ms. Staleness
    # is that configured time passing (nothing shows it): wait out what is left of it.
    h.psql(dsn, "UPDATE nudgel.webhook_endpoints SET previous_secret_expires_at = now() - "
                f"interval '1 second' WHERE endpoint_id = '{eid}'")
    stale_at = (lg["last_arrival_ms"] + ENDPOINT_CACHE_MS) / 1000 + 0.1
    time.sleep(max(0.0, stale_at - time.time()))
    h.enqueue(binary, env["ns"], [h.webhook_job(tenant, eid, i, run) for i in range(5, 8)])
    wait_final(env, tenant, 8)
    lg = sink.path_ledger(f"/rot{run}", summary=True)
    assert lg["verified_by_secret"] == [5, 8]
    assert lg["failures"] == 0


def test_429_waits_for_retry_after(env):
    tenant, sink, dsn, run = f"wq{env['run']}", env["sink"], env["dsn"], env["run"]
    eid, secret = h.add_endpoint(dsn, tenant, sink.url(f"/busy{run}"))
    sink.configure(f"/busy{run}", secrets=[secret], statuses=[429], retry_after=2)
    h.enqueue(binary, env["ns"], [h.webhook_job(tenant, eid, 1, run)])
    wait_final(env, tenant, 1)
    rows = attempts_of(dsn, tenant)
    assert [(r[1], r[2], r[3]) for r in rows] == [("1", "429", "http_429"), ("2", "200", "")]
    rec = list(sink.path_ledger(f"/busy{run}")["ids"].values())[0]
    # The schedule says 300 ms; Retry-After says 2 s, and wins.
    assert rec["last_ms"] - rec["first_ms"] >= 1900, rec


def test_429_retry_after_throttles_the_endpoint(env):
    """After a 429 with Retry-After the endpoint gets no new request before that time (Standard
    Webhooks: throttle); jobs for it wait in its lane, other endpoints are not held back."""
    tenant, sink, dsn, run = f"wh{env['run']}", env["sink"], env["dsn"], env["run"]
    busy, calm = f"/throttled{run}", f"/calm{run}"
    (busy_eid, busy_secret), (calm_eid, calm_secret) = h.add_endpoints(
        dsn, [dict(tenant=tenant, url=sink.url(busy)), dict(tenant=tenant, url=sink.url(calm))])
    sink.configure(busy, secrets=[busy_secret], statuses=[429], retry_after=3)
    sink.configure(calm, secrets=[calm_secret])
    h.enqueue(binary, env["ns"], [h.webhook_job(tenant, busy_eid, 0, run)])
    h.wait_until(lambda: sink.path_ledger(busy, summary=True)["requests"] >= 1, 30,
                 "the first 429", env["worker"])
    throttled_at = sink.path_ledger(busy)["ids"][f"evt_{run}_0"]["first_ms"]
    h.enqueue(binary, env["ns"], [h.webhook_job(tenant, busy_eid, i, run) for i in range(1, 11)]
              + [h.webhook_job(tenant, calm_eid, i, run) for i in range(11, 16)])
    wait_final(env, tenant, 16)
    firsts = {k: r["first_ms"] - throttled_at for k, r in sink.path_ledger(busy)["ids"].items()}
    assert len(firsts) == 11
    # Retry-After: 3 s from the 429; the sink's clock saw the request a little before the answer.
    assert all(ms >= 2900 for k, ms in firsts.items() if k != f"evt_{run}_0"), firsts
    calm_firsts = [r["first_ms"] - throttled_at for r in sink.path_ledger(calm)["ids"].values()]
    assert len(calm_firsts) == 5 and max(calm_firsts) < 2900, calm_firsts


def test_unknown_endpoint_is_dead_lettered_and_replayed_once_it_exists(env):
    """A job naming an endpoint id that does not exist ends cancelled and goes to the dead
    letter topic (reason endpoint_not_found); `nudgel-admin dlq replay` sends it once the
    endpoint exists, and its delivery row ends delivered."""
    tenant, sink, dsn, run = f"wn{env['run']}", env["sink"], env["dsn"], env["run"]
    path = f"/late{run}"
    eid, secret = h.add_endpoint(dsn, tenant, sink.url(path))
    sink.configure(path, secrets=[secret])
    hidden = str(h.uuid.uuid4())
    h.psql(dsn, f"UPDATE nudgel.webhook_endpoints SET endpoint_id = '{hidden}' WHERE "
                f"endpoint_id = '{eid}'")  # the job's endpoint does not exist (yet)
    job = h.webhook_job(tenant, eid, 1, run)
    h.enqueue(binary, env["ns"], [job])
    wait_final(env, tenant, 1)
    row = f"SELECT status FROM nudgel.webhook_deliveries WHERE delivery_id = '{job['id']}'"
    assert h.psql(dsn, row).strip() == "cancelled"
    assert events_of(env, tenant)[0]["data"]["error"]["code"] == "endpoint_not_found"

    def dead_letters():
        return [r for r in kcat_consume(env["bootstrap"], f"{env['ns']}nudgel.webhooks.dlq.v1")
                if headers_of(r).get("nudgel-tenant") == tenant]
    dead = h.wait_until(dead_letters, 30, "the dead letter", env["worker"])
    assert len(dead) == 1 and json.loads(dead[0]["payload"])["id"] == job["id"]
    reason = headers_of(dead[0])["nudgel-dlq-reason"]
    assert reason.startswith("endpoint_not_found: ") and eid in reason, reason
    assert sink.path_ledger(path, summary=True)["requests"] == 0

    h.psql(dsn, f"UPDATE nudgel.webhook_endpoints SET endpoint_id = '{eid}' WHERE "
                f"endpoint_id = '{hidden}'")  # the endpoint exists now
    time.sleep(ENDPOINT_CACHE_MS / 1000 + 0.2)  # the cached "not found" is stale
    replay = subprocess.run([binary("nudgel-admin"), "--set", f"topics.namespace={env['ns']}",
                             "dlq", "replay", "--topic", "webhooks", "--tenant", tenant,
                             "--reason", "endpoint_not_found"],
                            capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr
    assert "1 matched, 1 replayed" in replay.stdout, replay.stdout
    h.wait_until(lambda: h.psql(dsn, row).strip() == "delivered", 30, "the replayed delivery",
                 env["worker"])
    lg = sink.path_ledger(path, summary=True)
    assert (lg["requests"], lg["verified"]) == (1, 1), lg
    assert "ai.nudgel.webhook.delivered" in [e["type"] for e in events_of(env, tenant, 2)]


def test_a_job_again_after_its_end_sends_nothing_and_repeats_its_event(env):
    """A job that comes again once its delivery ended (a re-delivery after a crash): the
    claim reads the row's stored status (parsed into the deliverer's enum where the row is
    read), nothing is sent, and the same final event is published again from the row."""
    tenant, sink, dsn, run = f"wa{env['run']}", env["sink"], env["dsn"], env["run"]
    ok_path, bad_path = f"/again{run}", f"/refuses{run}"
    (ok_eid, ok_secret), (bad_eid, bad_secret), (off_eid, _) = h.add_endpoints(
        dsn, [dict(tenant=tenant, url=sink.url(ok_path)),
              dict(tenant=tenant, url=sink.url(bad_path)),
              dict(tenant=tenant, url=sink.url(f"/off{run}"))])
    h.psql(dsn, f"UPDATE nudgel.webhook_endpoints SET enabled = false WHERE endpoint_id = "
                f"'{off_eid}'")
    sink.configure(ok_path, secrets=[ok_secret])
    sink.configure(bad_path, secrets=[bad_secret], status=400)
    jobs = [h.webhook_job(tenant, ok_eid, 1, run), h.webhook_job(tenant, bad_eid, 2, run),
            h.webhook_job(tenant, off_eid, 3, run)]
    h.enqueue(binary, env["ns"], jobs)
    wait_final(env, tenant, 3)
    statuses = h.psql(dsn, "SELECT event_id, status FROM nudgel.webhook_deliveries WHERE "
                           f"tenant_id = '{tenant}' ORDER BY 1")
    assert [s.split("|")[1] for s in statuses.splitlines()] == ["delivered", "exhausted",
                                                                 "cancelled"]
    requests = {p: sink.path_ledger(p, summary=True)["requests"] for p in (ok_path, bad_path)}
    assert requests == {ok_path: 1, bad_path: 4}
    first = events_of(env, tenant, at_least=3)
    h.enqueue(binary, env["ns"], jobs)  # the same jobs, the same delivery ids
    evs = events_of(env, tenant, at_least=6)

    def seen(e):
        err = e["data"]["error"]
        return (e["type"], e["data"]["status"], e["data"]["attempt"], e["data"]["status_code"],
                err and (err["code"], err["message"]))
    by_event = {}
    for e in evs:
        by_event.setdefault(e["data"]["event_id"], []).append(seen(e))
    assert sorted(by_event[f"evt_{run}_{i}"][0] for i in (1, 2, 3)) == sorted(
        seen(e) for e in first)
    for i in (1, 2, 3):
        a, b = by_event[f"evt_{run}_{i}"]
        assert a == b, (i, a, b)
    assert by_event[f"evt_{run}_1"][0][:2] == ("ai.nudgel.webhook.delivered", "delivered")
    assert by_event[f"evt_{run}_2"][0] == ("ai.nudgel.webhook.exhausted", "exhausted", 4, 400,
                                           ("http_4xx", "HTTP 400"))
    assert by_event[f"evt_{run}_3"][0][:2] == ("ai.nudgel.webhook.failed", "cancelled")
    assert by_event[f"evt_{run}_3"][0][4][0] == "endpoint_disabled"
    assert {p: sink.path_ledger(p, summary=True)["requests"] for p in requests} == requests
