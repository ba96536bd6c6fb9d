"""Remote commands end to end, as operators use them: `gateway-platform keygen` and `send`
(processes) -> a real mosquitto -> `gateway run` (a process) -> the siren relay, the reply,
the audit events at the reference receiver. Forged and replayed commands change nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from drivers.sim.modbus_device import SimBus
from gateway.config import load_config
from gateway.platform import Receiver
from tests.daemonkit import run_daemon, stop_daemon, write_config
from tests.mosquitto import Mosquitto, wait_for

GW = "cmd-gw"


def _platform(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "gateway.platform.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def site(tmp_path):
    assert _platform("keygen", "--out", str(tmp_path / "platform")).returncode == 0
    assert _platform("keygen", "--out", str(tmp_path / "intruder")).returncode == 0
    with Mosquitto(tmp_path / "broker") as broker, SimBus.tcp("127.0.0.1", 0) as sim:
        cfg_path = write_config(tmp_path, GW, sim.port, extra=f"""
            [uplink]
            host = "127.0.0.1"
            port = {broker.port}

            [commands]
            platform_keys = ["./platform.pub"]
        """)
        sim.add_device(1, load_config(cfg_path).sensors["garage-b2-water"].profile, {"level": 2.0})
        rx = Receiver("127.0.0.1", broker.port).start()
        proc = run_daemon(cfg_path)
        try:
            wait_for(lambda: rx.presence.get(GW, {}).get("state") == "online", 20, what="birth")
            yield tmp_path, broker, sim, rx
        finally:
            stop_daemon(proc)
            rx.close()


def _pins(tmp_path):
    f = tmp_path / "var" / "pins.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


def _send(tmp_path, broker, key, *args):
    return _platform("send", GW, *args, "--key", str(tmp_path / f"{key}.key"), "--port", str(broker.port),
                     "--timeout", "15")


def test_signed_silence_works_and_a_forged_one_changes_nothing(site):
    tmp_path, broker, sim, rx = site
    sim.set_value(1, "level", 45.0)
    wait_for(lambda: _pins(tmp_path) and _pins(tmp_path)[-1]["value"] == 0, 10, what="siren ON")

    forged = _send(tmp_path, broker, "intruder", "silence")
    assert forged.returncode == 1, forged.stdout + forged.stderr
    assert "signature" in (forged.stdout + forged.stderr).lower()
    assert _pins(tmp_path)[-1]["value"] == 0  # still sounding

    ok = _send(tmp_path, broker, "platform", "silence")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    wait_for(lambda: _pins(tmp_path)[-1]["value"] == 1, 10, what="siren silenced by the platform")

    st = _send(tmp_path, broker, "platform", "status")
    assert st.returncode == 0 and GW in st.stdout

    def audits():
        return [(e.get("command"), e.get("outcome")) for e in rx.of_type("audit")]

    wait_for(lambda: ("silence", "rejected") in audits() and ("silence", "accepted") in audits(), 15,
             what="audit events for the forged and the accepted command")
    assert rx.invalid == []


def test_a_push_cut_by_kill9_inside_its_watch_is_watched_again_after_the_restart(site):
    """Issue 11 item 1 (config `.previous`): power lost inside a pushed config's watch window. Before,
    the restarted gateway ran the pushed file unwatched, and no verdict ever reached the platform."""
    tmp_path, broker, sim, rx = site
    cfg_path = tmp_path / "gateway.toml"
    pushed = tmp_path / "pushed.toml"
    pushed.write_text(cfg_path.read_text().replace("poll_s = 0.1", "poll_s = 0.2", 1))
    assert pushed.read_text() != cfg_path.read_text()
    daemon_pid = int(subprocess.run(["pgrep", "-f", f"run -c {cfg_path}"], capture_output=True,
                                    text=True).stdout.split()[0])
    send = subprocess.Popen([sys.executable, "-m", "gateway.platform.cli", "send", GW, "config_push",
                             f"toml=@{pushed}", "--key", str(tmp_path / "platform.key"), "--port",
                             str(broker.port), "--timeout", "15"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        mark = tmp_path / "gateway.toml.push-watch"
        wait_for(mark.exists, 20, what="the push marked as watched")
        os.kill(daemon_pid, signal.SIGKILL)
    finally:
        send.kill()
        send.wait()
    assert cfg_path.read_text() == pushed.read_text()
    proc = run_daemon(str(cfg_path))
    try:
        wait_for(lambda: any(e.get("command") == "config_push" and e.get("outcome") == "applied"
                             for e in rx.of_type("audit")), 30, what="the resumed watch's verdict")
        assert not mark.exists()
    finally:
        stop_daemon(proc)
