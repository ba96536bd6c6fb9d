"""Modbus outputs end to end: the gateway switches a sounder's coil and a relay module's register
on a real simulated slave and reads each back; a device that never confirms is a fault event and is
retried, and the GPIO siren sounds regardless; on a busy RTU bus a write goes ahead of the polls."""

from __future__ import annotations

import json
import statistics
import time

from drivers.sim.modbus_device import SimBus
from gateway.acquire import Acquisition
from gateway.acquire.writes import OutputWrites
from gateway.config import load_config
from ptys import PtyPair
from tests.daemonkit import SIREN_PIN, cli_json, run_daemon, stop_daemon, write_config
from tests.ptys import wait_until

OUTPUTS = '''
[outputs.stair-sounder]
kind = "modbus"
bus = "garage"
unit = 9
coil = 0
pattern = { red = "steady" }

[outputs.lobby-relay]
kind = "modbus"
bus = "garage"
unit = 10
register = 1
on_value = 2
pattern = { red = "steady" }

[outputs.b3-sounder]
kind = "modbus"
bus = "garage"
unit = 11
coil = 0
retry_s = 0.2
pattern = { red = "steady" }
'''


def test_coil_and_register_outputs_and_one_that_never_confirms(tmp_path):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        path = write_config(tmp_path, "mb-gw", sim.port, above={"red": 40}, extra=OUTPUTS)
        text = open(path).read().replace('sound = ["garage-siren"]',
                                         'sound = ["garage-siren", "stair-sounder", "lobby-relay", "b3-sounder"]')
        open(path, "w").write(text)
        sim.add_device(1, load_config(path).sensors["garage-b2-water"].profile, {"level": 2.0})
        sim.add_device(9, None, coils=1)
        sim.add_device(10, None, registers={0: 0, 1: 0})
        sim.add_device(11, None, coils=1)
        sim.behave(11, "stuck")  # acknowledges, never switches
        sim.set_bits(9, "coils", {0: True})  # left ON by whoever ran before: the gateway starts it OFF
        proc = run_daemon(path)
        try:
            wait_until(lambda: (tmp_path / "var" / "control.sock").exists(), timeout=15, what="daemon up")
            wait_until(lambda: sim.bits(9)[0] is False, timeout=5, what="sounder written OFF at start")
            sim.set_value(1, "level", 45.0)
            wait_until(lambda: sim.bits(9)[0] is True and sim.registers(10)[1] == 2, timeout=10,
                       what="coil and register ON")
            pins = [json.loads(x) for x in (tmp_path / "var" / "pins.jsonl").read_text().splitlines()]
            assert any(p["pin"] == SIREN_PIN and p["value"] == 0 for p in pins)  # the relay sounded too
            wait_until(lambda: any(e.get("output") == "b3-sounder" and e.get("state") == "fault"
                                   for e in cli_json(path, "events")), timeout=10, what="fault event")
            fault = next(e for e in cli_json(path, "events") if e.get("output") == "b3-sounder")
            assert fault["reason"] == "modbus" and "not confirmed" in fault["detail"]
            writes = sim.requests(11)
            wait_until(lambda: sim.requests(11) >= writes + 4, timeout=5, what="retried")  # every 0.2 s
            status = cli_json(path, "status")[0]
            assert status["outputs"]["stair-sounder"]["confirmed"] is True
            assert "not confirmed" in status["outputs"]["b3-sounder"]["problem"]
            sim.behave(11, "normal")  # the technician fixed it: confirmed, and a recovered event
            wait_until(lambda: sim.bits(11)[0] is True, timeout=5, what="b3 switched at last")
            wait_until(lambda: any(e.get("output") == "b3-sounder" and e.get("state") == "recovered"
                                   for e in cli_json(path, "events")), timeout=10, what="recovered event")
            sim.set_value(1, "level", 1.0)
            wait_until(lambda: sim.bits(9)[0] is False and sim.registers(10)[1] == 0, timeout=10,
                       what="coil and register OFF when the water is gone")
            sim.set_value(1, "level", 45.0)
            wait_until(lambda: sim.bits(9)[0] is True, timeout=10, what="sounding again")
        finally:
            out = stop_daemon(proc)
        assert sim.bits(9)[0] is False  # a clean stop does not leave the sounder sounding
    assert "Traceback" not in out, out


BUSY = '''
[gateway]
id = "busy"
data_dir = "./var"

[buses.rs485]
type = "rtu"
port = "{port}"
'''


def test_a_write_goes_ahead_of_the_polls_on_a_busy_rtu_bus(tmp_path):
    sensors = 12
    with PtyPair(tmp_path) as pty:
        text = BUSY.format(port=pty.a) + "".join(
            f'\n[[sensors]]\nname = "s{u}"\nbus = "rs485"\nunit = {u}\nprofile = "water-level-rs485"\npoll_s = 0.05\n'
            for u in range(1, sensors + 1))
        (tmp_path / "gateway.toml").write_text(text)
        cfg = load_config(str(tmp_path / "gateway.toml"))
        sim = SimBus.rtu(pty.b, 9600, wire_timing=True)  # each transaction takes its 9600-baud wire time
        for u in range(1, sensors + 1):
            sim.add_device(u, cfg.sensors[f"s{u}"].profile, {"level": 1.0})
        sim.add_device(20, None, coils=1)
        writes = OutputWrites("rs485")
        writes.add("sounder", unit=20, coil=0)
        with sim:
            acq = Acquisition(cfg, lambda r: None, writes={"rs485": writes})
            acq.start()
            try:
                wait_until(lambda: len(writes.confirmed) == 1, timeout=5, what="first OFF")
                t_round = wait_round(sim, sensors)
                lat = []
                for i in range(10):
                    time.sleep(0.013 * (i % 5))  # land at different points of a transaction
                    n = len(writes.confirmed)
                    writes.put("sounder", i % 2 == 0, time.monotonic())
                    wait_until(lambda: len(writes.confirmed) > n, timeout=5, what="confirmed")
                    _, on, asked, done = writes.confirmed[-1]
                    assert sim.bits(20)[0] is on
                    lat.append(done - asked)
            finally:
                acq.stop()
    # one FC03 transaction at 9600 baud is ~20 ms on the wire, the write and its read-back ~40 ms:
    # a write waits for the transaction in flight, never for the round of 12 polls (~250 ms)
    assert t_round > 0.18, t_round
    assert max(lat) < min(0.15, t_round * 0.6), (lat, t_round)
    print(f"busy RTU bus: poll round {t_round * 1000:.0f} ms, write confirmed in "
          f"{statistics.median(lat) * 1000:.0f} ms median, {max(lat) * 1000:.0f} ms max")


def wait_round(sim, sensors) -> float:
    """How long one round of polls of every sensor takes on this bus."""
    before = sim.requests(1)
    t0 = time.monotonic()
    wait_until(lambda: sim.requests(1) >= before + 3, timeout=10, what="polls")
    return (time.monotonic() - t0) / 3
