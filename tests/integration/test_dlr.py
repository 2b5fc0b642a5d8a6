"""nudgel-dlr against the real Kafka and the carrier simulator, over loopback.

- Refusals: a wrong token, an unknown gateway, a source outside the gateway's allow-list,
  missing basic credentials, a malformed body (400 with its reason): nothing is produced.
- A token rotation: a gateway's secondary token is admitted too (and counted), a third is not.
- An Infobip callback of 100 reports: 200, and 100 records on nudgel.carrier-dlr.v1 keyed by
  the normalised message id, valid against schemas/carrier.dlr.v1.schema.json (checked with
  Python's jsonschema, independent of our encoder).
- The simulator posting reports in every dialect (Africa's Talking form to the dashboard URL,
  Infobip to notifyUrl, generic to callback_url) with a mix of delivered, failed and none,
  duplicates and jitter: every report it sent is on the topic, each answered 200 once.

Each test has its own topics (topics.namespace). The broker-stop test is in
test_dlr_broker_stop.py (it stops the shared Kafka: run alone).
"""
import json
import os
import subprocess
import urllib.parse
import uuid

import pytest

from conftest import binary, load_schema
from dlr_harness import (IB_PASSWORD, IB_USER, TOKENS, Receiver, gateways_file, infobip_result,
                         make_topics)
from test_carrier_sim import Sim, wait_for

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


@pytest.fixture
def ns(run_id, topics_ready):
    name = f"dlr{run_id}."
    make_topics(name)
    return name


@pytest.fixture
def receiver(tmp_path, ns):
    r = Receiver(tmp_path, ns)
    yield r
    assert r.stop() == 0, r.log_tail()


def test_refused_callbacks_produce_nothing(receiver, bootstrap):
    at_ok = "id=ATXid_marker&status=Success&phoneNumber=%2B254711000001&networkCode=63902"
    # a wrong token, a token of another gateway, an unknown gateway: no detail
    assert receiver.post("at-ke", at_ok, FORM, token="attok_" + "0" * 32) == (401,
                                                                             "unauthorized\n")
    assert receiver.post("at-ke", at_ok, FORM, token=TOKENS["gen"])[0] == 401
    assert receiver.post("nowhere", at_ok, FORM, token=TOKENS["at-ke"]) == (404, "not found\n")
    # a gateway that takes no reports from 127.0.0.1 (allow_cidrs 192.0.2.0/24)
    assert receiver.post("at-far", at_ok, FORM) == (403, "forbidden\n")
    # Infobip's basic credentials: missing, wrong
    ib = json.dumps({"results": [infobip_result("m-1")]})
    assert receiver.post("infobip", ib, JSON)[0] == 401
    assert receiver.post("infobip", ib, JSON, auth=(IB_USER, "wrong"))[0] == 401
    # malformed bodies: 400 with the reason, nothing of them produced
    status, text = receiver.post("at-ke", "status=Success", FORM)
    assert (status, text) == (400, "malformed: id: missing\n")
    bad_batch = {"results": [infobip_result("m-ok"), {"messageId": "m-bad"}]}
    status, text = receiver.post("infobip", json.dumps(bad_batch), JSON,
                                 auth=(IB_USER, IB_PASSWORD))
    assert status == 400 and "results[1].status: missing" in text
    assert receiver.post("gen", "{not json", JSON)[0] == 400
    assert receiver.post("at-ke", "x" * 300_000, FORM)[0] == 413
    assert receiver.post("at-ke", "", FORM, method="GET")[0] == 405
    # then one good report: once it is acknowledged, it is all the topic holds
    assert receiver.post("at-ke", at_ok, FORM) == (200, "ok\n")
    records = receiver.records(bootstrap)
    assert [(k, v["gateway"], v["status"]) for k, v, _, _ in records] == \
        [("ATXid_marker", "at-ke", "delivered")]
    m = receiver.metrics()
    assert m['nudgel_dlr_requests_refused_total{reason="token"}'] == 2
    assert m['nudgel_dlr_requests_refused_total{reason="not_found"}'] == 1
    assert m['nudgel_dlr_requests_refused_total{reason="source"}'] == 1
    assert m['nudgel_dlr_requests_refused_total{reason="basic"}'] == 2
    assert m['nudgel_dlr_requests_malformed_total{gateway="infobip"}'] == 1
    assert m['nudgel_dlr_reports_accepted_total{gateway="at-ke"}'] == 1
    # the token never reaches the log
    assert TOKENS["at-ke"] not in receiver.log_tail(1000)


def test_a_token_rotation_accepts_both_tokens(tmp_path, ns, bootstrap):
    """dlr.secondary_token_file: during a rotation the other token is admitted too (and
    counted), any third token is still refused; neither token reaches the log."""
    new_token = "attok2_" + uuid.uuid4().hex
    rx = Receiver(tmp_path, ns, secondary={"at-ke": new_token})
    try:
        report = "id=ATXid_{}&status=Success&phoneNumber=%2B254711000001&networkCode=63902"
        assert rx.post("at-ke", report.format("old"), FORM) == (200, "ok\n")
        assert rx.post("at-ke", report.format("new"), FORM, token=new_token) == (200, "ok\n")
        assert rx.post("at-ke", report.format("x"), FORM, token="attok_" + "1" * 32)[0] == 401
        # A gateway's secondary token is its own: another gateway refuses it.
        assert rx.post("gen", "{}", JSON, token=new_token)[0] == 401
        records = rx.records(bootstrap)
        assert sorted(k for k, _, _, _ in records) == ["ATXid_new", "ATXid_old"]
        m = rx.metrics()
        assert m['nudgel_dlr_secondary_token_requests_total{gateway="at-ke"}'] == 1
        assert m['nudgel_dlr_secondary_token_requests_total{gateway="infobip"}'] == 0
        assert m['nudgel_dlr_requests_refused_total{reason="token"}'] == 2
        log = rx.log_tail(1000)
        assert new_token not in log and TOKENS["at-ke"] not in log
    finally:
        assert rx.stop() == 0, rx.log_tail()


def test_a_bad_secondary_token_is_named_at_start(tmp_path, ns):
    check = subprocess.run(
        [binary("nudgel-dlr"), "--set", f"dlr.gateways_file="
         f"{gateways_file(tmp_path / 'gw.json', secondary={'gen': 'short'})}", "--check-config"],
        env=dict(os.environ, NUDGEL_TEST_DLR_TOKEN_AT=TOKENS["at-ke"],
                 NUDGEL_TEST_DLR_TOKEN_IB=TOKENS["infobip"],
                 NUDGEL_TEST_DLR_TOKEN_GEN=TOKENS["gen"],
                 NUDGEL_TEST_DLR_TOKEN_FAR=TOKENS["at-far"]),
        capture_output=True, text=True, timeout=60)
    assert check.returncode == 2, check.stdout + check.stderr
    assert "gen: dlr.secondary_token: must be 16 to 256 bytes" in check.stderr
    assert "short" not in check.stderr


def test_infobip_batch_of_100(receiver, bootstrap):
    validator = load_schema("carrier.dlr.v1.schema.json")
    ids = [str(uuid.uuid4()).upper() for _ in range(100)]  # Infobip may change the case
    groups = [("DELIVERED", 5, "DELIVERED_TO_HANDSET"), ("UNDELIVERABLE", 9,
              "UNDELIVERABLE_NOT_DELIVERED"), ("EXPIRED", 15, "EXPIRED_EXPIRED"),
              ("REJECTED", 6, "REJECTED_NETWORK"), ("DELIVERED", 2, "DELIVERED_TO_OPERATOR")]
    results = [infobip_result(mid, *groups[i % len(groups)]) for i, mid in enumerate(ids)]
    status, text = receiver.post("infobip", json.dumps({"results": results}), JSON,
                                 auth=(IB_USER, IB_PASSWORD))
    assert (status, text) == (200, "ok\n")
    records = receiver.records(bootstrap)
    assert len(records) == 100
    want = {"DELIVERED_TO_HANDSET": "delivered", "UNDELIVERABLE_NOT_DELIVERED": "undelivered",
            "EXPIRED_EXPIRED": "expired", "REJECTED_NETWORK": "rejected",
            "DELIVERED_TO_OPERATOR": "sent"}
    for key, value, raw, rec in records:
        errors = sorted(e.message for e in validator.iter_errors(json.loads(raw)))
        assert not errors, f"{raw}: {errors}"
        assert key == value["gateway_message_id"] == value["message_id"]
        assert key == key.lower()
        assert value["status"] == want[value["raw_status"]]
        assert value["network_code"] == "63902"
        assert value["cost"] == {"amount": "0.8", "currency": "KES"}
        assert value["done_at"] == "2026-01-02T03:04:09.000Z"
        headers = rec.get("headers") or []
        assert "nudgel-schema" in headers and "carrier.dlr/v1" in headers
    assert {k for k, _, _, _ in records} == {i.lower() for i in ids}
    assert receiver.metrics()['nudgel_dlr_reports_accepted_total{gateway="infobip"}'] == 100


def test_simulator_reports_in_every_dialect(receiver, bootstrap):
    """Delivered 70%, failed 20%, none 10%, 20% sent twice, jitter reorders them."""
    validator = load_schema("carrier.dlr.v1.schema.json")
    sim = Sim("sim.dlr.enabled=true", "sim.dlr.delay_ms=0", "sim.dlr.jitter_ms=200",
              "sim.dlr.failure_permille=200", "sim.dlr.none_permille=100",
              "sim.dlr.duplicate_permille=200", f"sim.at.dlr_url={receiver.url('at-ke')}",
              f"sim.generic.dlr_url={receiver.url('gen')}")
    try:
        per_dialect = 40
        ib_url = receiver.url("infobip").replace("http://", f"http://{IB_USER}:{IB_PASSWORD}@")
        for i in range(per_dialect):
            assert sim.at(f"+2547110{i:05d}", f"dlr at {i}")[0] == 201
            assert sim.infobip([{"to": f"2547110{i:05d}", "messageId": str(uuid.uuid4())}],
                               notifyUrl=ib_url, notifyContentType=JSON)[0] == 200
            assert sim.generic(f"+2567720{i:05d}", f"dlr gen {i}",
                               client_ref=str(uuid.uuid4()))[0] in (200, 201, 202)
        totals = wait_for(lambda: (lambda t: t if t["dlr_pending"] == 0 else None)(
            sim.ledger()["totals"]), 120, "the simulator's reports")
        dlr = totals["dlr"]
        assert dlr["failed"] == 0 and dlr["dropped"] == 0, dlr
        assert dlr["withheld"] + dlr["queued"] - dlr["duplicated"] == 3 * per_dialect, dlr
        assert dlr["sent"] == dlr["queued"], dlr
        records = receiver.records(bootstrap)
        # every report the simulator had answered 200 is on the topic, once per callback
        assert len(records) == dlr["sent"]
        keys = {k for k, _, _, _ in records}
        assert len(keys) == 3 * per_dialect - dlr["withheld"]
        for key, value, raw, _ in records:
            errors = sorted(e.message for e in validator.iter_errors(json.loads(raw)))
            assert not errors, f"{raw}: {errors}"
            assert value["status"] in ("delivered", "undelivered"), raw
            assert value["gateway"] in ("at-ke", "infobip", "gen")
            if value["gateway"] != "at-ke":  # Infobip and generic echo our id
                assert "message_id" in value, raw
            if value["status"] == "undelivered":
                assert value["error"]["code"], raw
    finally:
        assert sim.stop() == 0, sim.stderr


def test_form_fields_are_normalised(receiver, bootstrap):
    """Africa's Talking: padded ids trimmed (case kept), every documented field read."""
    body = urllib.parse.urlencode({"id": "  ATXid_MiXeD42 ", "status": "Failed",
                                   "phoneNumber": "+254711000001", "networkCode": "63902",
                                   "failureReason": "UserInBlackList", "retryCount": "2"})
    assert receiver.post("at-ke", body, FORM) == (200, "ok\n")
    [(key, value, _, _)] = receiver.records(bootstrap)
    assert key == "ATXid_MiXeD42"
    assert value["status"] == "undelivered" and value["raw_status"] == "Failed"
    assert value["error"] == {"code": "UserInBlackList"}
    assert value["to"] == "+254711000001" and value["dialect"] == "africastalking"
