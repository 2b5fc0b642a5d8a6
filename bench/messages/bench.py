#!/usr/bin/env python3
"""bench/messages: nudgel-messages end to end vs Kannel 1.4.5, on one carrier simulator.

Called by bench/messages/run (which builds, starts the stack and exports
NUDGEL_KAFKA_BOOTSTRAP / NUDGEL_PG_DSN). Standard library only.

Phases, all against the same nudgel-carrier-sim:
  rounds   alternating order, each round:
           ours   — N jobs enqueued first into a fresh topic namespace, then ONE
                    nudgel-messages: claim in Postgres, submit (Infobip dialect for
                    KE/UG, generic JSON for NG), receipt, status event, offset.
                    Done when N receipts are final and the ledger holds N SMS.
           kannel — bearerbox + smsbox (store-type spool, dlr-storage pgsql), the
                    generic HTTP SMSC to the simulator's /kannel/send; N sendsms
                    requests with dlr-mask=31 from a concurrent client; done when the
                    ledger holds N SMS; then until every SMSC-ack (8) and final (1)
                    DLR reached the client's dlr-url sink.
  latency  at half our median peak: nudgel-enqueue --rate while one worker runs;
           enqueue→receipt = receipts.final_at − the job id's UUIDv7 time
           (the producer sets id and created_at in the same call).
  inflight messages.max_in_flight=10000 against a slow carrier: peak RSS while
           the in-flight gauge sits at the cap.
"""
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("NUDGEL_BENCH_BUILD", os.path.join(REPO, "build", "release"))
BIN = {
    "admin": f"{BUILD}/workers/admin/nudgel-admin",
    "enqueue": f"{BUILD}/producers/nudgel-enqueue",
    "messages": f"{BUILD}/workers/messages/nudgel-messages",
    "sim": f"{BUILD}/tests/carrier-sim/nudgel-carrier-sim",
}
PG_DSN = os.environ["NUDGEL_PG_DSN"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PARTITIONS = 6
KANNEL_CONCURRENCY = int(os.environ.get("NUDGEL_BENCH_KANNEL_CONCURRENCY", "64"))
# Public sandbox placeholders of the simulator (tests/carrier-sim/README.md), not secrets.
SIM_KEYS = {"NUDGEL_BENCH_INFOBIP_KEY": "sandbox-infobip-key",
            "NUDGEL_BENCH_GENERIC_KEY": "sandbox-generic-key"}


def say(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(sql, dsn=PG_DSN):
    return subprocess.run(["psql", dsn, "-XAt", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          capture_output=True, text=True, check=True, timeout=120).stdout.strip()


def pg_dsn_db(db):
    """The stack's DSN with another database name."""
    u = urllib.parse.urlsplit(PG_DSN)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + db, u.query, u.fragment))


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (/proc/<pid>/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


STACK = os.environ.get("NUDGEL_STACK_DIR", os.path.join(REPO, ".stack"))


def service_pids():
    """The stack's Postgres (postmaster and its children) and Kafka broker pids."""
    pids = {"postgres": [], "kafka": []}
    try:
        with open(os.path.join(STACK, "pg.path")) as f:
            pgdir = f.read().strip()
        with open(os.path.join(pgdir, "data", "postmaster.pid")) as f:
            master = int(f.readline())
        pids["postgres"].append(master)
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == master:
                            pids["postgres"].append(int(d))
                except OSError:
                    pass
    except OSError:
        pass
    try:
        with open(os.path.join(STACK, "kafka", "kafka.pid")) as f:
            pids["kafka"].append(int(f.readline()))
    except (OSError, ValueError):
        pass
    return pids


def service_cpu():
    """CPU seconds so far of the stack's Postgres processes and Kafka broker. Backends
    that exit between two readings take their CPU with them: read both while the
    connections of interest are open."""
    out = {}
    for name, pids in service_pids().items():
        total = 0.0
        for p in pids:
            try:
                total += cpu_seconds(p)
            except OSError:
                pass
        out[name] = total
    return out


def service_delta(before, after, n):
    return {f"{k}_cpu_ms_per_msg": round((after[k] - before[k]) / n * 1000, 4) for k in before}


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until(pred, timeout, step=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def stop(proc, timeout=30):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- simulator --
class Sim:
    def __init__(self, workdir):
        self.out = open(f"{workdir}/sim.out", "w+")
        self.err = open(f"{workdir}/sim.log", "w")
        self.proc = subprocess.Popen([BIN["sim"], "--port", "0", "--set", "log.level=warn",
                                      "--set", "sim.dlr.enabled=false"],
                                     stdout=self.out, stderr=self.err)
        self.port = None

        def listening():
            self.out.seek(0)
            m = re.search(r'"listening":(\d+)', self.out.read())
            if m:
                self.port = int(m.group(1))
            return self.port is not None
        wait_until(listening, 10, what="the carrier simulator")
        self.base = f"http://127.0.0.1:{self.port}"

    def get(self, path):
        with urllib.request.urlopen(self.base + path, timeout=10) as r:
            return json.loads(r.read())

    def post(self, path, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        req = urllib.request.Request(self.base + path, data=data, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read()

    def configure(self, **kv):
        self.post("/admin/config", {k.replace("__", "."): v for k, v in kv.items()})

    def reset(self):
        self.post("/ledger/reset")

    def summary(self):
        return self.get("/ledger?summary=1")

    def close(self):
        stop(self.proc)


# --------------------------------------------------------------------- jobs --
BODY = "Your Nudgel code is {code:06d}. It expires in 10 minutes. Round {tag}."


def number(i):
    """KE, NG and UG mobile numbers in E.164, unique per index."""
    kind = i % 3
    if kind == 0:
        return f"+2547{i % 100000000:08d}"
    if kind == 1:
        return f"+234803{i % 10000000:07d}"
    return f"+25677{i % 10000000:07d}"


def write_jobs(path, n, tenant, keyprefix, tag):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"tenant_id": f"{tenant}-{i % TENANTS}", "channel": "sms",
                                "to": number(i), "body": BODY.format(code=i, tag=tag),
                                "idempotency_key": f"{keyprefix}{i}"},
                               separators=(",", ":")) + "\n")


def enqueue(ns, path, rate=None, log=None):
    args = [BIN["enqueue"], "--quiet", "--json", "--topic", "messages",
            "--set", f"producer.messages_topic={ns}nudgel.messages.v1"]
    if rate:
        args += ["--rate", str(rate)]
    run = subprocess.run(args + [path], capture_output=True, text=True, timeout=3600)
    if log:
        log.write(run.stderr)
    if run.returncode != 0:
        raise RuntimeError(f"nudgel-enqueue failed ({run.returncode}): {run.stderr[-500:]}")
    return run.stdout


def make_topics(ns):
    subprocess.run([BIN["admin"], "--set", f"topics.namespace={ns}",
                    "--set", f"topics.partitions={PARTITIONS}", "topics", "ensure"],
                   check=True, capture_output=True, timeout=120)


def gateways_file(sim, path):
    conf = {
        "gateways": [
            {"name": "sim-infobip", "dialect": "infobip",
             "base_url": f"http://127.0.0.1:{sim.port}/infobip",
             "api_key_env": "NUDGEL_BENCH_INFOBIP_KEY", "tps": 1000000, "sender_id": "NUDGEL"},
            {"name": "sim-generic", "dialect": "generic",
             "base_url": f"http://127.0.0.1:{sim.port}/generic",
             "api_key_env": "NUDGEL_BENCH_GENERIC_KEY", "tps": 1000000, "sender_id": "NUDGEL",
             "auth_header": "Authorization", "auth_scheme": "Bearer",
             "message_id_pointer": "/id", "status_pointer": "/status",
             "success_statuses": ["accepted"], "permanent_statuses": ["rejected"],
             "transient_statuses": []},
        ],
        "routes": [
            {"country": "KE", "operator": "*", "gateways": ["sim-infobip"]},
            {"country": "UG", "operator": "*", "gateways": ["sim-infobip"]},
            {"country": "NG", "operator": "*", "gateways": ["sim-generic"]},
        ],
    }
    with open(path, "w") as f:
        json.dump(conf, f, indent=1)


class Worker:
    def __init__(self, ns, gw_file, logpath, *sets):
        self.log = open(logpath, "w")
        self.logpath = logpath
        args = [BIN["messages"], "--set", f"topics.namespace={ns}",
                "--set", f"messages.gateways_file={gw_file}",
                "--set", f"messages.group_id=bench-{ns}", "--set", "metrics.port=0",
                "--set", "log.level=info"]
        for s in sets:
            args += ["--set", s]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, env=dict(os.environ, **SIM_KEYS),
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        self.pid = self.proc.pid

    def logtext(self):
        with open(self.logpath) as f:
            return f.read()

    def assigned(self):
        return re.search(r"assigned [1-9]", self.logtext()) is not None

    def metrics_port(self):
        m = re.search(r"metrics on port (\d+)", self.logtext())
        return int(m.group(1)) if m else None

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        stop(self.proc, timeout=60)
        self.log.close()
        return self.proc.returncode


TENANTS = 20


def final_count(tenant):
    """Receipts of the round's tenants past submitting; an index scan on
    (tenant_id, created_at), so polling costs Postgres little."""
    ids = ", ".join(f"'{tenant}-{i}'" for i in range(TENANTS))
    return int(psql("SELECT count(*) FROM nudgel.message_receipts WHERE "
                    f"tenant_id IN ({ids}) AND status NOT IN ('accepted', 'submitting')"))


def run_ours(ctx, r, n):
    sim, workdir = ctx["sim"], ctx["workdir"]
    ns = f"bm{ctx['run']}r{r}."
    tenant = f"bm{ctx['run']}r{r}"
    make_topics(ns)
    jobs = f"{workdir}/ours-r{r}.jsonl"
    write_jobs(jobs, n, tenant, f"{ns}", f"o{r}")
    t = time.monotonic()
    enqueue(ns, jobs)
    say(f"round {r} ours: {n} jobs enqueued in {time.monotonic() - t:.1f}s; starting one worker")
    sim.configure(sim__dlr__enabled=False)
    sim.reset()
    svc0 = service_cpu()
    sim0 = cpu_seconds(sim.proc.pid)
    w = Worker(ns, ctx["gw_file"], f"{workdir}/worker-r{r}.log")
    try:
        wait_until(lambda: not w.alive() or sim.summary()["totals"]["sms"] >= n, 600, 0.1,
                   "the ledger to reach N")
        wait_until(lambda: not w.alive() or final_count(tenant) >= n, 300, 0.1,
                   "N final receipts")
        if not w.alive():
            raise RuntimeError(f"worker exited early: {w.logtext()[-1500:]}")
        t_end = time.monotonic()
        cpu = cpu_seconds(w.pid)
        hwm = status_kb(w.pid, "VmHWM")
        svc = service_delta(svc0, service_cpu(), n)
        svc["simulator_cpu_ms_per_msg"] = round((cpu_seconds(sim.proc.pid) - sim0) / n * 1000, 4)
    finally:
        rc = w.stop()
    ledger = sim.summary()
    db = psql("SELECT count(*) FILTER (WHERE status = 'sent'), "
              "extract(epoch FROM max(coalesce(final_at, submitted_at)) - min(created_at)) "
              f"FROM nudgel.message_receipts WHERE tenant_id LIKE '{tenant}-%'").split("|")
    sent, active_s = int(db[0]), float(db[1])
    wall_s = t_end - w.started
    res = {"n": n, "wall_s": round(wall_s, 3), "active_s": round(active_s, 3),
           "rate": round(n / active_s, 1), "rate_wall": round(n / wall_s, 1),
           "cpu_s": round(cpu, 3), "cpu_ms_per_msg": round(cpu / n * 1000, 4),
           "rss_hwm_kib": hwm, "sent": sent, "ledger_sms": ledger["totals"]["sms"],
           "ledger_duplicates": ledger["duplicates"], "worker_exit": rc,
           "context": svc}
    if sent != n or ledger["totals"]["sms"] != n or ledger["duplicates"]:
        res["problem"] = "receipts or ledger differ from N"
    say(f"round {r} ours: {res['rate']:,.0f} msg/s (first claim→last receipt {active_s:.2f}s; "
        f"{res['rate_wall']:,.0f}/s from process start), {res['cpu_ms_per_msg']:.3f} ms CPU/msg, "
        f"VmHWM {hwm / 1024:.1f} MiB, ledger {ledger['totals']['sms']}, exit {rc}; context {svc}")
    return res


# -------------------------------------------------------------------- Kannel --
KANNEL_USER, KANNEL_PASS = "bench", "bench-sendsms"
DLR_STALL_S = 15
# The simulator's final report comes this long after its answer. Real handsets take
# seconds; at 200 ms a loaded Kannel sometimes gets the report before it has stored
# the DLR entry for the answer (it then drops the report as unknown).
DLR_DELAY_MS = int(os.environ.get("NUDGEL_BENCH_DLR_DELAY_MS", "1000"))


def kannel_conf(kdir, sim_port, ports, pg):
    u = urllib.parse.urlsplit(PG_DSN)
    # The DLR the simulator sends back goes to the generic SMSC's own HTTP port with
    # Kannel's message id (%I) as dlr-mid; the simulator appends type=1|2, which
    # generic-param-dlr-mask maps to Kannel's DLR type.
    dlr_back = urllib.parse.quote(f"http://127.0.0.1:{ports['smsc']}/dlr?dlr-mid=", safe="")
    return f"""# Written by bench/messages for one round; see bench/messages/README.md.
group = core
admin-port = {ports['admin']}
admin-interface = 127.0.0.1
admin-password = "bench-admin"
admin-allow-ip = "127.0.0.1"
smsbox-port = {ports['box']}
smsbox-interface = 127.0.0.1
box-allow-ip = "127.0.0.1"
log-file = "{kdir}/bearerbox.log"
log-level = 2
store-type = spool
store-location = "{kdir}/spool"
dlr-storage = pgsql

group = pgsql-connection
id = bench-dlr
host = {u.hostname}
port = {u.port}
username = {u.username}
password = "trust-auth-on-loopback"
database = kannel
max-connections = 4

group = dlr-db
id = bench-dlr
table = dlr
field-smsc = smsc
field-timestamp = ts
field-destination = destination
field-source = source
field-service = service
field-url = url
field-mask = mask
field-status = status
field-boxc-id = boxc

group = smsc
smsc = http
smsc-id = sim
system-type = generic
port = {ports['smsc']}
connect-allow-ip = "127.0.0.1"
send-url = "http://127.0.0.1:{sim_port}/kannel/send?to=%p&text=%b&from=%P&dlr-url={dlr_back}%I"
status-success-regex = "^ok"
status-permfail-regex = "^fail"
status-tempfail-regex = "^retry"
generic-param-dlr-mask = "type"
max-pending-submits = 64

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {ports['box']}
sendsms-port = {ports['sendsms']}
sendsms-interface = 127.0.0.1
log-file = "{kdir}/smsbox.log"
log-level = 2

group = sendsms-user
username = {KANNEL_USER}
password = {KANNEL_PASS}
user-allow-ip = "127.0.0.1"
max-messages = 1
"""


def kannel_db_prepare():
    """A database of its own in the stack's Postgres and the dlr table of Kannel's
    dlr-db group. Kannel 1.4.5's pgsql backend deletes and updates by `oid`, a system
    column Postgres 12+ no longer has: the table carries an ordinary oid column."""
    if not psql("SELECT 1 FROM pg_database WHERE datname = 'kannel'", pg_dsn_db("postgres")):
        psql("CREATE DATABASE kannel", pg_dsn_db("postgres"))
    psql("CREATE TABLE IF NOT EXISTS dlr (oid bigserial, smsc varchar(40), ts varchar(65), "
         "destination varchar(40), source varchar(40), service varchar(40), "
         "url varchar(255), mask integer, status integer, boxc varchar(40)); "
         "CREATE INDEX IF NOT EXISTS dlr_smsc_ts_idx ON dlr (smsc, ts); "
         "CREATE INDEX IF NOT EXISTS dlr_oid_idx ON dlr (oid); TRUNCATE dlr",
         pg_dsn_db("kannel"))


async def http_request(reader, writer, path):
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length, close = 0, False
    for line in lines[1:]:
        k, _, v = line.partition(":")
        k = k.strip().lower()
        if k == "content-length":
            length = int(v)
        elif k == "connection" and "close" in v.lower():
            close = True
    body = await reader.readexactly(length) if length else b""
    return status, body, close


async def kannel_drive(ports, items, sink_counts, pids, sim, kdir, samples):
    """Sends every item through smsbox's sendsms with KANNEL_CONCURRENCY keep-alive
    connections; returns timings. Runs the DLR sink and the samplers alongside."""
    n = len(items)
    state = {"next": 0, "ok": 0, "bad": 0, "bad_sample": ""}
    sink_port = ports["sink"]

    async def client():
        reader = writer = None
        while state["next"] < n:
            i = state["next"]
            state["next"] += 1
            to, text = items[i]
            dlr = f"http://127.0.0.1:{sink_port}/dlr?type=%d&i={i}"
            path = ("/cgi-bin/sendsms?" + urllib.parse.urlencode(
                {"username": KANNEL_USER, "password": KANNEL_PASS, "from": "NUDGEL", "to": to,
                 "text": text, "dlr-mask": "31", "dlr-url": dlr}))
            for attempt in range(3):
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection("127.0.0.1",
                                                                       ports["sendsms"])
                    status, body, close = await http_request(reader, writer, path)
                    break
                except (ConnectionError, asyncio.IncompleteReadError):
                    writer = None
                    if attempt == 2:
                        raise
            if status in (200, 202) and body.startswith((b"0:", b"3:")):
                state["ok"] += 1
            else:
                state["bad"] += 1
                state["bad_sample"] = f"{status} {body[:100]!r}"
            if close:
                writer.close()
                writer = None
        if writer:
            writer.close()

    t0 = time.monotonic()
    clients = [asyncio.create_task(client()) for _ in range(KANNEL_CONCURRENCY)]
    out = {"t0": t0}
    spool = f"{kdir}/spool"
    last_sample = 0.0
    while True:
        await asyncio.sleep(0.05)
        now = time.monotonic()
        led = await asyncio.to_thread(sim.summary)
        if "t_ledger" not in out and led["totals"]["sms"] >= n:
            out["t_ledger"] = now
            out["cpu_at_ledger"] = sum(cpu_seconds(p) for p in pids)
        if "t_submitted" not in out and all(c.done() for c in clients):
            out["t_submitted"] = now
        if now - last_sample > 0.5:
            last_sample = now
            files = sum(len(fs) for _, _, fs in os.walk(spool))
            rows = int(await asyncio.to_thread(psql, "SELECT count(*) FROM dlr",
                                               pg_dsn_db("kannel")))
            samples["spool_files_max"] = max(samples.get("spool_files_max", 0), files)
            samples["dlr_rows_max"] = max(samples.get("dlr_rows_max", 0), rows)
        received = sum(sink_counts.values())
        if received != out.get("received"):
            # Kannel's work ends with the last report it delivers: CPU is read there, so
            # a wait for reports that never come does not add its idle CPU.
            out["received"] = received
            out["t_last"] = now
            out["cpu_last"] = [cpu_seconds(p) for p in pids]
        if ("t_ledger" in out and sink_counts.get(8, 0) >= n and sink_counts.get(1, 0)
                + sink_counts.get(2, 0) >= n):
            out["t_dlr"] = now
            break
        if now - t0 > 900 or ("t_ledger" in out and now - out["t_last"] > DLR_STALL_S):
            say(f"Kannel: no DLR for {DLR_STALL_S} s, {2 * n - received} of {2 * n} missing; "
                "stopping the wait")
            break
    for c in clients:
        if c.done() and c.exception():
            raise c.exception()
    out.update(state)
    return out


async def kannel_round_async(ctx, r, items, ports, pids, kdir):
    sink_counts = {}

    async def sink(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                m = re.search(r"[?&]type=(\d+)", line)
                t = int(m.group(1)) if m else -1
                sink_counts[t] = sink_counts.get(t, 0) + 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # smsbox closed the connection, or the round is over
        finally:
            writer.close()

    server = await asyncio.start_server(sink, "127.0.0.1", ports["sink"])
    samples = {}
    try:
        out = await kannel_drive(ports, items, sink_counts, pids, ctx["sim"], kdir, samples)
    finally:
        server.close()
    out["sink_counts"] = {str(k): v for k, v in sorted(sink_counts.items())}
    out.update(samples)
    return out


def run_kannel(ctx, r, n):
    sim, workdir = ctx["sim"], ctx["workdir"]
    kdir = f"{workdir}/kannel-r{r}"
    os.makedirs(f"{kdir}/spool", exist_ok=True)
    ports = {k: free_port() for k in ("admin", "box", "sendsms", "smsc", "sink")}
    conf = f"{kdir}/kannel.conf"
    with open(conf, "w") as f:
        f.write(kannel_conf(kdir, sim.port, ports, PG_DSN))
    kannel_db_prepare()
    sim.reset()
    sim.configure(sim__dlr__enabled=True, sim__dlr__delay_ms=DLR_DELAY_MS)
    tag = f"k{ctx['run']}r{r}"
    items = [(number(i), BODY.format(code=i, tag=tag)) for i in range(n)]
    bb = subprocess.Popen(["bearerbox", "-v", "3", conf], stdout=open(f"{kdir}/bearerbox.out", "w"),
                          stderr=subprocess.STDOUT, cwd=kdir)
    sb = None
    try:
        wait_until(lambda: bb.poll() is not None or port_open(ports["box"]), 30, 0.1,
                   "bearerbox")
        if bb.poll() is not None:
            raise RuntimeError(f"bearerbox exited {bb.returncode}; see {kdir}")
        sb = subprocess.Popen(["smsbox", "-v", "3", conf], stdout=open(f"{kdir}/smsbox.out", "w"),
                              stderr=subprocess.STDOUT, cwd=kdir)
        wait_until(lambda: sb.poll() is not None or port_open(ports["sendsms"]), 30, 0.1, "smsbox")
        if sb.poll() is not None:
            raise RuntimeError(f"smsbox exited {sb.returncode}; see {kdir}")
        time.sleep(1.0)  # smsbox connects to bearerbox, the SMSC comes online
        pids = [bb.pid, sb.pid]
        cpu0 = [cpu_seconds(p) for p in pids]
        svc0 = service_cpu()
        sim0 = cpu_seconds(sim.proc.pid)
        say(f"round {r} Kannel: {n} sendsms requests, dlr-mask=31, {KANNEL_CONCURRENCY} connections")
        out = asyncio.run(kannel_round_async(ctx, r, items, ports, pids, kdir))
        cpu1 = out.get("cpu_last") or [cpu_seconds(p) for p in pids]
        hwm = [status_kb(p, "VmHWM") for p in pids]
        svc = service_delta(svc0, service_cpu(), n)
        svc["simulator_cpu_ms_per_msg"] = round((cpu_seconds(sim.proc.pid) - sim0) / n * 1000, 4)
    finally:
        stop(sb)
        stop(bb)
    ledger = sim.summary()
    sim.configure(sim__dlr__enabled=False)
    if "t_ledger" not in out:
        raise RuntimeError(f"Kannel never reached {n} submissions at the simulator "
                           f"(ledger {ledger['totals']['sms']}); logs in {kdir}")
    submit_s = out["t_ledger"] - out["t0"]
    cpu_total = sum(cpu1) - sum(cpu0)
    lost = 2 * n - sum(out["sink_counts"].values())
    cpu_submit = out["cpu_at_ledger"] - sum(cpu0)
    res = {"n": n, "submit_s": round(submit_s, 3), "rate": round(n / submit_s, 1),
           "dlr_done_s": round(out["t_last"] - out["t0"], 3),
           "dlr_complete": "t_dlr" in out, "dlr_reports_missing": lost,
           "sim_dlr_delay_ms": DLR_DELAY_MS,
           "cpu_s": round(cpu_total, 3), "cpu_ms_per_msg": round(cpu_total / n * 1000, 4),
           "cpu_s_at_ledger": round(cpu_submit, 3),
           "cpu_ms_per_msg_at_ledger": round(cpu_submit / n * 1000, 4),
           "bearerbox_cpu_s": round(cpu1[0] - cpu0[0], 3), "smsbox_cpu_s": round(cpu1[1] - cpu0[1], 3),
           "bearerbox_hwm_kib": hwm[0], "smsbox_hwm_kib": hwm[1], "rss_hwm_kib": sum(hwm),
           "sendsms_ok": out["ok"], "sendsms_bad": out["bad"], "dlr_sink": out["sink_counts"],
           "ledger_sms": ledger["totals"]["sms"], "ledger_duplicates": ledger["duplicates"],
           "sim_dlr": ledger["totals"]["dlr"], "spool_files_max": out.get("spool_files_max", 0),
           "dlr_rows_max": out.get("dlr_rows_max", 0), "context": svc}
    if out["bad"]:
        res["bad_sample"] = out["bad_sample"]
    say(f"round {r} Kannel: {res['rate']:,.0f} msg/s ({submit_s:.2f}s to {n} at the carrier; "
        f"last DLR at {res['dlr_done_s']}s, {lost} missing), {res['cpu_ms_per_msg']:.3f} ms CPU/msg "
        f"(bearerbox {res['bearerbox_cpu_s']}s + smsbox {res['smsbox_cpu_s']}s), "
        f"RSS {hwm[0] / 1024:.1f}+{hwm[1] / 1024:.1f} MiB, DLRs at sink {res['dlr_sink']}, "
        f"spool files max {res['spool_files_max']}, pgsql dlr rows max {res['dlr_rows_max']}; "
        f"context {svc}")
    return res


# --------------------------------------------------------- latency, in flight --
UUID7_MS = ("('x' || substr(replace(message_id::text, '-', ''), 1, 12))::bit(48)::bigint")


def run_latency(ctx, rate, seconds):
    sim, workdir = ctx["sim"], ctx["workdir"]
    n = max(1000, int(rate * seconds))
    ns = f"bm{ctx['run']}lat."
    tenant = f"bm{ctx['run']}lat"
    make_topics(ns)
    jobs = f"{workdir}/latency.jsonl"
    write_jobs(jobs, n, tenant, ns, "lat")
    sim.configure(sim__dlr__enabled=False)
    sim.reset()
    w = Worker(ns, ctx["gw_file"], f"{workdir}/worker-latency.log")
    rss = []
    try:
        wait_until(lambda: not w.alive() or w.assigned(), 60, 0.1, "the worker's assignment")
        time.sleep(1.0)
        say(f"latency: {n} jobs at {rate:,.0f}/s (half our median peak) while the worker runs")
        t = time.monotonic()
        summary = enqueue(ns, jobs, rate=rate)
        enq_s = time.monotonic() - t
        wait_until(lambda: not w.alive() or sim.summary()["totals"]["sms"] >= n, 300, 0.2,
                   "the ledger to reach N")
        wait_until(lambda: not w.alive() or final_count(tenant) >= n, 300, 0.2, "N final receipts")
        rss.append(status_kb(w.pid, "VmHWM"))
        cpu = cpu_seconds(w.pid)
    finally:
        w.stop()
    row = psql("SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY lat), "
               "percentile_cont(0.99) WITHIN GROUP (ORDER BY lat), max(lat) FROM ("
               f"SELECT extract(epoch FROM coalesce(final_at, submitted_at)) * 1000 - {UUID7_MS} AS lat "
               f"FROM nudgel.message_receipts WHERE tenant_id LIKE '{tenant}-%' "
               "AND status = 'sent') s").split("|")
    # Latency by arrival fifth: flat means a fixed delay, rising means a backlog (the
    # worker did not keep up with the offered rate).
    fifths = psql("SELECT f, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lat)::numeric, 1) "
                  "FROM (SELECT lat, ntile(5) OVER (ORDER BY t0) AS f FROM ("
                  f"SELECT {UUID7_MS} AS t0, extract(epoch FROM coalesce(final_at, submitted_at)) "
                  f"* 1000 - {UUID7_MS} AS lat FROM nudgel.message_receipts "
                  f"WHERE tenant_id LIKE '{tenant}-%' AND status = 'sent') a) b "
                  "GROUP BY f ORDER BY f")
    res = {"p50_ms_by_arrival_fifth": [float(l.split("|")[1]) for l in fifths.splitlines()],
           "target_rate": round(rate, 1), "n": n, "achieved_enqueue_rate": round(n / enq_s, 1),
           "sent": int(row[0]), "p50_ms": round(float(row[1]), 2),
           "p99_ms": round(float(row[2]), 2), "max_ms": round(float(row[3]), 2),
           "worker_rss_hwm_kib": rss[0], "worker_cpu_s": round(cpu, 3)}
    try:
        res["enqueue_summary"] = json.loads(summary)
    except ValueError:
        pass
    say(f"latency: p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, max {res['max_ms']} ms "
        f"({res['sent']} sent, enqueued at {res['achieved_enqueue_rate']:,.0f}/s; p50 by arrival "
        f"fifth {res['p50_ms_by_arrival_fifth']})")
    return res


def run_inflight(ctx, cap=10000, latency_ms=5000, gateway_cap=None):
    """Holds the worker at messages.max_in_flight=@cap against a carrier that answers
    after @latency_ms, so every job is claimed and waiting for its gateway or
    submitted; reads VmRSS while the in-flight gauge sits at the cap.
    @gateway_cap: messages.gateway_max_in_flight (None: the default, 64 submissions
    per gateway, the rest wait in the worker's gateway lanes)."""
    sim, workdir = ctx["sim"], ctx["workdir"]
    n = cap + 2000
    ns = f"bm{ctx['run']}inf{gateway_cap or 0}."
    tenant = f"bm{ctx['run']}inf{gateway_cap or 0}"
    make_topics(ns)
    jobs = f"{workdir}/inflight.jsonl"
    write_jobs(jobs, n, tenant, ns, "inf")
    enqueue(ns, jobs)
    sim.reset()
    sim.configure(sim__infobip__latency_ms=latency_ms, sim__generic__latency_ms=latency_ms)
    # consumer.window (default 1000 per partition) would cap a 6-partition worker
    # below 6000 jobs in flight: it is raised with the process cap.
    sets = [f"messages.max_in_flight={cap}", f"consumer.window={cap}",
            "messages.drain_timeout_ms=3000"]
    if gateway_cap:
        sets.append(f"messages.gateway_max_in_flight={gateway_cap}")
    w = Worker(ns, ctx["gw_file"], f"{workdir}/worker-inflight-{gateway_cap or 0}.log", *sets)
    peak = {"in_flight": 0, "rss_kib": 0, "rss_kib_at_cap": 0, "samples_at_cap": 0}
    try:
        wait_until(lambda: not w.alive() or w.metrics_port(), 30, 0.1, "the metrics port")
        url = f"http://127.0.0.1:{w.metrics_port()}/metrics"
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and w.alive():
            with urllib.request.urlopen(url, timeout=5) as r:
                text = r.read().decode()
            m = re.search(r"^nudgel_messages_in_flight(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M)
            inflight = int(float(m.group(1))) if m else 0
            rss = status_kb(w.pid, "VmRSS")
            peak["in_flight"] = max(peak["in_flight"], inflight)
            peak["rss_kib"] = max(peak["rss_kib"], rss)
            if inflight >= cap:
                peak["samples_at_cap"] += 1
                peak["rss_kib_at_cap"] = max(peak["rss_kib_at_cap"], rss)
                if peak["samples_at_cap"] >= 8:
                    break
            time.sleep(0.25)
        peak["hwm_kib"] = status_kb(w.pid, "VmHWM")
        say(f"in flight (gateway cap {gateway_cap or 'default 64'}): peak gauge {peak['in_flight']}, VmRSS at the cap "
            f"{peak['rss_kib_at_cap'] / 1024:.1f} MiB, VmHWM {peak['hwm_kib'] / 1024:.1f} MiB "
            f"({peak['samples_at_cap']} samples at the cap)")
    finally:
        sim.configure(sim__infobip__latency_ms=0, sim__generic__latency_ms=0)
        w.stop()
    peak["cap"] = cap
    peak["carrier_latency_ms"] = latency_ms
    peak["gateway_max_in_flight"] = gateway_cap or 64
    return peak


# ------------------------------------------------------------------- report --
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def verdict(ok):
    return "met" if ok else "MISSED"


def main():
    n_ours = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    n_kannel = int(os.environ.get("NUDGEL_BENCH_KANNEL_N", str(max(500, n_ours // 4))))
    lat_seconds = float(os.environ.get("NUDGEL_BENCH_LATENCY_SECONDS", "15"))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    results_dir = os.path.join(REPO, "bench", "results")
    workdir = os.path.join(results_dir, f"messages-{stamp}")
    os.makedirs(workdir, exist_ok=True)
    ctx = {"run": str(int(time.time())), "workdir": workdir}
    say(f"work dir {workdir}")
    subprocess.run([BIN["admin"], "migrate"], check=True, capture_output=True, timeout=120)
    ctx["sim"] = sim = Sim(workdir)
    ctx["gw_file"] = f"{workdir}/gateways.json"
    gateways_file(sim, ctx["gw_file"])
    banner = subprocess.run(["bearerbox", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version `?([0-9][^' ]*)", banner)
    kannel_version = f"Kannel {m.group(1) if m else 'unknown'}"
    ours, kannel = [], []
    try:
        for r in range(1, rounds + 1):
            if r % 2:
                ours.append(run_ours(ctx, r, n_ours))
                kannel.append(run_kannel(ctx, r, n_kannel))
            else:
                kannel.append(run_kannel(ctx, r, n_kannel))
                ours.append(run_ours(ctx, r, n_ours))
        peak = med([o["rate"] for o in ours])
        latency = run_latency(ctx, peak / 2, lat_seconds)
        inflight = inflight_http = None
        if os.environ.get("NUDGEL_BENCH_SKIP_INFLIGHT") != "1":
            inflight = run_inflight(ctx)
            # Optionally the harsher variant: every job in flight also an open HTTP request.
            http_cap = int(os.environ.get("NUDGEL_BENCH_INFLIGHT_HTTP", "0"))
            if http_cap:
                inflight_http = run_inflight(ctx, latency_ms=5000, gateway_cap=http_cap)
    finally:
        sim.close()

    o_rate, k_rate = med([o["rate"] for o in ours]), med([k["rate"] for k in kannel])
    o_cpu, k_cpu = med([o["cpu_ms_per_msg"] for o in ours]), med([k["cpu_ms_per_msg"] for k in kannel])
    k_cpu_sub = med([k["cpu_ms_per_msg_at_ledger"] for k in kannel])
    rate_ratios = [o["rate"] / k["rate"] for o, k in zip(ours, kannel)]
    cpu_ratios = [o["cpu_ms_per_msg"] / k["cpu_ms_per_msg"] for o, k in zip(ours, kannel)]
    o_rss = max(o["rss_hwm_kib"] for o in ours)
    k_rss = max(k["rss_hwm_kib"] for k in kannel)
    res = {
        "benchmark": "messages", "time": stamp, "n_ours": n_ours, "n_kannel": n_kannel,
        "rounds": rounds, "kannel_version": kannel_version,
        "kannel_concurrency": KANNEL_CONCURRENCY, "partitions": PARTITIONS,
        "ours": ours, "kannel": kannel,
        "median": {"ours_rate": o_rate, "kannel_rate": k_rate,
                   "ours_cpu_ms_per_msg": o_cpu, "kannel_cpu_ms_per_msg": k_cpu,
                   "kannel_cpu_ms_per_msg_at_ledger": k_cpu_sub,
                   "throughput_ratio": round(med(rate_ratios), 2),
                   "cpu_ratio": round(med(cpu_ratios), 4)},
        "per_round_ratios": {"throughput": [round(x, 2) for x in rate_ratios],
                             "cpu": [round(x, 4) for x in cpu_ratios]},
        "latency": latency, "inflight": inflight, "inflight_http": inflight_http,
        "peak_rss_kib": {"ours_worker": o_rss, "kannel_bearerbox_plus_smsbox": k_rss},
        "targets": {"throughput_ratio_min": 10, "cpu_ratio_max": round(1 / 3, 4),
                    "p99_ms_max": 50, "rss_mib_max_at_10k_in_flight": 64},
    }
    tr, cr = res["median"]["throughput_ratio"], res["median"]["cpu_ratio"]
    inf_mib = inflight["rss_kib_at_cap"] / 1024 if inflight and inflight["samples_at_cap"] else None
    res["verdicts"] = {"throughput": verdict(tr >= 10), "cpu": verdict(cr <= 1 / 3),
                       "p99": verdict(latency["p99_ms"] <= 50),
                       "rss_10k": verdict(inf_mib is not None and inf_mib <= 64)
                       if inflight else "not run"}
    path = os.path.join(results_dir, f"messages-{stamp}.json")
    with open(path, "w") as f:
        json.dump(res, f, indent=2)

    w = 34
    lines = [
        "",
        f"messages end to end vs {kannel_version} — {rounds} round(s), medians; "
        f"ours N={n_ours:,}, Kannel N={n_kannel:,}",
        f"{'':{w}} {'nudgel-messages':>18} {'Kannel (bb+smsbox)':>20}",
        f"{'throughput, msg/s':{w}} {o_rate:>18,.0f} {k_rate:>20,.0f}",
        f"{'CPU ms per message':{w}} {o_cpu:>18.3f} {k_cpu:>20.3f}",
        f"{'  Kannel, to last submission only':{w}} {'':>18} {k_cpu_sub:>20.3f}",
        f"{'peak RSS (VmHWM), MiB':{w}} {o_rss / 1024:>18.1f} {k_rss / 1024:>20.1f}",
        f"{'throughput ratio ours/Kannel':{w}} {tr:>18.1f}x   target >= 10x: {res['verdicts']['throughput']}"
        f"  (rounds {', '.join(f'{x:.1f}' for x in rate_ratios)})",
        f"{'CPU/msg ratio ours/Kannel':{w}} {cr:>18.3f}    target <= 0.333: {res['verdicts']['cpu']}"
        f"  (rounds {', '.join(f'{x:.3f}' for x in cpu_ratios)})",
        f"{'enqueue→receipt at ' + format(latency['target_rate'], ',.0f') + '/s':{w}} "
        f"p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms (max {latency['max_ms']:.0f})"
        f"   target p99 <= 50 ms: {res['verdicts']['p99']}",
    ]
    if inflight:
        lines.append(f"{'worker RSS, 10 000 jobs in flight':{w}} "
                     + (f"{inf_mib:.1f} MiB (gauge peak {inflight['in_flight']})"
                        if inf_mib is not None else
                        f"cap not reached (gauge peak {inflight['in_flight']}, "
                        f"VmHWM {inflight['hwm_kib'] / 1024:.1f} MiB)")
                     + f"   target <= 64 MiB: {res['verdicts']['rss_10k']}")
    if inflight_http:
        lines.append(f"{'  same, ' + str(inflight_http['gateway_max_in_flight']) + ' HTTP per gateway':{w}} "
                     f"gauge peak {inflight_http['in_flight']}, VmHWM "
                     f"{inflight_http['hwm_kib'] / 1024:.1f} MiB")
    lines.append(f"result: {path}")
    print("\n".join(lines), flush=True)

    dat = path[:-5] + ".dat"
    with open(dat, "w") as f:
        f.write("# round ours_rate kannel_rate ours_cpu_ms kannel_cpu_ms\n")
        for i, (o, k) in enumerate(zip(ours, kannel), 1):
            f.write(f"{i} {o['rate']} {k['rate']} {o['cpu_ms_per_msg']} {k['cpu_ms_per_msg']}\n")
    if shutil.which("gnuplot"):
        png = path[:-5] + ".png"
        gp = f"""set terminal png size 1000,450
set output "{png}"
set multiplot layout 1,2 title "nudgel-messages vs {kannel_version} (ours N={n_ours}, Kannel N={n_kannel})"
set style data histogram
set style histogram clustered
set style fill solid 0.8
set boxwidth 0.9
set xlabel "round"
set logscale y
set title "throughput, messages/s (log)"
plot "{dat}" using 2:xtic(1) title "nudgel-messages", "" using 3 title "Kannel"
set title "CPU ms per message (log)"
plot "{dat}" using 4:xtic(1) title "nudgel-messages", "" using 5 title "Kannel bb+smsbox"
unset multiplot
"""
        subprocess.run(["gnuplot"], input=gp, text=True, check=False)
        say(f"plot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
