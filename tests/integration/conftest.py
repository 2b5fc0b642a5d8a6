"""Shared fixtures for integration tests.

They run against the real Kafka and Postgres of `scripts/stack` (started once
per test run by `scripts/test`), whose environment gives
NUDGEL_KAFKA_BOOTSTRAP and NUDGEL_PG_DSN. ctest passes NUDGEL_BUILD_DIR and
NUDGEL_SOURCE_DIR. Every network address used here is on loopback.
"""
import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

SOURCE_DIR = Path(os.environ.get("NUDGEL_SOURCE_DIR", Path(__file__).resolve().parents[2]))
BUILD_DIR = Path(os.environ.get("NUDGEL_BUILD_DIR", SOURCE_DIR / "build" / "dev"))


def murmur2(data: bytes) -> int:
    """Kafka's Java murmur2 (Utils.murmur2), as a signed 32-bit int."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (0x9747B28C ^ len(data)) & mask
    n4 = len(data) // 4
    for i in range(n4):
        k = int.from_bytes(data[i * 4:i * 4 + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k
    rest = len(data) & 3
    tail = data[n4 * 4:]
    if rest == 3:
        h ^= tail[2] << 16
    if rest >= 2:
        h ^= tail[1] << 8
    if rest >= 1:
        h ^= tail[0]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: str, partitions: int) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def built_binaries() -> dict:
    """{name: path} of every binary the build declares (nudgel_add_role / nudgel_add_tool):
    BUILD_DIR/binaries.txt, one "NAME KIND DOC PATH" line each."""
    listing = BUILD_DIR / "binaries.txt"
    if not listing.exists():
        raise FileNotFoundError(f"{listing} not found: configure and build {BUILD_DIR} first")
    found = {}
    for line in listing.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _kind, _doc, path = line.split(None, 3)
        found[name] = path
    return found


def binary(name: str) -> str:
    path = built_binaries().get(name)
    if path is None:
        raise FileNotFoundError(f"{name} is not declared in {BUILD_DIR / 'binaries.txt'}")
    if not Path(path).exists():
        raise FileNotFoundError(f"{name} not built under {BUILD_DIR} ({path})")
    return path


@pytest.fixture(scope="session")
def bootstrap() -> str:
    value = os.environ.get("NUDGEL_KAFKA_BOOTSTRAP")
    if not value:
        pytest.fail("NUDGEL_KAFKA_BOOTSTRAP is not set: run through scripts/test or "
                    "eval \"$(scripts/stack env)\"")
    return value


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    value = os.environ.get("NUDGEL_PG_DSN")
    if not value:
        pytest.fail("NUDGEL_PG_DSN is not set: run through scripts/test")
    return value


@pytest.fixture(scope="session")
def topics_ready(bootstrap):
    """Creates the contract topics once (idempotent)."""
    run = subprocess.run([binary("nudgel-admin"), "topics", "ensure"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return True


@pytest.fixture
def run_id() -> str:
    """A short unique prefix so tests never read each other's jobs."""
    return uuid.uuid4().hex[:8]


def kcat_consume(bootstrap: str, topic: str, timeout: int = 120):
    """Every record of @topic from the beginning, as dicts from kcat -J."""
    out = subprocess.run(
        ["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-J", "-q",
         "-X", "fetch.wait.max.ms=50"],
        capture_output=True, text=True, timeout=timeout, check=True).stdout
    records = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def headers_of(record) -> dict:
    raw = record.get("headers") or []
    if isinstance(raw, dict):
        return raw
    return {raw[i]: raw[i + 1] for i in range(0, len(raw) - 1, 2)}


def partition_count(bootstrap: str, topic: str) -> int:
    meta = json.loads(subprocess.run(["kcat", "-L", "-J", "-b", bootstrap, "-t", topic],
                                     capture_output=True, text=True, check=True,
                                     timeout=30).stdout)
    for t in meta["topics"]:
        if t["topic"] == topic:
            return len(t["partitions"])
    raise AssertionError(f"topic {topic} not found")


def load_schema(name: str):
    import jsonschema
    schema = json.loads((SOURCE_DIR / "schemas" / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


# --- observable state, for tests that wait on it instead of sleeping -------------------------


def group_offsets(group: str, topics):
    """{(topic, partition): (committed, low, high)} of a consumer group, committed -1 where
    it has committed nothing; None while Kafka does not answer. nudgel-test-group-offsets
    never joins the group, so its members see no rebalance."""
    args = [binary("nudgel-test-group-offsets"), "--group", group]
    for t in topics:
        args += ["--topic", t]
    run = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        return None
    return {(t, p["p"]): (p["committed"], p["low"], p["high"])
            for t, parts in json.loads(run.stdout).items() for p in parts}


def group_lag(group: str, topics):
    """Records of @topics the group has not committed past (its lag, every partition
    counted, also those it has committed nothing on); None while Kafka does not answer."""
    offsets = group_offsets(group, topics)
    return None if offsets is None else offsets_lag(offsets)


def offsets_lag(offsets) -> int:
    """The lag in a group_offsets() answer: records not committed past, summed."""
    return sum(high - max(committed, low) for committed, low, high in offsets.values())


def listening_port(pid: int):
    """The TCP port process @pid listens on (a worker's /metrics, /healthz and /readyz:
    its only listening socket), or None (not yet, or gone)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
                return int(f[1].rsplit(":", 1)[1], 16)
    return None


def scrape_metrics(port) -> dict:
    """The Prometheus samples of /metrics on @port as {'name{labels}': value}; {} when
    nothing answers."""
    if not port:
        return {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def readyz(port):
    """(status, reason text) of /readyz on @port; (0, error) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError as e:
        return 0, str(e)
