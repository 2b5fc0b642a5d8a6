"""The shared publisher (workers/runtime/src/publisher.c) against the real broker.

nudgel-test-publisher consumes jobs enqueued by nudgel-enqueue and publishes
status events, retry hops and dead letters, storing a job's offset only after
its publishes are acknowledged. Events are validated with Python's
jsonschema against schemas/status.event.v1.schema.json.
"""
import json
import os
import subprocess

import pytest

from conftest import binary, headers_of, kcat_consume, load_schema


@pytest.fixture
def ns(bootstrap, run_id):
    ns = f"pt{run_id}."
    run = subprocess.run([binary("nudgel-admin"), "--set", f"topics.namespace={ns}",
                          "--set", "topics.partitions=3", "topics", "ensure"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return ns


def test_events_retries_and_dead_letters(bootstrap, topics_ready, ns, run_id):
    jobs = []
    for i in range(300):
        job = {"tenant_id": f"pub-{i % 7}", "channel": "sms", "to": "+254722000000",
               "body": f"hello {i}", "idempotency_key": f"{run_id}-{i}", "metadata": {"n": i}}
        if i % 10 == 3:
            job["metadata"]["route"] = "retry"
        elif i % 10 == 7:
            job["metadata"]["route"] = "dlq"
        jobs.append(json.dumps(job))
    enq = subprocess.run([binary("nudgel-enqueue"), "--quiet", "--json", "--topic", "messages",
                          "--set", f"producer.messages_topic={ns}nudgel.messages.v1"],
                         input="\n".join(jobs) + "\n", capture_output=True, text=True,
                         timeout=120)
    assert enq.returncode == 0, enq.stderr
    # A malformed job written straight to the topic, as a non-library producer might.
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", f"{ns}nudgel.messages.v1", "-k", "pub-x",
                    "-H", "nudgel-schema=message.job/v1"], input='{"tenant_id": "pub-x"}',
                   text=True, check=True, timeout=30)

    def publish(group):
        run = subprocess.run(
            [binary("nudgel-test-publisher"), "--jobs", f"{ns}nudgel.messages.v1",
             "--status", f"{ns}nudgel.delivery-status.v1",
             "--retry", f"{ns}nudgel.messages.retry.5s", "--dlq", f"{ns}nudgel.messages.dlq.v1",
             "--group", group, "--idle-ms", "3000", "--set", "log.level=warn"],
            capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout.strip().splitlines()[-1])

    assert publish(f"p1-{run_id}") == {"acked": 301, "failed": 0}
    # Offsets were stored after the acks: the same group finds nothing left.
    assert publish(f"p1-{run_id}") == {"acked": 0, "failed": 0}

    validator = load_schema("status.event.v1.schema.json")
    events = kcat_consume(bootstrap, f"{ns}nudgel.delivery-status.v1")
    assert len(events) == 300
    for rec in events:
        event = json.loads(rec["payload"])
        errors = list(validator.iter_errors(event))
        assert not errors, errors[0].message
        hdr = headers_of(rec)
        assert hdr["nudgel-schema"] == "status.event/v1"
        assert hdr["nudgel-tenant"] == event["tenantid"] == rec["key"]
    first_ids = sorted(json.loads(r["payload"])["id"] for r in events)
    assert len(set(first_ids)) == 300

    retries = kcat_consume(bootstrap, f"{ns}nudgel.messages.retry.5s")
    assert len(retries) == 30
    for rec in retries:
        hdr = headers_of(rec)
        assert hdr["nudgel-attempt"] == "1"
        assert hdr["nudgel-last-error"] == "HTTP 503 from gateway"
        assert int(hdr["nudgel-not-before"]) - int(hdr["nudgel-first-seen"]) == 5000
        assert hdr["nudgel-schema"] == "message.job/v1"  # the job's own headers travel along
        assert json.loads(rec["payload"])["metadata"]["route"] == "retry"

    dead = kcat_consume(bootstrap, f"{ns}nudgel.messages.dlq.v1")
    assert len(dead) == 31
    reasons = [headers_of(r)["nudgel-dlq-reason"] for r in dead]
    assert reasons.count("routed to the DLQ by the test") == 30
    malformed = [r for r in dead if r["key"] == "pub-x"]
    assert len(malformed) == 1
    assert headers_of(malformed[0])["nudgel-dlq-reason"].startswith("id: is required")
    assert malformed[0]["payload"] == '{"tenant_id": "pub-x"}'  # the original bytes
    origin = headers_of(malformed[0])["nudgel-origin"]
    assert origin.startswith(f"{ns}nudgel.messages.v1/")

    # Deterministic ids: a second pass over the same jobs yields the same event ids.
    publish(f"p2-{run_id}")
    events = kcat_consume(bootstrap, f"{ns}nudgel.delivery-status.v1")
    assert len(events) == 600
    assert sorted(json.loads(r["payload"])["id"] for r in events) == sorted(first_ids * 2)
