"""Commands always reach the daemon (issue 10 item 4), whatever the config file on disk says: a
half-edited, invalid file does not stop `silence`, `ack`, `status`, `events`, `read` or `reload`;
no config anywhere is one sentence naming both ways to give one; a daemon between two configs is
`reloading`, never `not running`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from drivers.sim.modbus_device import SimBus
from gateway.config import load_config
from gateway.service.ownership import Ownership
from tests.daemonkit import run_daemon, siren_on, stop_daemon, write_config
from tests.ptys import wait_until




def _cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                          timeout=30, env=env, cwd=cwd)


@pytest.fixture
def garage(tmp_path):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        cfg_path = write_config(tmp_path, "reach-gw", sim.port, above={"yellow": 15, "red": 40})
        sim.add_device(1, load_config(cfg_path).sensors["garage-b2-water"].profile, {"level": 2.0})
        yield sim, cfg_path


MID_EDIT = """
[gateway]
id = "reach-gw"
data_dir = "./var"
control_socket = "./var/control.sock"

[[sensors]]
name = "garage-b2-water
bus = garage   # the technician is half-way through a line
"""


def test_silence_a_red_alarm_while_the_file_on_disk_is_invalid(tmp_path, garage):
    sim, cfg_path = garage
    proc = run_daemon(cfg_path)
    try:
        wait_until(lambda: (tmp_path / "var" / "control.sock").exists(), timeout=15, what="daemon up")
        sim.set_value(1, "level", 45.0)
        wait_until(lambda: siren_on(tmp_path), timeout=10, what="siren ON for red")
        good = open(cfg_path).read()
        open(cfg_path, "w").write(MID_EDIT)
        assert _cli("check", "-c", cfg_path).returncode == 1  # it really is invalid

        r = _cli("silence", "-c", cfg_path)
        assert r.returncode == 0, r.stderr
        assert "garage-b2-water.level#1" in r.stdout
        wait_until(lambda: not siren_on(tmp_path), timeout=5, what="siren off after the silence")
        r = _cli("status", "-c", cfg_path)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("FLOOD garage-b2-water RED since ") and "silenced by cli" in r.stdout
        r = _cli("read", "-c", cfg_path, "--json")
        assert r.returncode == 0 and json.loads(r.stdout.splitlines()[0])["value"] == 45.0, r.stderr
        r = _cli("events", "-c", cfg_path, "--type", "alarm")
        assert r.returncode == 0 and "raised red" in r.stdout and "silenced" in r.stdout, r.stdout + r.stderr
        r = _cli("ack", "all", "-c", cfg_path)
        assert r.returncode == 0 and "garage-b2-water.level#1" in r.stdout, r.stderr
        r = _cli("reload", "-c", cfg_path)  # the daemon reads the file itself and refuses it
        assert r.returncode == 1 and "invalid TOML" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert proc.poll() is None
        # a [gateway] table that is broken itself still gives its keys up to the line scan
        open(cfg_path, "w").write(MID_EDIT.replace('id = "reach-gw"', 'id = "reach-gw'))
        assert _cli("status", "-c", cfg_path).returncode == 0
        open(cfg_path, "w").write(good)
    finally:
        stop_daemon(proc)


def test_no_config_anywhere_is_one_sentence_naming_both_ways(tmp_path):
    if os.path.exists("/etc/community-gateway/gateway.toml"):
        pytest.skip("this machine has an installed gateway config")
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_CONFIG"}
    for args in (["check"], ["run"], ["read", "--direct"], ["sim"]):
        r = _cli(*args, env=env, cwd=tmp_path)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "no config file: /etc/community-gateway/gateway.toml does not exist" in r.stderr, r.stderr
        assert "-c FILE" in r.stderr and "GATEWAY_CONFIG=FILE" in r.stderr
        assert "FILE:0" not in r.stderr and ":0: [" not in r.stderr and "Traceback" not in r.stderr


def test_status_says_reloading_while_the_daemon_holds_its_data_dir_without_a_socket(tmp_path, garage):
    _, cfg_path = garage
    # What a reload looks like from outside: the process holds the data directory, the socket is down.
    with Ownership(str(tmp_path / "var")):
        r = _cli("status", "-c", cfg_path)
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stdout.startswith("RELOADING: ") and f"pid {os.getpid()}" in r.stdout
    assert "not running" not in r.stdout + r.stderr
    r = _cli("status", "-c", cfg_path)  # nobody holds it: now it is not running
    assert r.returncode == 1 and "not running" in r.stderr


def test_status_during_real_reloads_never_says_not_running(tmp_path, garage):
    _, cfg_path = garage
    proc = run_daemon(cfg_path)
    seen = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            r = _cli("status", "-c", cfg_path)
            seen.append((r.returncode, r.stdout[:80] + r.stderr))

    try:
        wait_until(lambda: (tmp_path / "var" / "control.sock").exists(), timeout=15, what="daemon up")
        t = threading.Thread(target=poll, daemon=True)
        t.start()
        text = open(cfg_path).read()
        for i in range(4):
            open(cfg_path, "w").write(text.replace("poll_s = 0.1", f"poll_s = 0.{i + 1}"))
            r = _cli("reload", "-c", cfg_path)
            assert r.returncode == 0, r.stderr
        wait_until(lambda: len(seen) >= 8, timeout=60, what="status calls across the reloads")
        stop.set()
        t.join(30)
    finally:
        stop.set()
        stop_daemon(proc)
    assert seen and not [s for s in seen if "not running" in s[1]], seen
    assert all(rc in (0, 3) for rc, _ in seen), seen
