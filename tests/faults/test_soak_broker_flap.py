"""The broker flapping (issue 11, 8c): mosquitto stopped for 2 s and started for 3 s, again and again,
for 1 minute here (10 minutes with SOAK=1), while the water level crosses the alarm thresholds and
telemetry flows. Afterwards every seq the outbox gave out reaches the platform (or is declared
evicted), the uplink is online, the siren followed every alarm (the safety path never waited for the
broker), and the daemon logged no traceback."""

from __future__ import annotations

import threading
import time

import pytest

from drivers.sim.modbus_device import SimBus
from faultkit import GW, missing_seqs, outbox_max_seq, ranges, report, siren_turned_on, write_config
from gateway.config import load_config
from tests.daemonkit import garage_toml
from tests.mosquitto import wait_for

DOWN_S, UP_S = 2.0, 3.0


def flapping(tmp_path, broker, rx, gateways, duration_s: float):
    stop = threading.Event()
    with SimBus.tcp("127.0.0.1", 0) as sim:
        body = garage_toml(sim.port, poll_s=0.1, above={"yellow": 15, "red": 40}, hysteresis=2, hydrant=True)
        path = write_config(tmp_path, body, broker_port=broker.port,
                            outbox="telemetry_period_s = 0.5\nstatus_period_s = 2\ndeadband = 0")
        cfg = load_config(path)
        sim.add_device(1, cfg.sensors["garage-b2-water"].profile, {"level": 2.0})
        sim.add_device(2, cfg.sensors["hydrant-3"].profile, {"pressure": 0.3})
        raises = []

        def flood():  # red for 1.5 s in every 3: an alarm raised and cleared every cycle
            high = False
            while not stop.wait(1.5):
                high = not high
                sim.set_value(1, "level", 45.0 if high else 2.0)
                if high:
                    raises.append(time.time())

        producer = threading.Thread(target=flood, daemon=True)
        gw = gateways(path, tmp_path / "daemon.log")
        try:
            gw.wait_up(30)
            wait_for(lambda: rx.presence.get(GW, {}).get("state") == "online", 30, what="birth at the platform")
            producer.start()
            t0 = time.monotonic()
            flaps = 0
            while time.monotonic() - t0 < duration_s:
                broker.stop()
                time.sleep(DOWN_S)  # the planned outage
                broker.start()
                flaps += 1
                time.sleep(UP_S)  # the planned time up
            stop.set()
            producer.join(5)
            wait_for(lambda: (gw.status() or {}).get("uplink", {}).get("state") == "online", 60,
                     what="uplink online after the last flap")
            max_seq = outbox_max_seq(gw)
            wait_for(lambda: not missing_seqs(rx, GW, max_seq), 120, what=f"every seq 1..{max_seq}")
            st = gw.status()
            log = gw.log()
            pins = gw.pins()
            assert gw.stop() == 0, gw.log_tail()
        finally:
            stop.set()
    alarms = [e for e in rx.of_type("alarm") if e["seq"] <= max_seq and e["transition"] == "raised"]
    report(f"broker flapping {DOWN_S:g} s down / {UP_S:g} s up x{flaps} over {duration_s:.0f} s: max seq {max_seq}, "
           f"{len(alarms)} raises delivered, siren ON {len(siren_turned_on(pins))} times, duplicates {rx.duplicates}, "
           f"outbox depth at the end {st['outbox'].get('depth')}")
    assert missing_seqs(rx, GW, max_seq) == [], ranges(missing_seqs(rx, GW, max_seq))
    assert [g for g in rx.undeclared_gaps(GW) if g[1] <= max_seq] == []
    assert rx.invalid == [], rx.invalid[:3]
    assert len(alarms) >= len(raises) * 0.8 > 0, (len(alarms), len(raises))
    assert len(siren_turned_on(pins)) >= len(raises) * 0.8  # the siren did not wait for the broker
    assert "Traceback" not in log, log[-4000:]


def test_broker_flapping_for_a_minute(tmp_path, broker, receiver, gateways):
    flapping(tmp_path, broker, receiver, gateways, 60)


@pytest.mark.soak
def test_soak_broker_flapping_for_10_minutes(tmp_path, broker, receiver, gateways):
    flapping(tmp_path, broker, receiver, gateways, 600)
