"""The shared consumer (workers/runtime/src/consumer.c) against the real broker.

Driven by nudgel-test-consumer, which finishes jobs in random order. Checks
at-least-once with contiguous offsets: every job seen, a finished group sees
nothing again, a job left unfinished by a killed worker comes back (and with
it nothing already committed on other partitions), and two workers of one
group share the partitions without losing anything.
"""
import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import binary, group_lag, group_offsets, kcat_consume

PARTITIONS = 6
WINDOW = 200


@pytest.fixture
def topic(bootstrap, run_id):
    ns = f"ct{run_id}."
    run = subprocess.run([binary("nudgel-admin"), "--set", f"topics.namespace={ns}",
                          "--set", f"topics.partitions={PARTITIONS}", "topics", "ensure"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return f"{ns}nudgel.messages.v1"


def produce(bootstrap, topic, count, start=0):
    lines = "".join(f"tenant-{i % 37}\tjob-{start + i}\n" for i in range(count))
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-X", "acks=all"],
                   input=lines, text=True, check=True, timeout=60)


def all_records(bootstrap, topic):
    return {(r["partition"], r["offset"]) for r in kcat_consume(bootstrap, topic)}


def driver(topic, group, *extra):
    return [binary("nudgel-test-consumer"), "--topic", topic, "--group", group,
            "--set", "kafka.auto.commit.interval.ms=200", "--set", "kafka.session.timeout.ms=6000",
            "--set", "log.level=warn", *extra]


def run_driver(topic, group, *extra, timeout=120):
    out = subprocess.run(driver(topic, group, *extra), capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr
    return parse(out.stdout)


def parse(text):
    seen = []
    for line in text.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            seen.append((rec["p"], rec["o"]))
    return seen


def test_every_job_once_then_nothing(bootstrap, topics_ready, topic, run_id):
    produce(bootstrap, topic, 3000)
    expected = all_records(bootstrap, topic)
    assert len(expected) == 3000
    group = f"g-{run_id}"
    seen = run_driver(topic, group, "--max-hold", "200", "--idle-ms", "3000")
    assert sorted(seen) == sorted(expected), "first run must see every job exactly once"
    again = run_driver(topic, group, "--idle-ms", "2500")
    assert again == [], f"{len(again)} jobs re-delivered after a clean finish"


def wait_for(predicate, timeout, what, interval=0.3):
    """Polls @predicate until it returns something true; fails naming @what after @timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(interval)


def committed(group, topic):
    """{partition: the group's committed offset} of @topic, a partition it has committed
    nothing on at its low watermark (where it would start); None while Kafka does not answer."""
    offsets = group_offsets(group, [topic])
    if offsets is None:
        return None
    return {p: max(c, low) for (_, p), (c, low, _) in offsets.items()}


def test_unfinished_job_comes_back_after_kill(bootstrap, topics_ready, topic, run_id):
    produce(bootstrap, topic, 1200)
    records = sorted(all_records(bootstrap, topic))
    stuck = next(r for r in records if r[0] == 0)
    later_on_p0 = {r for r in records if r[0] == 0 and r[1] > stuck[1]}
    ends = {}
    for p, o in records:
        ends[p] = max(ends.get(p, 0), o + 1)
    group = f"k-{run_id}"
    proc = subprocess.Popen(driver(topic, group, "--max-hold", "50", "--idle-ms", "60000",
                                   "--stuck", f"{stuck[0]}:{stuck[1]}"),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen = []
    deadline = time.monotonic() + 60
    while len(seen) < len(records) and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("{"):
            seen.append(tuple(json.loads(line)[k] for k in ("p", "o")))
    assert len(seen) == len(records)

    def others_committed():
        at = committed(group, topic)
        if at and all(at[p] == end for p, end in ends.items() if p != stuck[0]):
            return at
        return None

    # The finished jobs' commits: every other partition's to its end, before the kill.
    at = wait_for(others_committed, 60, "the finished jobs' commits")
    assert at[stuck[0]] <= stuck[1], f"committed past the unfinished job: {at}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    again = set(run_driver(topic, group, "--idle-ms", "3000"))
    assert stuck in again, "the unfinished job was not re-delivered"
    assert later_on_p0 <= again, "jobs after the unfinished one on its partition were skipped"
    others = {r for r in again if r[0] != 0}
    assert not others, f"{len(others)} finished jobs of other partitions came back"
    assert set(seen) | again == set(records)


def test_close_releases_abandoned_jobs(bootstrap, topics_ready, topic, run_id):
    """A worker that stops with a job unfinished (a fatal error, a drain that timed out)
    must still exit: closing releases the job's message instead of waiting for it
    (rd_kafka_destroy() blocks while the application holds messages), and the job
    comes back to the next worker."""
    produce(bootstrap, topic, 300)
    records = sorted(all_records(bootstrap, topic))
    stuck = next(r for r in records if r[0] == 1)
    group = f"a-{run_id}"
    started = time.monotonic()
    out = subprocess.run(driver(topic, group, "--idle-ms", "2000", "--abandon",
                                "--stuck", f"{stuck[0]}:{stuck[1]}"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 45
    assert "abandoned at close" in out.stderr
    again = set(run_driver(topic, group, "--idle-ms", "3000"))
    assert stuck in again


def reader(proc, tag, lines):
    """A thread putting (tag, line) on @lines for each line of @proc's stdout, then (tag, None)."""
    def run():
        for line in proc.stdout:
            lines.put((tag, line))
        lines.put((tag, None))
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_two_workers_share_partitions(bootstrap, topics_ready, topic, run_id):
    """Both workers join the group first; the jobs come once both hold partitions, so each
    must get some. Nothing lost, and duplicates bounded (none expected: no rebalance while
    the jobs run)."""
    group = f"s-{run_id}"
    errs = [tempfile.TemporaryFile(mode="w+") for _ in range(2)]  # files: a full pipe blocks
    # --idle-ms is only a safety net: the test stops both once the group committed every job.
    procs = [subprocess.Popen(driver(topic, group, "--max-hold", "100", "--idle-ms", "120000",
                                     "--seed", str(n), "--set", f"consumer.window={WINDOW}"),
                              stdout=subprocess.PIPE, stderr=err, text=True)
             for n, err in ((1, errs[0]), (2, errs[1]))]
    lines = queue.Queue()
    threads = [reader(p, n, lines) for n, p in enumerate(procs)]
    outputs, assigned, ended = [[], []], [0, 0], [False, False]

    def read_until(done, timeout, what):
        deadline = time.monotonic() + timeout
        while not done():
            assert not any(ended), f"a driver exited while waiting for {what}: {assigned}"
            try:
                n, line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}: "
                                     f"assigned {assigned}, {len(outputs[0])} + "
                                     f"{len(outputs[1])} jobs") from None
            if line is None:
                ended[n] = True
            elif line.startswith("{"):
                rec = json.loads(line)
                outputs[n].append((rec["p"], rec["o"]))
            elif line.startswith("assigned "):
                assigned[n] = int(line.split()[1])

    try:
        # Both hold partitions, and between them all of them.
        read_until(lambda: min(assigned) > 0 and sum(assigned) == PARTITIONS, 60,
                   "both workers to hold partitions")
        produce(bootstrap, topic, 8000)
        expected = all_records(bootstrap, topic)
        assert len(expected) == 8000
        read_until(lambda: set(outputs[0]) | set(outputs[1]) >= expected, 180, "every job")
        wait_for(lambda: group_lag(group, [topic]) == 0, 60, "the group's commits of every job")
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=60) for p in procs]
        for t in threads:
            t.join(timeout=10)
        while not lines.empty():  # anything polled before the SIGTERM
            n, line = lines.get()
            if line and line.startswith("{"):
                rec = json.loads(line)
                outputs[n].append((rec["p"], rec["o"]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    errors = []
    for err in errs:
        err.seek(0)
        errors.append(err.read()[-2000:])
    assert codes == [0, 0], errors
    print(f"two workers: assigned {assigned}, {len(outputs[0])} + {len(outputs[1])} jobs")
    assert all(outputs), "both workers should have received jobs of their partitions"
    union = set(outputs[0]) | set(outputs[1])
    assert union == expected
    duplicates = len(outputs[0]) + len(outputs[1]) - len(union)
    print(f"two workers: {duplicates} duplicates")
    # Only jobs at or after the oldest unfinished one of a revoked partition
    # may come twice: at most a window per partition.
    assert duplicates <= WINDOW * PARTITIONS


def test_retry_tier_head_waits_until_due(bootstrap, topics_ready, topic, run_id):
    due = int(time.time() * 1000) + 3000
    lines = "".join(f"tenant-{i % 5}\tretry-{i}\n" for i in range(60))
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", "\t",
                    "-H", f"nudgel-not-before={due}"], input=lines, text=True, check=True,
                   timeout=60)
    started = time.time()
    out = subprocess.run(driver(topic, f"r-{run_id}", "--honour-not-before", "--idle-ms", "6000"),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert sorted((r["p"], r["o"]) for r in records) == sorted(all_records(bootstrap, topic))
    early = [r for r in records if r["at"] < due]
    assert not early, f"{len(early)} jobs handed out before nudgel-not-before"
    # Deferred, not busy-waiting on one job: all came soon after they were due.
    assert max(r["at"] for r in records) - due < 5000
    assert time.time() - started < 30


def cpu_seconds(pid, threads=None):
    """CPU time of a process (all its threads, or those listed), in seconds: utime +
    stime of /proc/<pid>/stat, refined with the per-thread schedstat run times (in ns)
    where the kernel has them, since 5 s of clock ticks (10 ms each) could not tell
    0.6% from 1%."""
    try:
        total = 0
        for task in threads or os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/{f'task/{threads[0]}/' if threads else ''}stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_consumer_sleeps_and_reports_health(bootstrap, topics_ready, topic, run_id):
    """An idle worker costs under 1% of a core: the driver runs on the event loop and
    sleeps until librdkafka has something (statistics every second included), with no
    short polls; its loop thread next to nothing, the rest is librdkafka's own threads.
    Its health comes from librdkafka's statistics. The default commit interval here (a
    worker's), not the other tests' 200 ms, whose commits alone cost librdkafka ~0.3%."""
    produce(bootstrap, topic, 50)
    proc = subprocess.Popen(driver(topic, f"i-{run_id}", "--idle-ms", "600000",
                                   "--set", "kafka.auto.commit.interval.ms=5000"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True)
        reader.start()
        seen, assigned, out = 0, False, []
        deadline = time.monotonic() + 60
        while not (assigned and seen == 50):
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            out.append(line)
            seen += line.startswith("{")
            assigned |= line.strip() == f"assigned {PARTITIONS}"
        # Idle from here: the jobs' commits are in (at this commit interval, up to 5 s after
        # the jobs), and with them the start-up's statistics.
        wait_for(lambda: proc.poll() is not None or group_lag(f"i-{run_id}", [topic]) == 0, 60,
                 "the jobs' commits")
        assert proc.poll() is None, proc.stderr.read()
        main = [str(proc.pid)]  # the loop's thread
        before, before_main = cpu_seconds(proc.pid), cpu_seconds(proc.pid, main)
        started = time.monotonic()
        time.sleep(5)  # the measurement window itself: a span of time, not a wait for state
        elapsed = time.monotonic() - started
        used = (cpu_seconds(proc.pid) - before) / elapsed
        used_main = (cpu_seconds(proc.pid, main) - before_main) / elapsed
        print(f"idle consumer: {used:.2%} of a core, its loop thread {used_main:.3%}")
        assert used < 0.01, f"an idle consumer used {used:.2%} of a core"
        assert used_main < 0.002, f"the idle loop thread used {used_main:.3%} of a core"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert proc.returncode == 0, err
    while not lines.empty():
        out.append(lines.get())
    health = json.loads(next(l for l in out if l.startswith("health "))[7:])
    print(f"health at exit: {health}")
    assert health["brokers_up"] >= 1
    assert health["group_up"] and health["steady"]
    assert health["assigned"] == PARTITIONS
    assert health["lag_total"] == 0  # everything was consumed
    assert 1 <= health["lags"] <= PARTITIONS  # partitions with a committed offset
    assert 0 <= health["stats_age_ms"] < 3000
