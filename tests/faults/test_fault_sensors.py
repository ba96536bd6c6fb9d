"""Sensor and bus faults with the daemon running: a dead slave, CRC errors and garbage on the RTU pty, a
slow slave, out-of-range values (a level above the red threshold, a pressure below the red one, both
outside the sensor's range), and the USB adapter pulled out and plugged back in. Each is a `fault`
event at the platform followed by a `recovered` one; none is an alarm and none moves the siren pin;
the healthy devices on both buses keep their cadence (their `good` poll counters in `gateway status`)."""

from __future__ import annotations

import json

import time

from drivers.sim.modbus_device import SimBus
from faultkit import GW, SIREN_PIN, report, siren_turned_on, write_config
from gateway.config import load_config
from tests.mosquitto import wait_for
from tests.ptys import PtyPair

POLL_S = 0.2
BODY = """
[buses.rs485]
type = "rtu"
port = "{pty}"
baudrate = 9600
backoff_max_s = 2

[buses.pumproom]
type = "tcp"
host = "127.0.0.1"
port = {tcp}

[[sensors]]
name = "garage-b2-water"
bus = "rs485"
unit = 1
profile = "water-level-rs485"
poll_s = {poll}

[[sensors]]
name = "sump-water"
bus = "rs485"
unit = 2
profile = "water-level-rs485"
poll_s = {poll}

[[sensors]]
name = "hydrant-3"
bus = "rs485"
unit = 3
profile = "hydrant-pressure-rs485"
poll_s = {poll}

[[sensors]]
name = "lobby-water"
bus = "rs485"
unit = 4
profile = "water-level-rs485"
poll_s = {poll}

[[sensors]]
name = "hydrant-7"
bus = "pumproom"
unit = 1
profile = "hydrant-pressure-rs485"
poll_s = {poll}

[[sensors]]
name = "pit-water"
bus = "pumproom"
unit = 2
profile = "water-level-rs485"
poll_s = {poll}
""" + "".join(f"""
[[rules]]
sensor = "{s}"
point = "level"
above = {{ yellow = 15, red = 40 }}
sound = ["garage-siren"]
""" for s in ("garage-b2-water", "sump-water", "lobby-water", "pit-water")) + "".join(f"""
[[rules]]
sensor = "{s}"
point = "pressure"
below = {{ yellow = 0.14, red = 0.10 }}
sound = ["garage-siren"]
""" for s in ("hydrant-3", "hydrant-7"))

RTU_VALUES = {1: ("garage-b2-water", {"level": 2.0}), 2: ("sump-water", {"level": 3.0}),
              3: ("hydrant-3", {"pressure": 0.3}), 4: ("lobby-water", {"level": 1.0})}
HEALTHY_TCP = ("hydrant-7", "pit-water")


def test_sensor_faults_are_fault_events_never_alarms_and_the_others_keep_their_cadence(
        tmp_path, receiver, broker, gateways):
    rx = receiver
    pty = PtyPair(tmp_path).start()
    rtu = tcp = None
    try:
        with SimBus.tcp("127.0.0.1", 0) as tcp:
            body = BODY.replace("{pty}", pty.a).replace("{tcp}", str(tcp.port)).replace("{poll}", str(POLL_S))
            path = write_config(tmp_path, body, broker_port=broker.port)
            cfg = load_config(path)

            def serve_rtu() -> SimBus:
                sim = SimBus.rtu(pty.b, 9600)
                for unit, (name, values) in RTU_VALUES.items():
                    sim.add_device(unit, cfg.sensors[name].profile, values)
                return sim.start()

            rtu = serve_rtu()
            tcp.add_device(1, cfg.sensors["hydrant-7"].profile, {"pressure": 0.35})
            tcp.add_device(2, cfg.sensors["pit-water"].profile, {"level": 4.0})
            gw = gateways(path, tmp_path / "daemon.log")
            gw.wait_up(30)

            def good(name):
                return (gw.status() or {}).get("devices", {}).get(name, {}).get("good", 0)

            wait_for(lambda: all(good(n) > 3 for n in cfg.sensors), 30, what="every device polled")
            cadence: dict[str, dict[str, float]] = {}

            def fault_phase(label, sensors, inject, heal, watch):
                """Inject, see a fault event for each of `sensors`, measure the healthy devices' good-poll
                rate while the fault lasts, heal, see each recover."""
                mark = len(rx.events)
                t0, before = time.monotonic(), {n: good(n) for n in watch}
                inject()
                for s in sensors:
                    wait_for(lambda: any(e.get("sensor") == s and e.get("state") == "fault"
                                         for e in rx.events[mark:] if e["type"] == "fault"), 30,
                             what=f"{label}: a fault event for {s}")
                time.sleep(max(0.0, 3.0 - (time.monotonic() - t0)))  # let the cadence show over >= 3 s
                dt = time.monotonic() - t0
                cadence[label] = {n: (good(n) - before[n]) / dt for n in watch}
                heal()
                for s in sensors:
                    wait_for(lambda: any(e.get("sensor") == s and e.get("state") == "recovered"
                                         for e in rx.events[mark:] if e["type"] == "fault"), 30,
                             what=f"{label}: {s} recovered")
                return [e for e in rx.events[mark:] if e["type"] == "fault"]

            everyone = ("lobby-water", *HEALTHY_TCP)
            fault_phase("dead slave", ["sump-water"], lambda: rtu.behave(2, "dead"),
                        lambda: rtu.behave(2, "normal"), everyone)
            fault_phase("bad CRC", ["garage-b2-water"], lambda: rtu.behave(1, "bad_crc"),
                        lambda: rtu.behave(1, "normal"), everyone)
            fault_phase("garbage", ["garage-b2-water"], lambda: rtu.behave(1, "garbage"),
                        lambda: rtu.behave(1, "normal"), everyone)
            fault_phase("slow slave (1 s)", ["hydrant-3"], lambda: rtu.behave(3, "slow", 1.0),
                        lambda: rtu.behave(3, "normal"), everyone)

            def out_of_range():
                rtu.set_value(1, "level", 2000.0)    # above red (40) and above the 1000 cm range
                rtu.set_value(3, "pressure", -0.5)   # below red (0.10) and below the 0..1.6 MPa range
                tcp.set_value(2, "level", -50.0)     # below the -10 cm range

            def in_range():
                rtu.set_value(1, "level", 2.0)
                rtu.set_value(3, "pressure", 0.3)
                tcp.set_value(2, "level", 4.0)

            oor = fault_phase("out of range", ["garage-b2-water", "hydrant-3", "pit-water"], out_of_range,
                              in_range, ("lobby-water", "hydrant-7"))

            def unplug():
                nonlocal rtu
                rtu.stop()
                pty.vanish()

            def plug_in():
                nonlocal rtu
                pty.restore()
                rtu = serve_rtu()

            fault_phase("port removed", [n for n, _ in RTU_VALUES.values()], unplug, plug_in, HEALTHY_TCP)
            wait_for(lambda: all(good(n) > 0 for n in cfg.sensors), 30, what="status answers after the port returned")
            events_cli = gw.cli("events", "--json")
        alarms = rx.of_type("alarm")
        faults = rx.of_type("fault")
        siren_on = siren_turned_on(gw.pins(SIREN_PIN))
        for label, rates in cadence.items():
            report(f"sensor faults, {label}: healthy devices' good polls/s "
                   + ", ".join(f"{n} {r:.2f}" for n, r in rates.items()) + f" (nominal {1 / POLL_S:.1f})")
        report(f"sensor faults: {len(faults)} fault/recovered events, {len(alarms)} alarms, "
               f"{len(siren_on)} siren ON changes")
        assert alarms == [], [(e["sensor"], e["transition"], e["level"], e["value"]) for e in alarms]
        assert siren_on == [], siren_on
        assert all("range" in (e.get("reason") or "") for e in oor if e["state"] == "fault"), \
            [e.get("reason") for e in oor]
        types = [json.loads(line)["type"] for line in events_cli.stdout.splitlines()]
        assert events_cli.returncode == 0 and "fault" in types and "alarm" not in types, types
        for label, rates in cadence.items():
            for name, rate in rates.items():
                # a fault elsewhere may cost a healthy device some polls, never its cadence
                floor = 0.5 if name in HEALTHY_TCP else 0.35
                assert rate >= floor / POLL_S, f"{label}: {name} polled {rate:.2f}/s (nominal {1 / POLL_S:.1f}/s)"
        assert rx.undeclared_gaps(GW) == [] and rx.invalid == []
    finally:
        if rtu is not None:
            rtu.stop()
        pty.stop()
