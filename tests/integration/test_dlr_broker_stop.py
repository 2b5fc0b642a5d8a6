"""nudgel-dlr while the Kafka broker is stopped for 10 s and the simulator keeps posting.

DESIGN §5: the receiver answers a callback 200 only after Kafka acknowledged every report of
it, else 503 so the carrier sends it again. The simulator (Africa's Talking to the dashboard
URL, Infobip to notifyUrl) posts reports before, during and after the outage and retries
every non-2xx answer with back-off. Afterwards:

- every report is on nudgel.carrier-dlr.v1 (none lost): each of the simulator's accepted
  messages has its report there;
- no 200 was given for a report Kafka did not take: every callback the simulator saw answered
  2xx has its report on the topic, the simulator gave up on none (dlr.failed 0), and the
  receiver counted as accepted (answered 200) no more reports than the topic holds;
- the outage was real: the receiver answered some callbacks 503 (the simulator retried).

It stops the stack's Kafka through `scripts/stack down|up kafka`, so it runs only against this
checkout's own stack (else it skips), restores the stack in a `finally`, and ctest runs it
alone (RUN_SERIAL in tests/CMakeLists.txt): never run it beside other tests.
"""
import json
import threading
import time
import uuid

import pytest

from dlr_harness import IB_PASSWORD, IB_USER, Receiver, make_topics
from messages_harness import Stack
from test_carrier_sim import Sim, wait_for

OUTAGE_S = 10
PER_DIALECT = 300


@pytest.fixture
def stack():
    s = Stack()
    if not s.is_under_test():
        pytest.skip("NUDGEL_KAFKA_BOOTSTRAP / NUDGEL_PG_DSN are not scripts/stack's own stack: "
                    "nothing of it is stopped")
    yield s
    s.restore()


def test_broker_stopped_while_reports_arrive(stack, tmp_path, run_id, topics_ready, bootstrap):
    ns = f"dlrstop{run_id}."
    make_topics(ns)
    rx = Receiver(tmp_path, ns, "dlr.ack_timeout_ms=2000")
    sim = Sim("sim.dlr.enabled=true", "sim.dlr.delay_ms=0", "sim.dlr.jitter_ms=100",
              "sim.dlr.retries=1000", "sim.dlr.retry_backoff_ms=200",
              "sim.dlr.retry_backoff_max_ms=2000", f"sim.at.dlr_url={rx.url('at-ke')}")
    ib_url = rx.url("infobip").replace("http://", f"http://{IB_USER}:{IB_PASSWORD}@")
    ib_ids = [str(uuid.uuid4()) for _ in range(PER_DIALECT)]
    at_ids = []
    errors = []

    def submit():
        """About 30 messages a second for 20 s, across the outage."""
        try:
            for i in range(PER_DIALECT):
                status, _, body = sim.at(f"+2547110{i:05d}", f"outage {run_id} {i}")
                assert status == 201, body
                at_ids.append(json.loads(body)["SMSMessageData"]["Recipients"][0]["messageId"])
                status, _, body = sim.infobip([{"to": f"2547110{i:05d}", "messageId": ib_ids[i]}],
                                              notifyUrl=ib_url)
                assert status == 200, body
                time.sleep(1 / 15)
        except Exception as e:  # noqa: BLE001 — reported by the main thread
            errors.append(e)

    try:
        t = threading.Thread(target=submit)
        t.start()
        wait_for(lambda: len(at_ids) >= 50, 60, "reports flowing before the outage")
        stack.down("kafka")
        wait_for(lambda: rx.readyz() == 503, 60, "the receiver not ready without Kafka")
        time.sleep(OUTAGE_S)  # the outage itself: reports keep coming while Kafka is gone
        stack.up("kafka")
        t.join(timeout=120)
        assert not errors, errors
        totals = wait_for(lambda: (lambda x: x if x["dlr_pending"] == 0 else None)(
            sim.ledger()["totals"]), 300, "every report taken")
        dlr = totals["dlr"]
        assert dlr["failed"] == 0 and dlr["dropped"] == 0, dlr
        assert dlr["sent"] == 2 * PER_DIALECT, dlr
        assert dlr["retried"] > 0, f"no callback was refused during the outage: {dlr}"

        records = rx.records(bootstrap)
        keys = {k for k, _, _, _ in records}
        assert set(at_ids) <= keys, f"{len(set(at_ids) - keys)} Africa's Talking report(s) lost"
        assert set(ib_ids) <= keys, f"{len(set(ib_ids) - keys)} Infobip report(s) lost"
        m = rx.metrics()
        accepted = sum(v for k, v in m.items() if k.startswith("nudgel_dlr_reports_accepted"))
        unavailable = sum(v for k, v in m.items()
                          if k.startswith("nudgel_dlr_reports_unavailable"))
        assert accepted == 2 * PER_DIALECT, m  # one 200 per report, each after its ack
        assert unavailable > 0, m
        assert len(records) >= accepted  # a 503'd report Kafka took late is a harmless extra
    finally:
        sim.stop()
        assert rx.stop() == 0, rx.log_tail()
