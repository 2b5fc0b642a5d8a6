"""nudgel-dlr for integration tests: a gateways file with delivery-report settings, the
receiver on free loopback ports over an isolated set of topics (a namespace per test), and
helpers to post callbacks and read what was produced."""
import http.client
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid

from conftest import binary, kcat_consume, scrape_metrics

TOKENS = {"at-ke": "attok_" + uuid.uuid4().hex, "infobip": "ibtok_" + uuid.uuid4().hex,
          "gen": "gentok_" + uuid.uuid4().hex, "at-far": "fartok_" + uuid.uuid4().hex}
IB_USER, IB_PASSWORD = "infobip", "pw-" + uuid.uuid4().hex[:12]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_topics(ns, partitions=2):
    subprocess.run([binary("nudgel-admin"), "--set", f"topics.namespace={ns}",
                    "--set", f"topics.partitions={partitions}", "topics", "ensure"],
                   check=True, capture_output=True, timeout=120)


def gateways_file(path, sim_port=1, secondary=None):
    """at-ke (Africa's Talking), infobip (basic credentials), gen (generic) and at-far
    (Africa's Talking whose allow-list excludes 127.0.0.1); tokens from the environment,
    the password from a file. @secondary: {gateway: token} given as each one's
    secondary_token_file (a rotation's other token)."""
    pw = path.parent / "ib-password"
    pw.write_text(IB_PASSWORD + "\n")
    base = f"http://127.0.0.1:{sim_port}"
    doc = {"gateways": [
        {"name": "at-ke", "dialect": "africastalking", "base_url": f"{base}/at",
         "api_key_env": "NUDGEL_TEST_UNUSED_KEY", "username": "sandbox", "tps": 100,
         "dlr": {"token_env": "NUDGEL_TEST_DLR_TOKEN_AT"}},
        {"name": "infobip", "dialect": "infobip", "base_url": f"{base}/infobip",
         "api_key_env": "NUDGEL_TEST_UNUSED_KEY", "tps": 100,
         "dlr": {"token_env": "NUDGEL_TEST_DLR_TOKEN_IB", "basic_user": IB_USER,
                 "basic_password_file": str(pw)}},
        {"name": "gen", "dialect": "generic", "base_url": f"{base}/generic",
         "api_key_env": "NUDGEL_TEST_UNUSED_KEY", "tps": 100,
         "dlr": {"token_env": "NUDGEL_TEST_DLR_TOKEN_GEN"}},
        {"name": "at-far", "dialect": "africastalking", "base_url": f"{base}/at",
         "api_key_env": "NUDGEL_TEST_UNUSED_KEY", "username": "sandbox", "tps": 100,
         "dlr": {"token_env": "NUDGEL_TEST_DLR_TOKEN_FAR", "allow_cidrs": ["192.0.2.0/24"]}},
    ], "default_route": ["at-ke"]}
    for gw in doc["gateways"]:
        if gw["name"] in (secondary or {}):
            token_file = path.parent / f"{gw['name']}-secondary-token"
            token_file.write_text(secondary[gw["name"]] + "\n")
            gw["dlr"]["secondary_token_file"] = str(token_file)
    path.write_text(json.dumps(doc))
    return path


class Receiver:
    """nudgel-dlr on free ports, logs in a file."""

    def __init__(self, tmp_path, ns, *sets, secondary=None):
        self.ns = ns
        self.topic = f"{ns}nudgel.carrier-dlr.v1"
        self.port, self.metrics_port = free_port(), free_port()
        gw = gateways_file(tmp_path / "gateways.json", secondary=secondary)
        env = dict(os.environ, NUDGEL_TEST_DLR_TOKEN_AT=TOKENS["at-ke"],
                   NUDGEL_TEST_DLR_TOKEN_IB=TOKENS["infobip"],
                   NUDGEL_TEST_DLR_TOKEN_GEN=TOKENS["gen"],
                   NUDGEL_TEST_DLR_TOKEN_FAR=TOKENS["at-far"])
        args = [binary("nudgel-dlr"), "--set", f"topics.namespace={ns}",
                "--set", f"dlr.gateways_file={gw}", "--set", "dlr.listen_address=127.0.0.1",
                "--set", f"dlr.port={self.port}", "--set", f"metrics.port={self.metrics_port}"]
        for s in sets:
            args += ["--set", s]
        self.log_path = tmp_path / f"dlr-{self.port}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while self.readyz() != 200:
            assert self.proc.poll() is None, f"nudgel-dlr exited:\n{self.log_tail()}"
            assert time.monotonic() < deadline, f"nudgel-dlr never ready:\n{self.log_tail()}"
            time.sleep(0.1)

    def url(self, gateway, token=None):
        return f"http://127.0.0.1:{self.port}/v1/dlr/{gateway}/{token or TOKENS[gateway]}"

    def readyz(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/readyz",
                                        timeout=3) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return 0

    def post(self, gateway, body, content_type, token=None, auth=None, method="POST"):
        """(status, body text) of one callback."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": content_type}
        if auth:
            import base64
            headers["Authorization"] = "Basic " + base64.b64encode(
                f"{auth[0]}:{auth[1]}".encode()).decode()
        try:
            conn.request(method, f"/v1/dlr/{gateway}/{token or TOKENS[gateway]}",
                         body=body.encode() if isinstance(body, str) else body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def metrics(self):
        return scrape_metrics(self.metrics_port)

    def records(self, bootstrap):
        """Every record on the receiver's topic: (key, value dict, raw value, headers)."""
        out = []
        for r in kcat_consume(bootstrap, self.topic):
            out.append((r.get("key"), json.loads(r["payload"]), r["payload"], r))
        return out

    def log_tail(self, n=40):
        self.log.flush()
        return "\n".join(self.log_path.read_text().splitlines()[-n:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def infobip_result(message_id, group="DELIVERED", status_id=5, name="DELIVERED_TO_HANDSET",
                   error=None):
    r = {"bulkId": "bulk-1", "messageId": message_id, "to": "254711000001",
         "sentAt": "2026-01-02T03:04:05.000+0000", "doneAt": "2026-01-02T03:04:09.000+0000",
         "smsCount": 1, "mccMnc": "63902", "callbackData": message_id,
         "price": {"pricePerMessage": 0.8, "currency": "KES"},
         "status": {"groupId": {"PENDING": 1, "UNDELIVERABLE": 2, "DELIVERED": 3, "EXPIRED": 4,
                                "REJECTED": 5}[group],
                    "groupName": group, "id": status_id, "name": name, "description": "d"},
         "error": error or {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR",
                            "description": "No Error", "permanent": False}}
    return r
