"""PUBACK 0x10 "No matching subscribers" is not a delivery (MQTT 5.0 §3.4.2.1: the broker accepted
the message and had nobody to give it to, so it is gone).

Found by the PostgreSQL/shared-subscription work (docs/fleet-platform.md): mosquitto 2.0.11
restores sessions and plain subscriptions after a restart but not `$share/...` ones, so until the
platform's receivers have subscribed again every event the gateway publishes matches no subscriber,
is answered 0x10, and was marked delivered: lost, with no gap declared. Now the rows of such a
message are sent again after a short hold (1 s doubling to 30 s while nobody takes them, back to
1 s after a delivery), and other rows keep flowing meanwhile."""

from __future__ import annotations

import time

from gateway.config.model import Uplink as UplinkConfig
from gateway.platform import Receiver
from gateway.record import Outbox
from gateway.sync import Uplink
from mosquitto import Mosquitto, wait_for
from test_uplink import BIRTH, GW, alarm, telemetry


def test_an_alarm_nobody_was_subscribed_to_arrives_once_the_platform_subscribes(tmp_path):
    with Mosquitto(tmp_path / "broker") as broker:
        ob = Outbox(tmp_path / "o.db", GW)
        up = Uplink(UplinkConfig(host=broker.host, port=broker.port, replay_per_s=10_000), ob, GW, BIRTH,
                    backoff_initial_s=0.1, backoff_max_s=0.5).start()
        rx = None
        try:
            wait_for(lambda: up.status()["state"] == "online", 10, what="online")
            first = ob.add("alarm", alarm(1))
            more = [ob.add("telemetry", telemetry(i)) for i in range(5)]
            wait_for(lambda: up.status()["no_subscriber"] >= 1, 10, what="a PUBACK 0x10")
            assert up.status()["delivered"] == 0, "nobody took them: not delivered"
            rx = Receiver(broker.host, broker.port).start()  # the platform comes (back)
            t0 = time.monotonic()
            wait_for(lambda: {first, *more} <= rx.seqs(), 40, what="the held events, once subscribed")
            late = time.monotonic() - t0
            wait_for(lambda: ob.stats()["pending"] == 0, 10, what="all marked delivered")
        finally:
            up.stop()
            if rx is not None:
                rx.close()
    assert late < 35.0, late
