"""The 2 a.m. screen (issue 10 item 5): `gateway status` opens with one verdict line, then alarms with
their cause and state label, sensors with last good value and age, faults once per bus with a hint,
outputs with why they are on and the time left before max_on_s, uplink and outbox; `--json` carries
the same; `gateway events` reads the history from the outbox file. A real fire scenario: `gateway sim
--scenario fire` and `gateway run` as processes, on free ports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from drivers.sim.modbus_device import SimBus
from gateway.config import load_config
from tests.daemonkit import run_daemon, stop_daemon, write_config
from tests.mosquitto import free_port
from tests.ptys import wait_until

DEMO = Path(__file__).resolve().parents[1] / "config" / "demo.toml"


def demo_site(tmp_path) -> str:
    """config/demo.toml with its own free ports, data directory and socket under tmp_path."""
    text = DEMO.read_text()
    for port in ("15020", "15021", "15022"):
        text = text.replace(port, str(free_port()))
    text = text.replace('data_dir = "../var/demo"', 'data_dir = "./var"')
    text = text.replace('control_socket = "../var/demo/control.sock"', 'control_socket = "./var/control.sock"')
    text = text.replace('record = "../var/demo/pins.jsonl"', 'record = "./var/pins.jsonl"')
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return str(path)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=30)


def test_status_in_a_fire_says_what_burns_since_when_and_what_the_sirens_do(tmp_path):
    cfg = demo_site(tmp_path)
    sim = subprocess.Popen([sys.executable, "-m", "gateway.cli", "sim", "-c", cfg, "--scenario", "fire"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = None
    try:
        wait_until(lambda: _cli("read", "--direct", "-c", cfg).returncode == 0, timeout=20, what="sim serving")
        proc = run_daemon(cfg)
        wait_until(lambda: '"alarms": [\n    {' in _cli("status", "--json", "-c", cfg).stdout, timeout=30,
                   what="the fire alarm")
        r = _cli("status", "-c", cfg)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        # the demo's garage-voice is not in the fire rule: the verdict names the outputs that sound
        assert re.fullmatch(r"FIRE stair-1-smoke RED since \d\d:\d\d:\d\d \(\d+ s\), latched, "
                            r"sirens ON \(garage-siren, stair-sounder\)", lines[0]), lines[0]
        text = r.stdout
        assert re.search(r"stair-1-smoke.status#1 +RED +since \d\d:\d\d:\d\d \(\d+ s\) +now 1 \(alarm\) +latched", text), text
        assert "cause: status 1 (alarm) is a red state" in text
        assert re.search(r"stair-2-smoke +status +0 \(normal\) +\d+s +good", text), text
        assert re.search(r"garage-b2-water +level +[\d.]+ cm +\d+s +good", text), text
        assert re.search(r"garage-siren +GPIO17 +ON +red steady for alarm stair-1-smoke.status#1; "
                         r"\d+ min( \d+ s)? left before max_on_s 600 s", text), text
        assert "UPLINK: no [uplink] configured" in text
        assert re.search(r"OUTBOX: \d+ undelivered: alarm 1, .*OLDEST UNDELIVERED ALARM \d+s", text), text
        st = json.loads(_cli("status", "--json", "-c", cfg).stdout)
        assert st["verdict"].startswith("FIRE stair-1-smoke RED since ")
        [a] = st["alarms"]
        assert (a["cause"], a["label"], a["latched"]) == ("status 1 (alarm) is a red state", "alarm", True)
        assert st["outputs"]["garage-siren"]["why"] == "alarm stair-1-smoke.status#1"
        assert 0 < st["outputs"]["garage-siren"]["left_s"] <= 600
        assert st["outbox"]["oldest_alarm_age_s"] is not None
        # The alarm line of the log names the rule and the cause; events show no None.
        r = _cli("events", "-c", cfg, "--type", "alarm")
        assert "stair-1-smoke.status#1 raised red value 1; cause: status 1 (alarm) is a red state" in r.stdout, r.stdout
        assert "None" not in _cli("events", "-c", cfg, "-n", "200").stdout
    finally:
        out = stop_daemon(proc) if proc else ""
        sim.terminate()
        sim.wait(10)
    assert "(rule stair-1-smoke.status: status 1 (alarm) is a red state)" in out, out


def test_ok_verdict_then_a_dead_device_is_one_fault_per_bus_with_a_hint(tmp_path):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        cfg = write_config(tmp_path, "screen-gw", sim.port, hydrant=True)
        c = load_config(cfg)
        sim.add_device(1, c.sensors["garage-b2-water"].profile, {"level": 2.0})
        sim.add_device(2, c.sensors["hydrant-3"].profile, {"pressure": 0.3})
        proc = run_daemon(cfg)
        try:
            wait_until(lambda: _cli("status", "-c", cfg).stdout.startswith("OK: 2 sensors good, no uplink configured"),
                       timeout=20, what="OK verdict")
            sim.behave(1, "dead")
            sim.behave(2, "dead")
            both = "\n  bus garage: garage-b2-water, hydrant-3: no reply: check unit id, baud, A/B, termination\n"
            wait_until(lambda: both in _cli("status", "-c", cfg).stdout, timeout=20, what="both faults, grouped")
            text = _cli("status", "-c", cfg).stdout
            assert text.startswith("FAULT: 2 of 2 sensors not good (bus garage: garage-b2-water, hydrant-3 no reply)")
            assert text.count("\n  bus garage:") == 1, text  # grouped once per bus
            assert re.search(r"garage-b2-water +level +last 2 cm +\d+s +fault", text), text
        finally:
            out = stop_daemon(proc)
    # One log line per device fault, not one per point; the recovery is INFO.
    assert out.count("garage-b2-water: timeout") <= 1, out


def test_events_history_comes_from_the_outbox_after_a_restart(tmp_path):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        cfg = write_config(tmp_path, "hist-gw", sim.port, above={"yellow": 15, "red": 40})
        sim.add_device(1, load_config(cfg).sensors["garage-b2-water"].profile, {"level": 20.0})
        proc = run_daemon(cfg)
        try:
            wait_until(lambda: "raised yellow" in _cli("events", "-c", cfg, "--type", "alarm").stdout,
                       timeout=20, what="alarm raised")
        finally:
            stop_daemon(proc)
        # The daemon is gone (its memory with it): the history is still there, read-only.
        before = (tmp_path / "var" / "outbox.sqlite").stat().st_mtime_ns
        r = _cli("events", "-c", cfg, "--type", "alarm")
        assert r.returncode == 0 and "garage-b2-water.level#1 raised yellow value 20 cm" in r.stdout, r.stdout + r.stderr
        assert "level 20 cm at or above the yellow threshold 15 cm" in r.stdout
        assert (tmp_path / "var" / "outbox.sqlite").stat().st_mtime_ns == before  # read-only
        assert _cli("events", "-c", cfg, "--type", "alarm", "--since", "1d").stdout == r.stdout
        assert _cli("events", "-c", cfg, "--type", "alarm", "--since", "2999-01-01T00:00").stdout == ""
        every = _cli("events", "-c", cfg, "--type", "alarm,telemetry").stdout.splitlines()
        assert len(every) >= 2 and any(" telemetry " in x for x in every)
        assert _cli("events", "-c", cfg, "--type", "alarm,telemetry", "-n", "1").stdout.splitlines() == every[-1:]
        r = _cli("events", "-c", cfg, "--type", "alarms")
        assert r.returncode == 1 and "event types are alarm, fault" in r.stderr
        j = [json.loads(x) for x in _cli("events", "-c", cfg, "--json", "--type", "alarm").stdout.splitlines()]
        assert j[0]["seq"] >= 1 and j[0]["cause"] == "level 20 cm at or above the yellow threshold 15 cm"
