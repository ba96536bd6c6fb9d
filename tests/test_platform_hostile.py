"""What the platform receiver does with a message it cannot decode: kept as invalid, logged, and
the stream goes on for every other gateway (the review-wire findings, tests/review_wire/)."""

from __future__ import annotations

import json

import pytest

from gateway.platform import Receiver
from gateway.record import batch as wire
from tests.mosquitto import Mosquitto, wait_for


def alarm(gw, seq):
    return {"v": 1, "id": f"{gw}/{seq}", "seq": seq, "ts": "2025-06-01T08:00:00.000Z", "clock_synced": True,
            "boot": "b", "type": "alarm", "replay": False, "sensor": "water-1", "point": "level",
            "transition": "raised", "level": "red", "state": "active", "value": 3.2, "unit": "m"}


def batch(**kw):
    """A valid one-reading batch from gateway `evil`, with `kw` replacing envelope fields."""
    b = {"v": 2, "gw": "evil", "seq": 1, "to_seq": 1, "ts": "2025-06-01T08:00:00.000Z", "clock_synced": True,
         "boot": "b", "type": "telemetry", "replay": False, "readings": [[0, 0, "s", "p", "cm", 0, 0, 60, 1, 0, 1]]}
    return json.dumps(b | kw).encode()


def _publish(broker, topic, payload, qos=1):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=qos).wait_for_publish(5)
    finally:
        c.loop_stop()
        c.disconnect()


def test_whatever_decode_raises_is_an_invalid_message_and_paho_goes_on(tmp_path, caplog):
    """A bug in decode (here: any exception at all) must not reach paho: paho 2.x re-raises an
    exception from on_message and its network thread ends, for every gateway."""
    broker = Mosquitto(tmp_path / "broker").start()
    rx = Receiver(broker.host, broker.port, db=str(tmp_path / "p.sqlite"))
    real = rx.decode

    def decode(topic, payload):
        if "/evil/" in topic:
            raise RuntimeError("a bug in decode")
        return real(topic, payload)

    rx.decode = decode
    rx.start()
    try:
        _publish(broker, "city/v1/evil/event/alarm", json.dumps(alarm("evil", 1)))
        _publish(broker, "city/v1/gw-ok/event/alarm", json.dumps(alarm("gw-ok", 1)))
        wait_for(lambda: 1 in rx.seqs("gw-ok"), 10, what="the other gateway's alarm stored")
        wait_for(lambda: rx.invalid, 10, what="the evil message kept as invalid")
        assert rx.invalid == [("city/v1/evil/event/alarm", "cannot decode: RuntimeError: a bug in decode")]
        assert rx.store.invalid_count() == 1
        assert "cannot decode a message on city/v1/evil/event/alarm" in caplog.text
    finally:
        rx.stop(drain_s=0.5)
        broker.close()


@pytest.mark.parametrize("kw, error", [
    ({"readings": [[0, 10 ** 15, "s", "p", "cm", 0, 0, 60, 1, 0, 1]]}, "outside the years 1..9999"),
    ({"readings": [[0, -10 ** 15, "s", "p", "cm", 0, 0, 60, 1, 0, 1]]}, "outside the years 1..9999"),
    ({"ts": "9999-12-31T23:59:59.999Z", "seq": 1, "to_seq": 2,
      "readings": [[0, 0, "s", "p", "cm", 0, 0, 60, 1, 0, 1], [1, 1, "s", "p", "cm", 0, 0, 60, 1, 0, 1]]},
     "outside the years 1..9999"),
    ({"seq": wire.MAX_SEQ, "to_seq": wire.MAX_SEQ,
      "readings": [[0, 0, "s", "p", "cm", 0, 0, 60, 1, 0, 1], [1, 0, "s", "p", "cm", 0, 0, 60, 1, 0, 1]]},
     "past 9223372036854775807"),
], ids=["dts_past_9999", "dts_before_year_1", "ts_steps_past_9999", "seq_steps_past_int64"])
def test_expand_refuses_out_of_range_readings_with_value_error(kw, error):
    payload = json.loads(batch(**kw))
    with pytest.raises(ValueError, match=error):
        wire.expand(payload)
    got = Receiver("127.0.0.1", 1, db=":memory:").decode("city/v1/evil/event/telemetry", json.dumps(payload).encode())
    assert not got.events and error in got.invalid[0][1]


@pytest.mark.parametrize("field", ["seq", "to_seq"])
def test_a_seq_past_int64_is_refused_by_the_contract(field):
    rx = Receiver("127.0.0.1", 1, db=":memory:")
    single = {**alarm("evil", 1), "id": f"evil/{2 ** 63}", "seq": 2 ** 63}
    assert rx.decode("city/v1/evil/event/alarm", json.dumps(single).encode()).invalid
    got = rx.decode("city/v1/evil/event/telemetry", batch(**{field: 2 ** 63}))
    assert got.invalid and "9223372036854775807" in got.invalid[0][1]


def test_the_contract_and_the_sender_agree_on_the_readings_of_a_batch():
    """telemetry-batch.json's maxItems is what the gateway's batches never exceed (batch.MAX_READINGS):
    change one, change both."""
    from pathlib import Path

    schema = json.loads((Path(wire.__file__).parents[1] / "contract" / "telemetry-batch.json").read_text())
    assert schema["properties"]["readings"]["maxItems"] == wire.MAX_READINGS
    n = wire.MAX_READINGS
    full = batch(seq=1, to_seq=n, readings=[[int(i > 0), 0, "s", "p", "cm", 0, 0, 60, 1, 0, 1] for i in range(n)])
    assert len(Receiver("127.0.0.1", 1, db=":memory:").decode("city/v1/evil/event/telemetry", full).events) == n
    with pytest.raises(ValueError, match="101 readings"):
        wire.expand(json.loads(batch(seq=1, to_seq=n + 1, readings=[
            [int(i > 0), 0, "s", "p", "cm", 0, 0, 60, 1, 0, 1] for i in range(n + 1)])))


class _HeldStore:
    """A real SQLite store whose writes wait until the test lets them go (a slow PostgreSQL)."""

    def __init__(self):
        import threading

        from gateway.platform.stores import open_store

        self.real = open_store(None)
        self.go = threading.Event()

    def write(self, batch):
        self.go.wait(30)
        return self.real.write(batch)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_qos0_messages_past_the_inbox_bound_are_dropped_and_counted_qos1_never(tmp_path, caplog):
    """QoS 0 publishers are not held back by Receive Maximum: with the store stuck, the inbox used to
    grow without bound. Past `inbox_max` uncommitted messages a QoS 0 one is dropped (counted,
    logged); QoS 1 ones are still taken (the broker stops at Receive Maximum by itself)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    broker = Mosquitto(tmp_path / "broker").start()
    store = _HeldStore()
    rx = Receiver(broker.host, broker.port, store=store, inbox_max=5).start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        for seq in range(1, 21):
            pub.publish("city/v1/gw-0/event/alarm", json.dumps(alarm("gw-0", seq)), qos=0).wait_for_publish(5)
        wait_for(lambda: rx._pending + rx.dropped_qos0 == 20, 10, what="20 QoS 0 messages taken or dropped")
        assert (rx._pending, rx.dropped_qos0) == (5, 15)
        for seq in range(1, 4):
            pub.publish("city/v1/gw-1/event/alarm", json.dumps(alarm("gw-1", seq)), qos=1).wait_for_publish(5)
        wait_for(lambda: rx._pending == 8, 10, what="the QoS 1 messages taken past the bound")
        store.go.set()
        wait_for(lambda: len(rx.seqs("gw-0")) == 5 and rx.seqs("gw-1") == {1, 2, 3}, 10, what="what was taken stored")
        assert rx.seqs("gw-0") == {1, 2, 3, 4, 5} and rx.dropped_qos0 == 15
        assert "QoS 0 message on city/v1/gw-0/event/alarm dropped (1 dropped so far)" in caplog.text
    finally:
        store.go.set()
        pub.loop_stop()
        pub.disconnect()
        rx.stop(drain_s=2)
        broker.close()


def test_an_oversized_batch_is_refused_before_the_schema_with_a_short_reason():
    """jsonschema goes on through every reading after maxItems failed and quotes the whole array in
    its message: an 860 kB batch cost ~1.9 s on paho's thread and an 860 kB error line. The length is
    checked first."""
    n = 20_000
    payload = batch(seq=1, to_seq=n, readings=[[int(i > 0), 0, "s", "p", "cm", 0, 0, 60, 1, 0, 1] for i in range(n)])
    got = Receiver("127.0.0.1", 1, db=":memory:").decode("city/v1/evil/event/telemetry", payload)
    assert not got.events and got.invalid[0][1] == f"readings: {n} in one batch (at most {wire.MAX_READINGS})"


def test_a_schema_error_quoting_a_huge_value_is_cut():
    huge = {**alarm("evil", 1), "sensor": 7, "point": ["x" * 100_000]}
    got = Receiver("127.0.0.1", 1, db=":memory:").decode("city/v1/evil/event/alarm", json.dumps(huge).encode())
    error = got.invalid[0][1]
    assert len(error) < 2100 and error.endswith(" characters)"), error[:200]
