"""nudgel-admin dlq replay against the real broker: filters by tenant, reason and
time, dry runs, and replayed jobs return to their job topic with their own
headers but without the dead-letter and retry ones."""
import json
import subprocess

import pytest

from conftest import binary, headers_of, kcat_consume


def admin(*args, timeout=120):
    return subprocess.run([binary("nudgel-admin"), *args], capture_output=True, text=True,
                          timeout=timeout)


def dead_letter(bootstrap, topic, tenant, reason, body):
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-k", tenant,
                    "-H", f"nudgel-tenant={tenant}", "-H", "nudgel-schema=message.job/v1",
                    "-H", f"nudgel-dlq-reason={reason}", "-H", "nudgel-attempt=4",
                    "-H", "nudgel-origin=nudgel.messages.v1/0/42"],
                   input=body, text=True, check=True, timeout=30)


def test_replay_filters_and_strips_dead_letter_headers(bootstrap, topics_ready, run_id):
    ns = f"dq{run_id}."
    assert admin("--set", f"topics.namespace={ns}", "--set", "topics.partitions=3",
                 "topics", "ensure").returncode == 0
    dlq = f"{ns}nudgel.messages.dlq.v1"
    for i in range(6):
        dead_letter(bootstrap, dlq, "acme" if i % 2 else "globex",
                    "retries exhausted" if i < 4 else "expired before it could be sent",
                    json.dumps({"n": i}))
    common = ["--set", f"topics.namespace={ns}", "dlq", "replay", "--topic", "messages"]

    dry = admin(*common, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "6 scanned, 6 matched, 6 would be replayed" in dry.stdout
    assert kcat_consume(bootstrap, f"{ns}nudgel.messages.v1") == []

    none = admin(*common, "--dry-run", "--since", "2999-01-01T00:00:00Z")
    assert "0 matched" in none.stdout

    run = admin(*common, "--tenant", "acme", "--reason", "exhausted")
    assert run.returncode == 0, run.stderr
    assert "6 scanned, 2 matched, 2 replayed" in run.stdout
    back = kcat_consume(bootstrap, f"{ns}nudgel.messages.v1")
    assert sorted(json.loads(r["payload"])["n"] for r in back) == [1, 3]
    for rec in back:
        hdr = headers_of(rec)
        assert rec["key"] == "acme" and hdr["nudgel-tenant"] == "acme"
        assert hdr["nudgel-schema"] == "message.job/v1"
        assert "nudgel-dlq-reason" not in hdr and "nudgel-attempt" not in hdr
        assert hdr["nudgel-replay-of"].startswith(f"{dlq}/")

    bad = admin("--set", f"topics.namespace={ns}", "dlq", "replay")
    assert bad.returncode == 2 and "--topic" in bad.stderr
