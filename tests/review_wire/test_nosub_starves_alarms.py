"""Review of the wire merge (review-wire): the PUBACK 0x10 hold (gateway/sync/sender.py) starves a
live alarm when telemetry has no subscriber but alarms do (e.g. an alarm desk subscribed to
city/v1/+/event/alarm while the telemetry receivers' $share group is gone after a broker restart).

Sender.next_messages returns nothing new once NOSUB_HELD_MAX rows are held (sender.py:124-125),
whatever their priority, and held messages are taken before the live queue: with 2,000 telemetry
rows held a live alarm waits until enough of them come due together (up to NOSUB_MAX_S = 30 s;
measured 29-30 s against mosquitto with a free window). Fails on main bb84831."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.config.model import Uplink as UplinkConfig  # noqa: E402
from gateway.record import Outbox  # noqa: E402
from gateway.sync import Uplink  # noqa: E402
from gateway.sync.pacing import TokenBucket  # noqa: E402
from gateway.sync.sender import NO_SUBSCRIBERS, NOSUB_HELD_MAX, Sender  # noqa: E402
from mosquitto import Mosquitto, wait_for  # noqa: E402
from test_uplink import BIRTH, GW, alarm, telemetry  # noqa: E402


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _round(sender, mids, code):
    """Publish what the sender offers, then PUBACK all of it with `code`. Returns the rows sent."""
    sent = []
    for rows, replay in sender.next_messages():
        mid = next(mids)
        sender.sent(mid, rows, replay)
        sent.append((mid, rows))
    for mid, _ in sent:
        sender.puback(mid, code)
    return [r for _, rows in sent for r in rows]


def test_sender_a_live_alarm_is_not_starved_by_held_no_subscriber_telemetry(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    clock = Clock()
    s = Sender(ob, 20, TokenBucket(10_000, burst=100), 256 * 1024, clock=clock)
    s.start_session(ob.next_seq, None)
    mids = iter(range(1, 10 ** 6))
    ob.add_many([("telemetry", telemetry(i)) for i in range(NOSUB_HELD_MAX + 500)])
    while s._held_rows < NOSUB_HELD_MAX:
        assert _round(s, mids, NO_SUBSCRIBERS)
    a = ob.add("alarm", alarm(1))  # the alarm desk is subscribed: this one would get a plain PUBACK
    assert not s.inflight, "the window is free"
    clock.t += 0.1
    offered = [r.seq for rows, _ in s.next_messages() for r in rows]
    assert a in offered, ("a live alarm with the whole window free was not offered: "
                          f"{s._held_rows} telemetry rows are held for a subscriber")


def test_uplink_a_live_alarm_reaches_its_subscriber_while_telemetry_has_none(tmp_path):
    with Mosquitto(tmp_path / "broker") as broker:
        got = []
        desk = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        desk.on_message = lambda c, u, m: got.append(json.loads(m.payload))
        desk.connect(broker.host, broker.port)
        desk.subscribe("city/v1/+/event/alarm", qos=1)
        desk.loop_start()
        ob = Outbox(tmp_path / "o.db", GW)
        up = Uplink(UplinkConfig(host=broker.host, port=broker.port, replay_per_s=10_000, inflight_max=20),
                    ob, GW, BIRTH, backoff_initial_s=0.1, backoff_max_s=0.5).start()
        try:
            wait_for(lambda: up.status()["state"] == "online", 10, what="online")
            ob.add_many([("telemetry", telemetry(i)) for i in range(NOSUB_HELD_MAX + 500)])
            wait_for(lambda: up.status()["no_subscriber"] >= NOSUB_HELD_MAX, 20, what="2000 telemetry 0x10")
            a = ob.add("alarm", alarm(1))
            # a live alarm on a connected link goes at once (on main it waits until the held telemetry
            # comes due together, up to NOSUB_MAX_S = 30 s: measured 29-30 s)
            wait_for(lambda: any(e.get("seq") == a for e in got), 5, what="the live alarm at the alarm desk")
        finally:
            up.stop()
            desk.loop_stop()
            desk.disconnect()
