"""The daemon end to end, as a process: simulated devices, `gateway run` with the sim GPIO,
the relay seen in the pin record, kill -9 and a restart that sounds again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from drivers.sim.modbus_device import SimBus
from gateway.config import load_config
from tests.daemonkit import SIREN_PIN, run_daemon, stop_daemon, write_config
from tests.ptys import wait_until


def _pins(tmp_path) -> list[dict]:
    f = tmp_path / "var" / "pins.jsonl"
    if not f.exists():
        return []
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def _siren_on(tmp_path, after: int = 0) -> bool:
    changes = [p for p in _pins(tmp_path)[after:] if p["pin"] == SIREN_PIN]
    return bool(changes) and changes[-1]["value"] == 0  # active-low: 0 is ON


@pytest.fixture
def garage(tmp_path):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        cfg_path = write_config(tmp_path, "test-gw", sim.port, pattern={"orange": "pulse", "red": "steady"},
                                above={"blue": 5, "yellow": 15, "orange": 25, "red": 40}, hysteresis=2)
        prof = load_config(cfg_path).sensors["garage-b2-water"].profile
        sim.add_device(1, prof, {"level": 2.0})
        yield sim, cfg_path


def test_flood_sounds_then_kill9_and_restart_sounds_again(tmp_path, garage):
    sim, cfg_path = garage
    proc = run_daemon(cfg_path)
    try:
        wait_until(lambda: (tmp_path / "var" / "control.sock").exists(), timeout=15, what="daemon up")
        sim.set_value(1, "level", 45.0)
        wait_until(lambda: _siren_on(tmp_path), timeout=10, what="siren ON for a red flood")
        state = tmp_path / "var" / "alarms.state"
        wait_until(lambda: state.exists() and "garage-b2-water" in state.read_text(),
                   timeout=5, what="alarm state saved")
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
    finally:
        stop_daemon(proc)
    # The gauge goes silent with the Pi: no fresh reading can re-raise the alarm, only the restore.
    sim.behave(1, "dead")
    # The dead Pi: a real relay would drop. Mark where the next run's history starts.
    before = len(_pins(tmp_path))
    proc = run_daemon(cfg_path)
    try:
        wait_until(lambda: _siren_on(tmp_path, before), timeout=10, what="siren ON again after restart")
        # a dead gauge is a fault: it neither clears the alarm nor silences the siren
        sim.behave(1, "normal")
        sim.set_value(1, "level", 1.0)
        wait_until(lambda: not _siren_on(tmp_path, before), timeout=10, what="siren off when water is gone")
    finally:
        out = stop_daemon(proc)
    assert "restored active alarms" in out and "garage-b2-water.level#1" in out


def test_cli_status_and_read_through_the_daemon(tmp_path, garage):
    sim, cfg_path = garage
    sim.set_value(1, "level", 12.5)
    proc = run_daemon(cfg_path)
    try:
        wait_until(lambda: (tmp_path / "var" / "control.sock").exists(), timeout=15, what="daemon up")

        def status():
            r = subprocess.run([sys.executable, "-m", "gateway.cli", "status", "-c", cfg_path, "--json"],
                               capture_output=True, text=True, timeout=20)
            assert r.returncode == 0, r.stderr
            return json.loads(r.stdout)

        wait_until(lambda: any(s["value"] == 12.5 for s in status()["sensors"]), timeout=10, what="status value")
        st = status()
        assert st["gateway"] == "test-gw"
        assert [a["level"] for a in st["alarms"]] == ["blue"]
        r = subprocess.run([sys.executable, "-m", "gateway.cli", "read", "-c", cfg_path, "--json"],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        line = json.loads(r.stdout.splitlines()[0])
        assert line["sensor"] == "garage-b2-water" and line["value"] == 12.5 and line["quality"] == "good"
        # the human table too
        r = subprocess.run([sys.executable, "-m", "gateway.cli", "status", "-c", cfg_path],
                           capture_output=True, text=True, timeout=20)
        assert "garage-b2-water" in r.stdout and "ALARMS:" in r.stdout and "blue" in r.stdout
    finally:
        stop_daemon(proc)


def test_cli_without_daemon_says_how_to_start_it(tmp_path, garage):
    _, cfg_path = garage
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "status", "-c", cfg_path],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    assert "not running" in r.stderr and "gateway run" in r.stderr and "Traceback" not in r.stderr


def test_check_demo_config_and_a_bad_config(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "check", "-c", os.path.join(root, "config", "demo.toml")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("configuration is valid")
    bad = tmp_path / "bad.toml"
    bad.write_text('[gateway]\nid = "x"\n\n[buses.a]\ntype = "rtu"\nport = "/dev/null"\nbaudrat = 9600\n')
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "check", "-c", str(bad)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"{bad}:7: [buses.a] baudrat:" in r.stderr and "did you mean 'baudrate'" in r.stderr
    assert "Traceback" not in r.stderr


def test_reload_refuses_a_bad_file_and_applies_a_good_one(tmp_path, garage):
    sim, cfg_path = garage
    proc = run_daemon(cfg_path)
    try:
        wait_until(lambda: (tmp_path / "var" / "control.sock").exists(), timeout=15, what="daemon up")

        def cli(*args):
            return subprocess.run([sys.executable, "-m", "gateway.cli", *args, "-c", cfg_path],
                                  capture_output=True, text=True, timeout=30)

        def config_hash():
            r = cli("status", "--json")
            return json.loads(r.stdout)["config_hash"] if r.returncode == 0 else None

        first = config_hash()
        good = open(cfg_path).read()
        open(cfg_path, "w").write(good.replace("poll_s = 0.1", "poll_s = 0.1\nbogus = 1"))
        r = cli("reload")
        assert r.returncode == 1 and "bogus" in r.stderr and "Traceback" not in r.stderr
        assert config_hash() == first  # nothing changed

        open(cfg_path, "w").write(good.replace("poll_s = 0.1", "poll_s = 0.2"))
        r = cli("reload")
        assert r.returncode == 0, r.stderr
        wait_until(lambda: config_hash() not in (None, first), timeout=15, what="new config applied")
        sim.set_value(1, "level", 20.0)
        wait_until(lambda: '"raised"' in cli("events", "--json").stdout, timeout=10, what="an alarm event")
    finally:
        stop_daemon(proc)


def test_cli_siren_test_silence_and_ack_drive_the_relay(tmp_path, garage):
    sim, cfg_path = garage
    proc = run_daemon(cfg_path)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "gateway.cli", *args, "-c", cfg_path],
                              capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)

    try:
        wait_until(lambda: (tmp_path / "var" / "control.sock").exists(), timeout=15, what="daemon up")
        r = cli("siren", "test", "garage-siren", "--seconds", "0.5")
        assert r.returncode == 1 and "--yes" in r.stderr  # no terminal, no confirmation: refused
        r = cli("siren", "test", "garage-siren", "--seconds", "0.5", "--yes")
        assert r.returncode == 0, r.stderr
        wait_until(lambda: [p["value"] for p in _pins(tmp_path) if p["pin"] == SIREN_PIN][-2:] == [0, 1],
                   timeout=10, what="relay on then off for the test")
        assert cli("siren", "test", "nope", "--seconds", "1", "--yes").returncode == 1

        sim.set_value(1, "level", 45.0)
        wait_until(lambda: _siren_on(tmp_path), timeout=10, what="siren ON for red")
        r = cli("silence")
        assert r.returncode == 0 and "garage-b2-water.level" in r.stdout, r.stdout + r.stderr
        wait_until(lambda: not _siren_on(tmp_path), timeout=5, what="silenced")
        st = json.loads(cli("status", "--json").stdout)
        assert st["alarms"][0]["state"] == "silenced"  # silenced, still active
        sim.set_value(1, "level", 1.0)
        r = cli("ack", "all")
        assert r.returncode == 0, r.stderr
        wait_until(lambda: json.loads(cli("status", "--json").stdout)["alarms"] == [], timeout=10,
                   what="alarm cleared once acknowledged and the water is gone")
    finally:
        stop_daemon(proc)


def test_a_reload_that_cannot_start_goes_back_to_the_running_config(tmp_path, garage):
    sim, cfg_path = garage
    proc = run_daemon(cfg_path)
    try:
        wait_until(lambda: (tmp_path / "var" / "control.sock").exists(), timeout=15, what="daemon up")

        def status():
            r = subprocess.run([sys.executable, "-m", "gateway.cli", "status", "--json", "-c", cfg_path],
                               capture_output=True, text=True, timeout=30)
            return json.loads(r.stdout) if r.returncode == 0 else None

        wait_until(lambda: status()["uptime_s"] >= 1.0, timeout=10, what="the first daemon up for a second")
        before = status()
        first = before["config_hash"]
        good = open(cfg_path).read()
        # Valid for `gateway check`, impossible to start: /proc takes no directories.
        open(cfg_path, "w").write(good.replace('data_dir = "./var"', 'data_dir = "/proc/gateway-cannot"'))
        r = subprocess.run([sys.executable, "-m", "gateway.cli", "reload", "-c", cfg_path],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr  # accepted: the file is valid
        wait_until(lambda: (st := status()) is not None and st["uptime_s"] < before["uptime_s"], timeout=20,
                   what="a new daemon answering after the failed reload")
        assert status()["config_hash"] == first  # the old configuration runs again
        sim.set_value(1, "level", 45.0)
        wait_until(lambda: _siren_on(tmp_path), timeout=10, what="siren still works")
    finally:
        out = stop_daemon(proc)
    assert proc.returncode == 0
    assert "could not be applied; going back to" in out
