"""No input can stop a worker: dead letters too large for their topic (issue 10, item 13).

- A ~1 MB webhook job (the broker takes it: it is produced with a larger
  message.max.bytes than the workers' producers allow) is malformed for the
  deliverer, whose dead letter could not carry it whole: the deliverer exited 1 on
  every start. Now the dead letter carries a prefix of the original and the headers
  nudgel-dlq-reason, nudgel-origin and nudgel-dlq-truncated (the original size); the
  deliverer keeps running and delivers the good jobs behind it.
- The dispatcher: a ~1 MB status event was retried every 2 s forever (its dead letter
  refused for its size) with its partition stuck, and an event whose webhook job
  would be over the 100 KB job cap was dropped silently. Both now end as dead letters
  with a reason, and the events behind them are dispatched.
"""
import json
import subprocess
import sys

from conftest import SOURCE_DIR, binary, headers_of
from messages_harness import consume
from test_webhooks_dispatch import TRACEPARENT, status_event

sys.path.insert(0, str(SOURCE_DIR / "tests" / "webhook-sink"))
import harness as h  # noqa: E402

BIG = 1_040_000  # under the topic's max.message.bytes (1048588), over message.max.bytes (1e6)


def produce_big(bootstrap, topic, key, value: bytes, headers, path):
    path.write_bytes(value)
    args = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-k", key, "-X", "acks=all",
            "-X", "message.max.bytes=2000000"]
    for name, val in headers:
        args += ["-H", f"{name}={val}"]
    subprocess.run(args + [str(path)], check=True, capture_output=True, timeout=60)


def test_a_1mb_webhook_job_is_a_truncated_dead_letter(bootstrap, pg_dsn, topics_ready, run_id,
                                                      tmp_path):
    ns, tenant = f"pz{run_id}.", f"pz{run_id}"
    h.make_topics(binary, ns, partitions=1)
    sink = h.Sink()
    eid, secret = h.add_endpoint(pg_dsn, tenant, sink.url("/ok"))
    sink.configure("/ok", secrets=[secret])
    job = h.webhook_job(tenant, eid, 0, run_id, data={"blob": "x" * BIG})
    value = json.dumps(job).encode()
    assert BIG < len(value) < 1_048_000
    produce_big(bootstrap, f"{ns}nudgel.webhooks.v1", tenant, value,
                [("nudgel-schema", "webhook.job/v1"), ("nudgel-tenant", tenant)],
                tmp_path / "big.json")
    deliverer = h.start_deliverer(binary, ns)
    try:
        dlq = f"{ns}nudgel.webhooks.dlq.v1"
        records = h.wait_until(lambda: consume(bootstrap, dlq, timeout=60), 60,
                               "the dead letter", deliverer)
        assert len(records) == 1
        hdr = headers_of(records[0])
        assert hdr["nudgel-dlq-truncated"] == str(len(value))
        assert hdr["nudgel-origin"] == f"{ns}nudgel.webhooks.v1/0/0"
        assert hdr["nudgel-dlq-reason"]
        prefix = records[0]["payload"].encode("utf-8", "surrogateescape")
        assert 0 < len(prefix) < len(value) and value.startswith(prefix)
        # Still running, and the good jobs behind it go out.
        h.enqueue(binary, ns, [h.webhook_job(tenant, eid, i, run_id) for i in range(1, 4)])
        h.wait_until(lambda: h.final_count(pg_dsn, tenant) >= 3, 60, "3 deliveries", deliverer)
        assert sink.path_ledger("/ok")["unique_ids"] == 3
        # dlq replay never sends a prefix back as a job: it counts it and moves on.
        jobs_before = len(consume(bootstrap, f"{ns}nudgel.webhooks.v1", timeout=60))
        replay = subprocess.run([binary("nudgel-admin"), "--set", f"topics.namespace={ns}", "dlq",
                                 "replay", "--topic", "webhooks"], capture_output=True, text=True,
                                timeout=120)
        assert replay.returncode == 0, replay.stderr
        assert "0 replayed" in replay.stdout and "1 not replayable (truncated" in replay.stdout, \
            replay.stdout
        assert len(consume(bootstrap, f"{ns}nudgel.webhooks.v1", timeout=60)) == jobs_before
    finally:
        code = deliverer.terminate()
        sink.stop()
    assert code == 0, deliverer.text()[-3000:]


def test_dispatcher_dead_letters_oversized_events(bootstrap, pg_dsn, topics_ready, run_id,
                                                   tmp_path):
    ns, tenant = f"pd{run_id}.", f"pd{run_id}"
    h.make_topics(binary, ns, partitions=1)
    eid, _ = h.add_endpoint(pg_dsn, tenant, "http://127.0.0.1:9/never")
    status_topic = f"{ns}nudgel.delivery-status.v1"
    big = status_event(tenant, 0)
    big["data"]["metadata"] = {"blob": "y" * BIG}
    over_cap = status_event(tenant, 1)
    over_cap["data"]["metadata"] = {"blob": "z" * 150_000}  # a job over the 100 KB cap
    good = status_event(tenant, 2)
    headers = [("nudgel-schema", "status.event/v1"), ("traceparent", TRACEPARENT)]
    for n, ev in enumerate((big, over_cap, good)):
        produce_big(bootstrap, status_topic, tenant, json.dumps(ev).encode(), headers,
                    tmp_path / f"ev{n}.json")
    dispatcher = h.start_dispatcher(binary, ns)
    try:
        jobs_topic = f"{ns}nudgel.webhooks.v1"
        jobs = h.wait_until(lambda: consume(bootstrap, jobs_topic, timeout=60), 60,
                            "the good event's job", dispatcher)
        assert len(jobs) == 1 and json.loads(jobs[0]["payload"])["endpoint_id"] == eid
        dlq = f"{ns}nudgel.webhooks.dlq.v1"
        records = h.wait_until(lambda: len(consume(bootstrap, dlq, timeout=60)) >= 2 and
                               consume(bootstrap, dlq, timeout=60), 60, "two dead letters",
                               dispatcher)
        assert len(records) == 2
        first, second = (headers_of(r) for r in records)
        assert first["nudgel-origin"] == f"{status_topic}/0/0"
        assert int(first["nudgel-dlq-truncated"]) > BIG
        assert second["nudgel-origin"] == f"{status_topic}/0/1"
        assert "refused" in second["nudgel-dlq-reason"]
        assert "nudgel-dlq-truncated" not in second
        assert json.loads(records[1]["payload"])["id"] == over_cap["id"]
        h.wait_settled([dispatcher], 60)
    finally:
        code = dispatcher.terminate()
    assert code == 0, dispatcher.text()[-3000:]
