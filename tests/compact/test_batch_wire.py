"""Issue 14 item 6, telemetry on the wire: many readings per MQTT message under one envelope (contract 2,
gateway/contract/telemetry-batch.json), each reading with its own seq; alarms stay single and first.
The Sender's batching and its PUBACK bookkeeping, the batch's size, and the reference receiver's decode
(batches and the single form) against a real mosquitto."""

import json

import pytest

from gateway.config.model import Uplink as UplinkConfig
from gateway.platform import Receiver
from gateway.platform.receiver import decode_events
from gateway.platform.schemas import Contract
from gateway.record import Event, Outbox, batch, envelope
from gateway.record.outbox import Pending
from gateway.sync import Uplink
from gateway.sync.pacing import TokenBucket
from gateway.sync.sender import Sender
from tests.mosquitto import Mosquitto, wait_for

GW = "bench-50"
BOOT = "6f1c0d1e-8a43-4c1b-9f8e-2d1b5c7a9e10"
TOPIC = f"city/v1/{GW}/event/telemetry"


def still(i=0, v=21.4):
    return {"sensor": f"w{i + 1}", "point": "level", "unit": "cm", "quality": "good", "reason": "period",
            "period_s": 60.001, "count": 60, "bad": 0, "min": v, "max": v, "mean": v, "last": v}


def alarm():
    return {"alarm": "w1.level#1", "rule": "w1.level", "sensor": "w1", "point": "level", "transition": "raised",
            "level": "red", "previous_level": None, "value": 41.0, "unit": "cm", "state": "active"}


def publish_packet_bytes(topic: str, payload: bytes, v5: bool = True) -> int:
    """The whole MQTT PUBLISH packet at QoS 1: fixed header (1 byte + remaining length varint), topic
    (2-byte length + name), packet id (2), properties length (1, MQTT 5, none set) and the payload."""
    remaining = 2 + len(topic.encode()) + 2 + (1 if v5 else 0) + len(payload)
    varint = 1 if remaining < 128 else 2 if remaining < 16384 else 3 if remaining < 2097152 else 4
    return 1 + varint + remaining


@pytest.fixture
def contract():
    return Contract()


def test_a_batch_expands_to_exactly_the_single_events_it_replaces(tmp_path, contract):
    ob = Outbox(tmp_path / "o.db", GW, clock_synced=lambda: True, boot=BOOT)
    fields = [still(i) for i in range(3)] + [still(3) | {"reason": "deadband", "min": 20.0, "mean": 20.7}]
    ob.add("alarm", alarm(), ts=1_750_000_000.0)  # seq 1: not in the batch, so the batch's seqs have a hole
    ob.add_many([Event("telemetry", f, 1_750_000_000.5 + i * 0.3337) for i, f in enumerate(fields)])
    ob.add("telemetry", still(9), ts=1_750_000_009.9)
    rows = [r for r in ob.live(1, 100) if r.type == "telemetry"]
    payload = json.loads(batch.build(rows, ob.context, replay=True))
    assert not contract.errors("telemetry-batch", payload)
    assert (payload["v"], payload["seq"], payload["to_seq"], payload["replay"]) == (2, 2, 6, True)
    got = batch.expand(payload)
    want = [json.loads(envelope.as_replay(ob.envelope_of(r))) for r in rows]
    assert got == want
    for ev in got:
        assert not contract.errors("telemetry", ev)


def test_a_reading_costs_at_most_60_bytes_of_publish_packet_at_50_sensors(tmp_path):
    """ThingsBoard's gateway: 59.6 bytes a reading; ours was ~345 (one message per reading)."""
    ob = Outbox(tmp_path / "o.db", GW, boot=BOOT)
    ob.add_many([Event("telemetry", still(i, 10.0 + i % 20)) for i in range(50)])
    rows = ob.live(1, 100)
    single = publish_packet_bytes(TOPIC, ob.envelope_of(rows[0]).encode())
    packet = publish_packet_bytes(TOPIC, batch.build(rows, ob.context, False).encode())
    assert single > 300
    assert packet / 50 <= 60, packet / 50


def test_the_sender_batches_telemetry_and_keeps_alarms_single_and_first(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW, boot=BOOT)
    ob.add_many([Event("telemetry", still(i)) for i in range(130)])
    ob.add("alarm", alarm())
    sender = Sender(ob, 20, TokenBucket(1e9), 1 << 20)
    sender.start_session(1, None)
    msgs = sender.next_messages()
    assert [len(rows) for rows, _ in msgs] == [1, batch.MAX_READINGS, 130 - batch.MAX_READINGS]
    assert msgs[0][0][0].type == "alarm" and not msgs[0][1]
    for mid, (rows, replay) in enumerate(msgs, 1):
        sender.sent(mid, rows, replay)
    assert sender.counts["messages"] == 3 and sender.counts["published"] == 131
    assert sender.puback(2, None) == []
    assert sender.take_acked() == [r.seq for r in msgs[1][0]]


def test_a_lost_batch_is_batched_again_and_taken_apart_only_when_lost_twice(tmp_path):
    """A batch in flight when the link drops comes again whole (sent a reading per message, 20 batches
    in flight were 2,000 round trips before the next alarm: review of the wire merge); lost a second
    time in flight, its readings prove themselves alone, so a message the broker kills the connection
    over still shows itself."""
    ob = Outbox(tmp_path / "o.db", GW, boot=BOOT)
    ob.add_many([Event("telemetry", still(i)) for i in range(5)])
    sender = Sender(ob, 20, TokenBucket(1e9), 1 << 20)
    sender.start_session(1, None)
    (rows, replay), = sender.next_messages()
    sender.sent(1, rows, replay)
    assert sender.session_lost() == []  # five rows in flight: none is guilty yet
    sender.start_session(ob.next_seq, None)
    (rows, replay), = sender.next_messages()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5] and replay  # the same batch, whole
    sender.sent(2, rows, replay)
    assert sender.session_lost() == []  # lost again with it in flight
    sender.start_session(ob.next_seq, None)
    again = []
    for mid in range(10, 20):
        out = sender.next_messages()
        if not out:
            break
        assert len(out) == 1 and len(out[0][0]) == 1  # suspects alone
        sender.sent(mid, out[0][0], True)
        again.append(out[0][0][0].seq)
        sender.puback(mid, None)
    assert again == [1, 2, 3, 4, 5]


def test_a_batch_refused_as_too_large_is_split_not_failed(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW, boot=BOOT)
    ob.add_many([Event("telemetry", still(i)) for i in range(3)])
    sender = Sender(ob, 20, TokenBucket(1e9), 1 << 20)
    sender.start_session(1, None)
    (rows, _), = sender.next_messages()
    sender.sent(7, rows, False)
    assert sender.puback(7, 0x95) == []
    singles = []
    for mid in range(8, 12):
        out = sender.next_messages()
        if not out:
            break
        singles.append(len(out[0][0]))
        sender.sent(mid, out[0][0], True)
        poison = sender.puback(mid, 0x95)
        assert [r.seq for r, _ in poison] == [out[0][0][0].seq]  # alone, it is the guilty one
    assert singles == [1, 1, 1]


def test_backlog_batches_are_paced_by_the_bucket_as_whole_batches(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW, boot=BOOT)
    ob.add_many([Event("telemetry", still(i)) for i in range(250)])
    now = [0.0]
    bucket = TokenBucket(100.0, burst=100.0, clock=lambda: now[0])
    sender = Sender(ob, 20, bucket, 1 << 20)
    sender.start_session(ob.next_seq, None)  # everything is backlog
    first = sender.next_messages()
    assert [len(r) for r, _ in first] == [100] and first[0][1] is True
    assert sender.next_messages() == []  # the bucket is empty: no half batch of crumbs
    now[0] += 1.0
    assert [len(r) for r, _ in sender.next_messages()] == [100]


def test_the_receiver_decodes_batches_and_the_single_form(contract):
    single = json.loads(envelope.build(GW, 7, 1_750_000_000.0, True, BOOT, "telemetry", still()))
    assert decode_events(contract, GW, "telemetry", single) == [single]
    b = {"v": 2, "gw": GW, "seq": 8, "to_seq": 9, "ts": "2025-06-15T15:06:40.000Z", "clock_synced": True,
         "boot": BOOT, "type": "telemetry", "replay": False,
         "readings": [[0, 0, "w1", "level", "cm", 0, 0, 60.0, 60, 0, 21.4], [1, 5, "w2", "level", "cm", 0, 1, 3.5, 3, 0,
                                                                             22.0, 21.0, 22.0, 21.5]]}
    evs = decode_events(contract, GW, "telemetry", b)
    assert [(e["id"], e["ts"], e["min"], e["mean"]) for e in evs] == [
        (f"{GW}/8", "2025-06-15T15:06:40.000Z", 21.4, 21.4), (f"{GW}/9", "2025-06-15T15:06:40.005Z", 21.0, 21.5)]
    with pytest.raises(ValueError, match="is not gateway"):
        decode_events(contract, "other-gw", "telemetry", b)
    with pytest.raises(ValueError):
        # min without max and mean: not a reading
        decode_events(contract, GW, "telemetry", b | {"readings": [[0, 0, "w1", "level", "cm", 0, 0, 60.0, 60, 0, 1, 2]]})


def test_end_to_end_every_reading_arrives_in_few_messages(tmp_path):
    broker = Mosquitto(tmp_path / "broker").start()
    rx = Receiver(broker.host, broker.port).start()
    ob = Outbox(tmp_path / "o.db", GW, boot=BOOT)
    cfg = UplinkConfig(host=broker.host, port=broker.port, replay_per_s=10_000)
    up = Uplink(cfg, ob, GW, {"firmware": "t", "config_hash": "", "sensors": []}, backoff_initial_s=0.1,
                backoff_max_s=0.5)
    try:
        ob.add_many([Event("telemetry", still(i)) for i in range(120)])  # backlog
        up.start()
        wait_for(lambda: up.status()["state"] == "online", 10, what="online")
        ob.add("alarm", alarm())
        ob.add_many([Event("telemetry", still(i)) for i in range(50)])  # live
        wait_for(lambda: rx.seqs(GW) >= set(range(1, ob.next_seq)), 20, what="every seq")
        assert not rx.invalid and rx.duplicates == 0 and not rx.undeclared_gaps(GW)
        st = up.status()
        assert st["published"] == 171 and st["messages"] <= 6, st
        tele = rx.of_type("telemetry")
        assert len(tele) == 170 and {e["sensor"] for e in tele} == {f"w{i + 1}" for i in range(120)}
        assert sum(e["replay"] for e in tele) == 120
    finally:
        up.stop()
        rx.close()
        broker.close()
