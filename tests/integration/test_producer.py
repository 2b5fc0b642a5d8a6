"""libnudgel and nudgel-enqueue against the real broker.

Reads back with kcat (an independent consumer), checks partitioning against
Kafka's Java partitioner, headers, ordering per tenant, and validates every
produced value against schemas/ with Python's jsonschema (an independent
validator).
"""
import json
import os
import subprocess
import time
from collections import defaultdict

import pytest

from conftest import (binary, headers_of, java_partition, kcat_consume, load_schema, murmur2,
                      partition_count)

MESSAGES = "nudgel.messages.v1"
WEBHOOKS = "nudgel.webhooks.v1"


def enqueue(args, input_text, bootstrap, timeout=300, env_extra=None):
    env = dict(os.environ, NUDGEL_KAFKA_BOOTSTRAP=bootstrap)
    env.update(env_extra or {})
    return subprocess.run([binary("nudgel-enqueue"), "--json", "--quiet", *args],
                          input=input_text, capture_output=True, text=True, timeout=timeout,
                          env=env)


def test_python_murmur2_matches_java_vectors():
    # org.apache.kafka.common.utils.UtilsTest#testMurmur2
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert murmur2(b"abc") == 479470107


def test_ten_thousand_jobs_fifty_tenants(bootstrap, topics_ready, run_id, tmp_path):
    tenants = [f"t{run_id}-{n:02d}" for n in range(50)]
    prefixes = {"KE": ["0722", "0733", "0110"], "NG": ["0803", "0805", "0909"],
                "UG": ["0772", "0701", "0756"]}
    lines, expected = [], {}
    for i in range(10_000):
        tenant = tenants[i % 50]
        seq = i // 50
        country = ["KE", "NG", "UG"][i % 3]
        prefix = prefixes[country][i % 3]
        digits = 7 if country == "NG" else 6
        national = f"{prefix}{i % 10**digits:0{digits}d}"
        key = f"{run_id}-{i}"
        job = {"tenant_id": tenant, "channel": "sms", "to": national, "country": country,
               "idempotency_key": key, "metadata": {"seq": seq}}
        if i % 2:
            job["body"] = f"Habari {i}, your code is {i % 10000:04d}"
        else:
            job["template"] = "order-confirmation"
            job["variables"] = {"name": "Ada", "order_id": f"AC-{i}"}
        lines.append(json.dumps(job))
        expected[key] = (tenant, seq)
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")

    run = enqueue(["--topic", "messages", str(path)], None, bootstrap)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["sent"] == 10_000 and summary["acknowledged"] == 10_000
    assert summary["rejected"] == 0 and summary["failed"] == 0

    partitions = partition_count(bootstrap, MESSAGES)
    validator = load_schema("message.job.v1.schema.json")
    seen = {}
    by_tenant = defaultdict(list)
    for rec in kcat_consume(bootstrap, MESSAGES):
        if not (rec.get("key") or "").startswith(f"t{run_id}-"):
            continue
        value = json.loads(rec["payload"])
        errors = sorted(validator.iter_errors(value), key=str)
        assert not errors, f"offset {rec['offset']}: {errors[0].message}"
        hdr = headers_of(rec)
        assert hdr.get("nudgel-schema") == "message.job/v1"
        assert hdr.get("nudgel-tenant") == value["tenant_id"] == rec["key"]
        assert hdr.get("idempotency-key") == value["idempotency_key"]
        assert hdr.get("content-type") == "application/json"
        assert value["to"].startswith("+2")
        assert value["id"][14] == "7"  # UUIDv7 assigned by the producer
        seen[value["idempotency_key"]] = value
        by_tenant[rec["key"]].append((rec["partition"], rec["offset"], value["metadata"]["seq"]))

    assert set(seen) == set(expected), f"missing {len(set(expected) - set(seen))} jobs"
    assert len({v["id"] for v in seen.values()}) == 10_000
    for tenant, recs in by_tenant.items():
        parts = {p for p, _, _ in recs}
        assert len(parts) == 1, f"{tenant} spread over partitions {parts}"
        assert parts.pop() == java_partition(tenant, partitions)
        seqs = [s for _, _, s in sorted(recs, key=lambda r: r[1])]
        assert seqs == sorted(seqs) and len(seqs) == 200, f"{tenant} out of order"


def test_bad_lines_rejected_with_line_numbers(bootstrap, topics_ready, run_id):
    tenant = f"bad{run_id}"
    good = lambda n: json.dumps({"tenant_id": tenant, "channel": "sms", "to": "+254722000000",
                                 "body": f"good {n}", "idempotency_key": f"{run_id}-good-{n}"})
    lines = [
        good(1),
        '{"tenant_id": "x", "channel": "sms", "to": ',                          # 2 malformed
        json.dumps({"channel": "sms", "to": "+254722000000", "body": "x"}),     # 3 no tenant
        json.dumps({"tenant_id": tenant, "channel": "sms", "to": "+25472200", "body": "x"}),  # 4
        good(2),
        json.dumps({"tenant_id": tenant, "channel": "sms", "to": "+254722000000",
                    "body": "x", "metadata": {"pad": "a" * 70_000}}),           # 6 oversize
        "",                                                                     # 7 blank: skipped
        json.dumps({"tenant_id": tenant, "channel": "sms", "to": "+254722000000",
                    "body": "x", "template": "otp"}),                           # 8 body+template
        good(3),
    ]
    run = enqueue(["--topic", "messages"], "\n".join(lines) + "\n", bootstrap)
    assert run.returncode == 1, run.stderr
    summary = json.loads(run.stdout)
    assert summary["sent"] == 3 and summary["acknowledged"] == 3 and summary["rejected"] == 5
    problems = {(p["line"], p["field"]) for p in summary["problems"]}
    assert problems == {(2, "(json)"), (3, "tenant_id"), (4, "to"), (6, "(job)"), (8, "body")}
    assert "line 4 rejected: to:" in run.stderr
    sent = [json.loads(r["payload"]) for r in kcat_consume(bootstrap, MESSAGES)
            if r.get("key") == tenant]
    assert sorted(v["body"] for v in sent) == ["good 1", "good 2", "good 3"]


def test_strict_stops_at_first_bad_line(bootstrap, topics_ready, run_id):
    tenant = f"strict{run_id}"
    job = lambda body: json.dumps({"tenant_id": tenant, "channel": "sms",
                                   "to": "+2348031234567", "body": body})
    text = "\n".join([job("one"), "{not json", job("after")]) + "\n"
    run = enqueue(["--topic", "messages", "--strict"], text, bootstrap)
    assert run.returncode == 1
    summary = json.loads(run.stdout)
    assert summary["sent"] == 1 and summary["rejected"] == 1
    assert "stopping at line 2" in run.stderr
    bodies = [json.loads(r["payload"])["body"] for r in kcat_consume(bootstrap, MESSAGES)
              if r.get("key") == tenant]
    assert bodies == ["one"]


def test_webhook_jobs_validate_and_carry_headers(bootstrap, topics_ready, run_id):
    tenant = f"wh{run_id}"
    lines = [json.dumps({"tenant_id": tenant, "url": "https://hooks.example.com/nudgel",
                         "event_type": "message.delivered", "event_id": f"evt_{run_id}_{n}",
                         "payload": {"n": n}}) for n in range(20)]
    run = enqueue(["--topic", "webhooks"], "\n".join(lines) + "\n", bootstrap,
                  env_extra={"NUDGEL_LOG_LEVEL": "warn"})
    assert run.returncode == 0, run.stderr
    validator = load_schema("webhook.job.v1.schema.json")
    recs = [r for r in kcat_consume(bootstrap, WEBHOOKS) if r.get("key") == tenant]
    assert len(recs) == 20
    for rec in recs:
        value = json.loads(rec["payload"])
        assert not list(validator.iter_errors(value))
        assert headers_of(rec)["nudgel-schema"] == "webhook.job/v1"


def test_kafka_down_fails_fast_and_clearly(topics_ready):
    start = time.monotonic()
    run = enqueue(["--topic", "messages", "--set", "enqueue.connect_timeout_ms=3000"],
                  '{"tenant_id":"a","channel":"sms","to":"+254722000000","body":"x"}\n',
                  "127.0.0.1:1", timeout=60)
    assert run.returncode == 3
    assert "cannot reach Kafka at 127.0.0.1:1" in run.stderr
    assert time.monotonic() - start < 30


def test_bad_config_names_the_key(bootstrap, tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text('{"producer": {"message_timeout_ms": 5}}')
    run = enqueue(["--topic", "messages", "--config", str(cfg)], "", bootstrap)
    assert run.returncode == 2
    assert "producer.message_timeout_ms: 5 is out of range" in run.stderr


def test_print_config_never_shows_secrets(bootstrap):
    secret = "s3cr3t-pw-9731"
    run = subprocess.run([binary("nudgel-enqueue"), "--print-config"], capture_output=True,
                         text=True, timeout=30,
                         env=dict(os.environ, NUDGEL_PG_DSN=f"postgresql://u:{secret}@h/db"))
    assert run.returncode == 0
    assert secret not in run.stdout + run.stderr
    assert "pg.dsn = [redacted]  # env" in run.stdout


def test_example_program_sync_and_async(bootstrap, topics_ready):
    run = subprocess.run([binary("nudgel-example-send"), bootstrap], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sync: job " in run.stdout and "async: job " in run.stdout
    assert "refused (permanent): to:" in run.stdout
