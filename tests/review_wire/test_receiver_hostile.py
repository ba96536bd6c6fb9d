"""Review of the wire merge (review-wire): messages that stop a platform receiver for every gateway.

Each test publishes ONE hostile message from a real MQTT client to a real mosquitto, then a valid
alarm from another gateway, and expects the alarm to be stored. These fail on main bb84831."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.platform import Receiver  # noqa: E402
from mosquitto import Mosquitto, wait_for  # noqa: E402


def alarm(gw, seq):
    return {"v": 1, "id": f"{gw}/{seq}", "seq": seq, "ts": "2025-06-01T08:00:00.000Z", "clock_synced": True,
            "boot": "b", "type": "alarm", "replay": False, "sensor": "water-1", "point": "level",
            "transition": "raised", "level": "red", "state": "active", "value": 3.2, "unit": "m"}


def batch(**kw):
    b = {"v": 2, "gw": "evil", "seq": 1, "to_seq": 1, "ts": "2025-06-01T08:00:00.000Z", "clock_synced": True,
         "boot": "b", "type": "telemetry", "replay": False, "readings": [[0, 0, "s", "p", "cm", 0, 0, 60, 1, 0, 1]]}
    return json.dumps(b | kw).encode()


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.close()


def _publish(broker, topic, payload):
    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        c.loop_stop()
        c.disconnect()


def _valid_alarm_after(broker, tmp_path, topic, payload):
    rx = Receiver(broker.host, broker.port, db=str(tmp_path / "p.sqlite")).start()
    try:
        _publish(broker, topic, payload)
        _publish(broker, "city/v1/gw-ok/event/alarm", json.dumps(alarm("gw-ok", 1)))
        wait_for(lambda: 1 in rx.seqs("gw-ok"), 10, what="the other gateway's alarm stored")
    finally:
        rx.stop(drain_s=0.5)


HOSTILE = {
    # dts_ms past year 9999: batch.iso_of_ms raises OverflowError (not ValueError) in Receiver.decode,
    # inside paho's on_message: paho re-raises it and its loop_start thread dies
    "batch_dts_overflow": ("city/v1/evil/event/telemetry", batch(readings=[[0, 10 ** 15, "s", "p", "cm", 0, 0, 60, 1, 0, 1]])),
    # 100 kB of '[': json.loads raises RecursionError (not ValueError): the same
    "deeply_nested_json": ("city/v1/evil/event/alarm", b"[" * 100_000),
    # a valid single event whose seq is >= 2**63: SqliteStore.write raises OverflowError (not
    # sqlite3.Error -> not StoreError); the writer retries the same merged batch forever
    "seq_over_int64_sqlite": ("city/v1/evil/event/telemetry", json.dumps(
        {"v": 1, "id": f"evil/{2 ** 63}", "seq": 2 ** 63, "ts": "2025-06-01T08:00:00.000Z", "clock_synced": True,
         "boot": "b", "type": "telemetry", "replay": False, "sensor": "s", "point": "p", "unit": "u",
         "quality": "good", "reason": "period", "period_s": 1, "count": 1, "bad": 0, "min": 1, "max": 1,
         "mean": 1, "last": 1}).encode()),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_one_hostile_message_does_not_stop_the_receiver_for_other_gateways(broker, tmp_path, name):
    topic, payload = HOSTILE[name]
    _valid_alarm_after(broker, tmp_path, topic, payload)


def test_a_batch_of_more_readings_than_a_gateway_ever_sends_is_refused():
    """The schema has no maxItems on `readings` (telemetry-batch.json): a 20,000-reading batch (860 kB)
    is accepted and costs ~5 s of jsonschema on paho's network thread (measured: 0.24 ms a reading);
    ~200k readings outlast the 30 s keepalive, the broker drops the receiver, and a persistent
    session gets the same message again: for ever. Senders never exceed batch.MAX_READINGS (100)."""
    from gateway.record import batch as wire

    rx = Receiver("127.0.0.1", 1, db=":memory:")
    n = wire.MAX_READINGS * 10
    payload = batch(seq=1, to_seq=n, readings=[[int(i > 0), 0, "s", "p", "cm", 0, 0, 60, 1, 0, 1] for i in range(n)])
    got = rx.decode("city/v1/evil/event/telemetry", payload)
    assert got.invalid and not got.events, f"{len(got.events)} readings accepted from one message"


@pytest.mark.parametrize("kw", [
    # two readings with the same seq and different values: the second is silently a "duplicate"
    {"readings": [[0, 0, "s", "p", "cm", 0, 0, 60, 1, 0, 1], [0, 0, "s", "p", "cm", 0, 0, 60, 1, 0, 99]]},
    # to_seq says 1, the readings run to 6
    {"to_seq": 1, "readings": [[0, 0, "s", "p", "cm", 0, 0, 60, 1, 0, 1], [5, 0, "s", "p", "cm", 0, 0, 60, 1, 0, 2]]},
    # the first reading's dseq is 7, not 0: its seq is 8, not the batch's seq 1
    {"readings": [[7, 9, "s", "p", "cm", 0, 0, 60, 1, 0, 1]]},
], ids=["dseq0_twice", "to_seq_mismatch", "first_dseq_not_0"])
def test_a_batch_whose_seqs_contradict_its_envelope_is_refused(kw):
    """telemetry-batch.json says dseq is 0 for the first reading and seqs step up to to_seq; the
    schema only has `minimum: 0` and nothing checks to_seq (receiver.decode_events, batch.expand)."""
    rx = Receiver("127.0.0.1", 1, db=":memory:")
    got = rx.decode("city/v1/evil/event/telemetry", batch(**kw))
    assert got.invalid, [(e["seq"], e["last"]) for e in got.events]
