"""`gateway run` (a process) with [uplink], [gb26875] and [sl651]: simulated smoke and water sensors ->
the GB/T 26875.3 reference centre (in this process, over TCP), the SL 651 reference centre
(`gateway-platform sl651-centre`, a process) and MQTT (a real mosquitto). A fire alarm is confirmed by
the fire centre, a water-level alarm by the flood office as a 加报 report; while the fire centre floods
the gateway with garbage and requests the siren still sounds and MQTT still gets its events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from drivers.sim.modbus_device import SimBus
from gateway.config import load_config
from gateway.platform import Receiver
from gateway.platform.gb26875_centre import Gb26875Centre
from gateway.sync.gb26875 import datatypes as dt
from tests.daemonkit import run_daemon, stop_daemon, write_config
from tests.mosquitto import Mosquitto
from tests.ptys import wait_until
from tests.test_daemon import _siren_on
from tests.test_gb26875_uplink import free_port

GW = "centres-gw"


class CentreProcess:
    """`gateway-platform sl651-centre --port P`, its JSON lines collected from stdout."""

    def __init__(self, port: int):
        self.lines: list[dict] = []
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.platform.cli", "sl651-centre", "--port",
                                      str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=env)
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.append(json.loads(line))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def _config(tmp_path, sim_port, broker_port, gb_port, sl_port):
    return write_config(tmp_path, GW, sim_port, above={"red": 40}, extra=f"""
        [[sensors]]
        name = "stair-2-smoke"
        bus = "garage"
        unit = 3
        profile = "smoke-rs485"
        poll_s = 0.1

        [[rules]]
        sensor = "stair-2-smoke"
        point = "status"
        equals = {{ red = 1 }}
        latch = true
        sound = ["garage-siren"]

        [uplink]
        host = "127.0.0.1"
        port = {broker_port}
        client_id = "{GW}"

        [gb26875]
        host = "127.0.0.1"
        port = {gb_port}
        source = "000000000001"
        destination = "000000000000"

        [sl651]
        host = "127.0.0.1"
        port = {sl_port}
        station = "0012345678"
        centre = 1
        password = "1234"

        [outbox]
        status_period_s = 1
    """)


@pytest.fixture
def site(tmp_path):
    sl_port = free_port()
    with Mosquitto(tmp_path / "broker") as broker, SimBus.tcp("127.0.0.1", 0) as sim, \
            Gb26875Centre(device="000000000001") as gb:
        sl = CentreProcess(sl_port)
        path = _config(tmp_path, sim.port, broker.port, gb.port, sl_port)
        cfg = load_config(path)
        sim.add_device(1, cfg.sensors["garage-b2-water"].profile, {"level": 2.0})
        sim.add_device(3, cfg.sensors["stair-2-smoke"].profile, {"status": 0})
        rx = Receiver("127.0.0.1", broker.port).start()
        try:
            yield sim, path, gb, sl, rx
        finally:
            rx.close()
            sl.stop()


def test_fire_and_flood_centres_confirm_while_a_hostile_centre_cannot_stop_siren_or_mqtt(site, tmp_path):
    sim, path, gb, sl, rx = site
    proc = run_daemon(path)
    try:
        wait_until(lambda: gb.connections() == 1, 20, what="the gateway connected to the fire centre")
        sim.set_value(3, "status", 1)  # smoke
        wait_until(lambda: any(u["type"] == dt.COMPONENT_STATE and u["objects"][0]["state"] & dt.FIRE
                               for u in gb.confirmed()), 20, what="fire alarm confirmed by the GB/T 26875.3 centre")
        wait_until(lambda: _siren_on(tmp_path), 5, what="siren on")
        # the fire centre turns hostile: garbage, a frame with a lying length, a flood of requests
        gb.send_raw(b"\x00\xff" * 500 + b"@@" + b"\xff" * 40)
        for _ in range(200):
            gb.request("read_state")
        sim.set_value(1, "level", 45.0)  # the garage floods
        wait_until(lambda: any(ln.get("frame", {}).get("function") == "extra" and ln.get("answer") == "confirm"
                               for ln in sl.lines), 30, what="加报 confirmed by the SL 651 centre")
        extra = next(ln for ln in sl.lines if ln.get("frame", {}).get("function") == "extra")
        assert extra["report"]["elements"]["39"] == pytest.approx(0.45)
        wait_until(lambda: any(e.get("sensor") == "garage-b2-water" and e.get("transition") == "raised"
                               for e in rx.of_type("alarm")), 20, what="the water alarm over MQTT too")
        wait_until(lambda: _siren_on(tmp_path), 5, what="siren still on")

        def status():
            r = subprocess.run([sys.executable, "-m", "gateway.cli", "status", "-c", path, "--json"],
                               capture_output=True, text=True, timeout=20)
            return json.loads(r.stdout)
        st = wait_until(lambda: (lambda s: s if s["uplinks"]["sl651"]["confirmed"] >= 1 else None)(status()), 10,
                        what="status shows the centre uplinks")
        assert st["uplinks"]["gb26875"]["state"] == "online" and st["uplinks"]["gb26875"]["thread_alive"]
        assert st["uplinks"]["gb26875"]["bad_frames"] >= 1
        wait_until(lambda: any("uplinks" in e for e in rx.of_type("status")), 10, what="uplinks in the status event")
    finally:
        out = stop_daemon(proc)
    assert "Traceback" not in out, out[-3000:]
    assert rx.invalid == []


def test_a_reload_stops_the_old_centre_uplinks_before_the_new_ones_start(site, tmp_path):
    sim, path, gb, sl, rx = site
    proc = run_daemon(path)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "gateway.cli", *args, "-c", path],
                              capture_output=True, text=True, timeout=30)

    def status():
        r = cli("status", "--json")
        return json.loads(r.stdout) if r.returncode == 0 else None
    try:
        wait_until(lambda: gb.connections() == 1, 20, what="the gateway connected to the fire centre")
        first = status()["config_hash"]
        text = open(path).read()
        open(path, "w").write(text.replace("status_period_s = 1", "status_period_s = 2"))
        r = cli("reload")
        assert r.returncode == 0, r.stderr
        wait_until(lambda: (lambda s: s and s["config_hash"] != first)(status()), 20, what="new config applied")
        wait_until(lambda: len(gb.sessions) >= 2 and gb.connections() == 1, 20,
                   what="the new daemon's fire-centre uplink connected")
        old, new = gb.sessions[0], gb.sessions[1]
        assert old[1] is not None and old[1] <= new[0]  # one writer of the cursor: the old one let go first
        sim.set_value(3, "status", 1)  # smoke, after the reload: the new daemon's uplink delivers it
        wait_until(lambda: any(u["type"] == dt.COMPONENT_STATE and u["objects"][0]["state"] & dt.FIRE
                               for u in gb.confirmed()), 20, what="fire alarm confirmed after the reload")
        st = wait_until(lambda: (lambda s: s if s and s["uplinks"]["gb26875"]["state"] == "online" else None)(
            status()), 10, what="status shows the new centre uplink")
        assert set(st["uplinks"]) == {"gb26875", "sl651"}
        assert len(gb.sessions) == 2  # no reconnect loop after the handover
    finally:
        out = stop_daemon(proc)
    assert "Traceback" not in out, out[-3000:]
