"""One gateway, a real mosquitto stopped for 30 s and started again: the uplink is back within 2 s of the
broker's return (issue 14 item 5), because while the broker is away it probes the port at a short
fixed interval instead of letting its backoff grow through the outage.

The platform is the reference receiver with a persistent session on a broker with persistence, so the
subscription outlives the broker restart: an event the gateway publishes before the receiver has
reconnected is queued for it, not lost (without that, whoever reconnects first decides whether the
platform ever sees the event: a race, not a measurement).
"""

from __future__ import annotations

import time

from gateway.config.model import Uplink as UplinkConfig
from gateway.platform import Receiver
from gateway.record import Outbox
from gateway.sync import Uplink
from tests.mosquitto import Mosquitto, wait_for

GW = "fleet-one-001"
OUTAGE_S = 30.0
BIRTH = {"firmware": "t", "config_hash": "h", "sensors": ["water-1"]}
ALARM = {"alarm": "water-1.level#1", "rule": "water-1.level", "sensor": "water-1", "point": "level",
         "transition": "raised", "level": "red", "previous_level": None, "value": 31.5, "unit": "cm",
         "state": "active"}


def test_back_within_2_s_of_the_broker_after_a_30_s_outage(tmp_path):
    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    rx = Receiver(broker.host, broker.port, session="platform-one").start()
    ob = Outbox(tmp_path / "o.db", GW)
    # the production defaults: no test-sized backoff
    up = Uplink(UplinkConfig(host=broker.host, port=broker.port, replay_per_s=100), ob, GW, BIRTH).start()
    try:
        wait_for(lambda: up.status()["state"] == "online", 20, what="online")
        broker.stop()
        down = time.monotonic()
        ob.add("alarm", ALARM)  # made while the broker is away: the backlog to replay
        # While the broker is away, the next try is never far off: the backoff does not grow with the
        # outage (the old uplink's was 16-32 s by now). Sampled through the whole outage.
        worst = 0.0
        while time.monotonic() - down < OUTAGE_S:
            nxt = up.status()["next_retry_in_s"]
            if nxt is not None and time.monotonic() - down > 10:
                worst = max(worst, nxt)
            time.sleep(0.1)
        assert up.status()["state"] != "online"
        delivered = up.status()["delivered"]
        broker.start()
        back = time.monotonic()
        # the broker's PUBACK for the replayed alarm: the gateway's part. The platform's copy also waits
        # for the receiver's own reconnect (paho's 0.1..2 s), which is the platform's to tune.
        wait_for(lambda: up.status()["delivered"] > delivered, 60, what="the PUBACK of the replayed event")
        took = time.monotonic() - back
        first = wait_for(lambda: next((e for e in rx.of_type("alarm") if e["replay"]), None), 60,
                         what="the first replayed event at the platform")
        at_platform = time.monotonic() - back
        print(f"first replayed event acked {took:.2f} s, at the platform {at_platform:.2f} s after the broker "
              f"was back; next try at most {worst} s away")
        assert first["seq"] >= 1
        assert worst <= 1.5, f"the next try was {worst} s away late in the outage"
        # 2 s is the promise; the extra second is load margin for a shared 2-core machine (the figure
        # itself, p50 over 10 runs, is measured in bench/fleet.py)
        assert took <= 3.0, f"first replayed event {took:.1f} s after the broker was back"
        assert up.status()["probes"] >= 10  # cheap TCP probes, not full MQTT sessions, during the outage
    finally:
        up.stop()
        rx.close()
        ob.close()
        broker.close()
