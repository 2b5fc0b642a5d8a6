"""nudgel-admin against the real Postgres and Kafka of the local stack.

Migrations run in throw-away databases of the stack's Postgres cluster (so a
test can start from nothing without touching the shared database), then once
in the stack's own database for the table checks. Topic tests only read or
make reversible changes: partitions are never added to the shared broker.
"""
import hashlib
import json
import os
import re
import socket
import subprocess
import time
import urllib.parse
import uuid

import pytest

from conftest import SOURCE_DIR, binary, partition_count

DESIGN_TABLES = {"message_receipts", "message_receipt_history", "message_templates",
                 "tenant_limits", "webhook_endpoints", "webhook_deliveries", "webhook_attempts",
                 "schema_migrations"}


def migration_files():
    files = sorted((SOURCE_DIR / "schemas" / "postgres").glob("*.sql"), key=lambda p: p.name)
    assert files, "no migrations under schemas/postgres"
    return files


def admin(args, env_extra=None, timeout=120):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([binary("nudgel-admin"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def psql(dsn, sql):
    return subprocess.run(["psql", dsn, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def dsn_for_database(dsn: str, dbname: str) -> str:
    """The same connection with another database (URI or key=value form)."""
    if dsn.startswith(("postgres://", "postgresql://")):
        parts = urllib.parse.urlsplit(dsn)
        return urllib.parse.urlunsplit(parts._replace(path="/" + dbname))
    return f"{dsn} dbname={dbname}"


@pytest.fixture
def fresh_dsn(pg_dsn):
    """An empty database of the stack's cluster, dropped afterwards."""
    name = f"nudgel_admin_test_{uuid.uuid4().hex[:10]}"
    psql(pg_dsn, f"CREATE DATABASE {name}")
    try:
        yield dsn_for_database(pg_dsn, name)
    finally:
        psql(pg_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def lines_of(stdout, names):
    """The output line of each migration file, by file name."""
    found = {}
    for line in stdout.splitlines():
        first = line.split(None, 1)
        if first and first[0] in names:
            found[first[0]] = line
    return found


# --- migrate -------------------------------------------------------------------------------


def test_migrate_twice_second_is_noop(fresh_dsn):
    names = [p.name for p in migration_files()]
    first = admin(["--pg-dsn", fresh_dsn, "migrate"])
    assert first.returncode == 0, first.stdout + first.stderr
    got = lines_of(first.stdout, names)
    assert set(got) == set(names), first.stdout
    assert all(" applied in " in line for line in got.values()), first.stdout
    assert f"{len(names)} applied, 0 already applied" in first.stdout

    second = admin(["--pg-dsn", fresh_dsn, "migrate"])
    assert second.returncode == 0, second.stdout + second.stderr
    got = lines_of(second.stdout, names)
    assert all(line.endswith("already applied") for line in got.values()), second.stdout
    assert f"0 applied, {len(names)} already applied" in second.stdout


def test_migrate_from_two_processes_at_once(fresh_dsn):
    names = [p.name for p in migration_files()]
    procs = [subprocess.Popen([binary("nudgel-admin"), "--pg-dsn", fresh_dsn, "migrate"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
    # Each migration was applied by exactly one of the two runs.
    for name in names:
        applied = sum(1 for out, _ in outs
                      if " applied in " in lines_of(out, [name]).get(name, ""))
        assert applied == 1, (name, outs)
    rows = psql(fresh_dsn, "SELECT version FROM nudgel.schema_migrations ORDER BY version")
    assert rows.splitlines() == [re.match(r"\d+", n).group(0) for n in names]


def test_migrate_status(fresh_dsn):
    names = [p.name for p in migration_files()]
    before = admin(["--pg-dsn", fresh_dsn, "migrate", "--status"])
    assert before.returncode == 0, before.stdout + before.stderr
    assert all(line.endswith("pending") for line in lines_of(before.stdout, names).values())
    # --status changes nothing: not even the bookkeeping table exists afterwards.
    assert psql(fresh_dsn, "SELECT to_regclass('nudgel.schema_migrations') IS NULL") == "t"

    assert admin(["--pg-dsn", fresh_dsn, "migrate"]).returncode == 0
    after = admin(["--pg-dsn", fresh_dsn, "migrate", "--status"])
    assert after.returncode == 0, after.stdout + after.stderr
    for line in lines_of(after.stdout, names).values():
        assert re.search(r" applied \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", line), line


def test_migrate_detects_a_changed_migration(fresh_dsn):
    assert admin(["--pg-dsn", fresh_dsn, "migrate"]).returncode == 0
    first = migration_files()[0].name
    psql(fresh_dsn, f"UPDATE nudgel.schema_migrations SET checksum = 'x' WHERE name = '{first}'")
    run = admin(["--pg-dsn", fresh_dsn, "migrate"])
    assert run.returncode == 1, run.stdout + run.stderr
    assert first in run.stderr and "changed after it was applied" in run.stderr


def test_stack_database_has_the_design_tables(pg_dsn):
    run = admin(["migrate"], {"NUDGEL_PG_DSN": pg_dsn})
    assert run.returncode == 0, run.stdout + run.stderr
    tables = set(psql(pg_dsn, "SELECT table_name FROM information_schema.tables "
                              "WHERE table_schema = 'nudgel'").splitlines())
    assert DESIGN_TABLES <= tables, DESIGN_TABLES - tables

    files = migration_files()
    rows = psql(pg_dsn, "SELECT version || '|' || name || '|' || checksum "
                        "FROM nudgel.schema_migrations ORDER BY version").splitlines()
    expected = [f"{re.match(r'[0-9]+', p.name).group(0)}|{p.name}|"
                f"{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in files]
    # One row per migration; a newer release may have recorded more.
    for row in expected:
        assert rows.count(row) == 1, (row, rows)


def test_pg_unreachable_exits_3_without_the_dsn():
    secret = "s3cr3t-" + uuid.uuid4().hex[:6]
    run = admin(["--pg-dsn", f"postgresql://nudgel:{secret}@127.0.0.1:{closed_port()}/nudgel",
                 "migrate"])
    assert run.returncode == 3, run.stdout + run.stderr
    assert "Postgres" in run.stderr
    assert secret not in run.stdout + run.stderr


# --- topics --------------------------------------------------------------------------------


def describe(bootstrap, *extra):
    run = admin(["-b", bootstrap, *extra, "topics", "describe", "--json"])
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout)


def test_topics_ensure_twice(bootstrap):
    first = admin(["-b", bootstrap, "topics", "ensure"])
    assert first.returncode == 0, first.stdout + first.stderr
    second = admin(["-b", bootstrap, "topics", "ensure"])
    assert second.returncode == 0, second.stdout + second.stderr
    assert not re.search(r"^\S+\s+created", second.stdout, re.M), second.stdout
    assert not re.search(r"^\S+\s+error:", second.stdout, re.M), second.stdout
    topics = describe(bootstrap)
    for t in topics:
        assert re.search(rf"^{re.escape(t['topic'])}\s+(ok|drift: .*)$", second.stdout, re.M), \
            second.stdout
    assert " 0 created" in second.stdout


def test_every_contract_topic_exists_as_configured(bootstrap, topics_ready):
    topics = describe(bootstrap)
    names = {t["topic"] for t in topics}
    assert {"nudgel.messages.v1", "nudgel.webhooks.v1", "nudgel.messages.dlq.v1",
            "nudgel.webhooks.dlq.v1", "nudgel.delivery-status.v1",
            "nudgel.carrier-dlr.v1"} <= names
    assert any(t["class"] == "retry" and t["delay_ms"] > 0 for t in topics)
    for t in topics:
        assert t["exists"], t
        assert t["partitions"] == t["configured"]["partitions"], t
        assert t["retention_ms"] == t["configured"]["retention_ms"], t
        # An independent reader agrees.
        assert partition_count(bootstrap, t["topic"]) == t["partitions"], t


def test_topics_describe_table(bootstrap, topics_ready):
    run = admin(["-b", bootstrap, "topics", "describe"])
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"^nudgel\.messages\.v1\s+exists\s+\d+\s+\d+\s+\d+\s+jobs\b", run.stdout,
                     re.M), run.stdout
    assert re.search(r"^nudgel\.webhooks\.retry\.5m\s+exists\s.*\bretry\s+5m$", run.stdout,
                     re.M), run.stdout


def test_drift_is_reported_without_changing_anything(bootstrap, topics_ready):
    before = {t["topic"]: t for t in describe(bootstrap)}
    more = max(t["partitions"] for t in before.values()) + 1
    run = admin(["-b", bootstrap, "--set", f"topics.partitions={more}", "topics", "ensure",
                 "--fail-on-drift"])
    assert run.returncode == 1, run.stdout + run.stderr
    assert re.search(rf"^nudgel\.messages\.v1\s+drift: partitions \d+ < {more} configured",
                     run.stdout, re.M), run.stdout
    fewer = min(t["partitions"] for t in before.values()) - 1
    if fewer >= 1:
        run = admin(["-b", bootstrap, "--set", f"topics.partitions={fewer}", "topics", "ensure"])
        assert run.returncode == 0, run.stdout + run.stderr  # drift alone is not a failure
        assert "Kafka cannot remove partitions" in run.stdout
    after = {t["topic"]: t for t in describe(bootstrap)}
    assert {k: v["partitions"] for k, v in after.items()} == \
        {k: v["partitions"] for k, v in before.items()}


def wait_for_retention(bootstrap, topic, value, timeout=15):
    """Config changes reach DescribeConfigs through the metadata log, a moment after AlterConfigs."""
    deadline = time.monotonic() + timeout
    while True:
        current = {t["topic"]: t for t in describe(bootstrap)}[topic]["retention_ms"]
        if current == value or time.monotonic() > deadline:
            return current
        time.sleep(0.2)


def test_alter_sets_retention_and_restores(bootstrap, topics_ready):
    topic = "nudgel.carrier-dlr.v1"
    original = {t["topic"]: t for t in describe(bootstrap)}[topic]["retention_ms"]
    other = original + 3600000
    key = f"topics.retention_ms.dlr={other}"
    try:
        drift = admin(["-b", bootstrap, "--set", key, "topics", "ensure", "--fail-on-drift"])
        assert drift.returncode == 1, drift.stdout + drift.stderr
        assert re.search(rf"^{re.escape(topic)}\s+drift: .*retention\.ms {original} != {other}",
                         drift.stdout, re.M), drift.stdout
        fixed = admin(["-b", bootstrap, "--set", key, "topics", "ensure", "--alter"])
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert re.search(rf"^{re.escape(topic)}\s+altered: .*retention\.ms {original} -> {other}",
                         fixed.stdout, re.M), fixed.stdout
        assert wait_for_retention(bootstrap, topic, other) == other
    finally:
        admin(["-b", bootstrap, "--set", f"topics.retention_ms.dlr={original}", "topics",
               "ensure", "--alter"])
    assert wait_for_retention(bootstrap, topic, original) == original


# --- configuration and failures ------------------------------------------------------------


def test_bad_config_value_exits_2_naming_the_key():
    run = admin(["--set", "topics.partitions=0", "topics", "ensure"])
    assert run.returncode == 2, run.stdout + run.stderr
    assert "topics.partitions" in run.stderr
    run = admin(["topics", "ensure"], {"NUDGEL_TOPICS_REPLICATION_FACTOR": "zero"})
    assert run.returncode == 2, run.stdout + run.stderr
    assert "topics.replication_factor" in run.stderr


def test_usage_errors_exit_2():
    assert admin(["topics"]).returncode == 2
    assert admin(["migrate", "--json"]).returncode == 2
    assert admin(["frobnicate"]).returncode == 2
    help_run = admin(["--help"])
    assert help_run.returncode == 0
    for command in ("migrate", "topics ensure", "topics describe"):
        assert command in help_run.stdout


def test_print_config_redacts_the_dsn():
    secret = "s3cr3t-" + uuid.uuid4().hex[:6]
    run = admin(["--pg-dsn", f"postgresql://u:{secret}@127.0.0.1/x", "--print-config"])
    assert run.returncode == 0, run.stderr
    assert "pg.dsn = [redacted]" in run.stdout and secret not in run.stdout


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_kafka_unreachable_fails_within_the_timeout():
    start = time.monotonic()
    run = admin(["-b", f"127.0.0.1:{closed_port()}", "--set", "admin.timeout_ms=2000", "topics",
                 "ensure"], timeout=60)
    elapsed = time.monotonic() - start
    assert run.returncode == 3, run.stdout + run.stderr
    assert "cannot reach Kafka" in run.stderr
    assert elapsed < 15, elapsed
