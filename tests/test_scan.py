"""`gateway scan`: finds simulated devices on a real RTU line (socat pty) and a TCP bus."""

import subprocess
import sys
import textwrap

import pytest

from drivers.sim.modbus_device import SimBus
from gateway.config import load_config
from gateway.errors import GatewayError
from gateway.cli.scan import parse_units, recognise, scan
from tests.ptys import PtyPair


def _cfg(tmp_path, bus_toml):
    p = tmp_path / "g.toml"
    p.write_text(textwrap.dedent("""
        [gateway]
        id = "scan-gw"
        data_dir = "./var"
        control_socket = "./var/control.sock"
    """) + textwrap.dedent(bus_toml))
    return str(p)


def test_scan_finds_and_recognises_devices_on_an_rtu_line(tmp_path):
    with PtyPair(tmp_path) as pty:
        path = _cfg(tmp_path, f"""
            [buses.rs485]
            type = "rtu"
            port = "{pty.a}"
            baudrate = 9600

            [[sensors]]
            name = "w"
            bus = "rs485"
            unit = 1
            profile = "water-level-rs485"

            [[sensors]]
            name = "h"
            bus = "rs485"
            unit = 2
            profile = "hydrant-pressure-rs485"

            [[sensors]]
            name = "s"
            bus = "rs485"
            unit = 3
            profile = "smoke-rs485"
        """)
        cfg = load_config(path)
        with SimBus.rtu(pty.b, 9600) as sim:
            sim.add_device(0x1A, cfg.sensors["w"].profile, {"level": 12.0})
            sim.add_device(7, cfg.sensors["h"].profile, {"pressure": 0.3})
            sim.add_device(9, cfg.sensors["s"].profile, {"status": 0})
            sim.add_device(12, None, registers={100: 1})  # answers, but has no registers 0..4
            found = scan(cfg.buses["rs485"], list(range(1, 30)), [9600], timeout=0.05)
            r = subprocess.run([sys.executable, "-m", "gateway.cli", "scan", "rs485", "-c", path, "--units", "1-15"],
                               capture_output=True, text=True, timeout=60)
    by = {f.unit: f for f in found}
    assert sorted(by) == [7, 9, 12, 0x1A]
    assert by[0x1A].profile.startswith("water-level-rs485")
    assert by[7].profile.startswith("hydrant-pressure-rs485")
    assert by[9].profile.startswith("smoke-rs485")
    assert by[12].registers is None and "illegal data address" in by[12].note
    assert r.returncode == 0, r.stderr
    assert "3 device(s)" in r.stdout and "hydrant-pressure-rs485" in r.stdout


def test_scan_over_tcp_and_refusal_while_the_daemon_runs(tmp_path):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        path = _cfg(tmp_path, f"""
            [buses.plant]
            type = "tcp"
            host = "127.0.0.1"
            port = {sim.port}

            [[sensors]]
            name = "h"
            bus = "plant"
            unit = 2
            profile = "hydrant-pressure-rs485"
        """)
        cfg = load_config(path)
        sim.add_device(2, cfg.sensors["h"].profile, {"pressure": 0.25})
        found = scan(cfg.buses["plant"], [1, 2, 3], [None], timeout=0.1)
        assert [(f.unit, f.profile.split(" ")[0]) for f in found] == [(2, "hydrant-pressure-rs485")]
        from gateway.control import ControlServer

        with ControlServer(cfg.gateway.control_socket, {}):  # a daemon answering on the socket
            r = subprocess.run([sys.executable, "-m", "gateway.cli", "scan", "plant", "-c", path],
                               capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "owns bus plant" in r.stderr and "systemctl stop" in r.stderr and "Traceback" not in r.stderr


def test_recognise_and_parse_units():
    assert recognise(1, 9600, [1, 3, 1, 1, 120]).startswith("water-level")
    assert recognise(1, 9600, [1, 4, 1, 1, 120]) == "unknown profile"  # baud code says 19200
    assert recognise(4, None, [4, 3, 5, 3, 300]).startswith("hydrant")
    assert parse_units("1,5,10-12") == [1, 5, 10, 11, 12]
    for bad in ("0-3", "x", "5-300"):
        with pytest.raises(GatewayError):
            parse_units(bad)
