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
import threading
import time

import pytest

from conftest import binary, kcat_consume

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


def test_unfinished_job_comes_back_after_kill(bootstrap, topics_ready, topic, run_id):
    produce(bootstrap, topic, 1200)
    records = sorted(all_records(bootstrap, topic))
    stuck = next(r for r in records if r[0] == 0)
    later_on_p0 = {r for r in records if r[0] == 0 and r[1] > stuck[1]}
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
    time.sleep(2)  # several auto-commit intervals for the finished jobs
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


def test_two_workers_share_partitions(bootstrap, topics_ready, topic, run_id):
    # Enough slow work (8000 jobs at 2 ms each) that the second worker joins while
    # there is still plenty left, however slow the machine.
    produce(bootstrap, topic, 8000)
    expected = all_records(bootstrap, topic)
    group = f"s-{run_id}"
    procs = [subprocess.Popen(driver(topic, group, "--max-hold", "100", "--idle-ms", "6000",
                                     "--seed", str(n), "--finish-delay-us", "2000",
                                     "--set", f"consumer.window={WINDOW}"),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for n in (1, 2)]
    outputs = [parse(p.communicate(timeout=180)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    # Usually both workers get partitions; when the first took all of them before the
    # second joined, the cooperative hand-over can come late (see the issue note), so
    # the check here is what must always hold: nothing lost, duplicates bounded.
    union = set(outputs[0]) | set(outputs[1])
    assert union == expected
    duplicates = len(outputs[0]) + len(outputs[1]) - len(union)
    print(f"two workers: {len(outputs[0])} + {len(outputs[1])} jobs, {duplicates} duplicates")
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
        time.sleep(2)  # the jobs' commits and the first statistics settle
        main = [str(proc.pid)]  # the loop's thread
        before, before_main = cpu_seconds(proc.pid), cpu_seconds(proc.pid, main)
        started = time.monotonic()
        time.sleep(5)
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
