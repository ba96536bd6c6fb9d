"""`gateway run` with every file it reads at start damaged (issue 11 item 1): a malformed alarm state,
an outbox with 4 KB of random bytes in its middle. The daemon starts, the uplink runs, the platform
is told (fault + gap), seq continues above what the damaged file held, and a new alarm sounds."""

from __future__ import annotations

import json
import os

from drivers.sim.modbus_device import SimBus
from gateway.config import load_config
from gateway.platform import Receiver
from gateway.record import Event, Outbox
from gateway.record.seqmark import SeqMark
from tests.daemonkit import run_daemon, stop_daemon, write_config
from tests.mosquitto import Mosquitto, wait_for

GW = "storage-gw"


def _pins(tmp_path):
    p = tmp_path / "var" / "pins.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def test_damaged_alarm_state_and_outbox_at_start_the_daemon_runs_and_says_so(tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    (var / "alarms.json").write_text(json.dumps({"v": 1, "counters": {"garage-b2-water.level": "3x"},
                                                 "alarms": [{"rule": "garage-b2-water.level", "level": "red"}]}))
    ob = Outbox(var / "outbox.sqlite", GW, mark=SeqMark(str(var)))
    for i in range(60):
        ob.add_many([Event("telemetry", {"i": i, "pad": "x" * 2000})] * 5)
    old_max = ob.next_seq - 1
    ob.close()
    size = (var / "outbox.sqlite").stat().st_size
    with open(var / "outbox.sqlite", "r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(4096))
    with Mosquitto(tmp_path / "broker") as broker, SimBus.tcp("127.0.0.1", 0) as sim:
        path = write_config(tmp_path, GW, sim.port, above={"red": 40}, extra=f"""
            [uplink]
            host = "127.0.0.1"
            port = {broker.port}
            client_id = "{GW}"

            [outbox]
            status_period_s = 1
            commit_s = 0.5
        """)
        sim.add_device(1, load_config(path).sensors["garage-b2-water"].profile, {"level": 2.0})
        rx = Receiver("127.0.0.1", broker.port).start()
        proc = run_daemon(path)
        try:
            wait_for(lambda: rx.presence.get(GW, {}).get("state") == "online", 30, what="birth: the uplink runs")
            wait_for(lambda: any(e.get("component") == "alarm_state" for e in rx.of_type("fault")), 20,
                     what="the damaged alarm state reported")
            wait_for(lambda: any(g["reason"] == "outbox_corrupt" for g in rx.of_type("gap")), 20,
                     what="the lost seqs declared")
            sim.set_value(1, "level", 45.0)
            wait_for(lambda: any(p["value"] == 0 for p in _pins(tmp_path)), 10, what="a new alarm sounds")
            wait_for(lambda: any(e.get("level") == "red" for e in rx.of_type("alarm")), 20, what="alarm delivered")
            alarm = next(e for e in rx.of_type("alarm") if e.get("level") == "red")
            assert alarm["seq"] > old_max, "seq went back: the platform would drop it as a duplicate"
            wait_for(lambda: rx.of_type("status"), 20, what="a status event")
            status = rx.of_type("status")[-1]
            assert "shed_telemetry" in status["recorder"] and status["outbox"]["lost"]["reason"] == "outbox_corrupt"
        finally:
            out = stop_daemon(proc)
            rx.close()
    assert "Traceback" not in out
    assert any(p.name.startswith("outbox.sqlite.corrupt-") for p in var.iterdir())
    assert any(p.name.startswith("alarms.json.corrupt-") for p in var.iterdir())


def test_a_fatal_signal_is_logged_before_the_process_dies(tmp_path):
    """SIGBUS (a mapped file whose disk went away) or SIGSEGV: the journal says why, with every
    thread's stack, so the restart that follows is explained."""
    import signal

    with SimBus.tcp("127.0.0.1", 0) as sim:
        path = write_config(tmp_path, GW, sim.port)
        sim.add_device(1, load_config(path).sensors["garage-b2-water"].profile, {"level": 2.0})
        proc = run_daemon(path)
        try:
            wait_for(lambda: (tmp_path / "var" / "control.sock").exists(), 20, what="daemon up")
            proc.send_signal(signal.SIGBUS)
            proc.wait(10)
        finally:
            out = stop_daemon(proc)
    assert proc.returncode == -signal.SIGBUS
    assert "Fatal Python error: Bus error" in out and "Thread" in out


def test_a_slow_outbox_open_does_not_delay_a_new_alarm(tmp_path, monkeypatch):
    """Checking a big outbox on a slow card takes seconds at start: the buses and the sirens run
    meanwhile, and the alarm's event waits in the Recorder's lanes until the outbox is open."""
    import threading

    from drivers.gpio.sim import SimGpio
    from gateway.record import outbox_file
    from gateway.service.daemon import Daemon

    release = threading.Event()
    real_check = outbox_file.check
    monkeypatch.setattr(outbox_file, "check", lambda db: (release.wait(20), real_check(db))[1])
    with SimBus.tcp("127.0.0.1", 0) as sim:
        path = write_config(tmp_path, GW, sim.port, above={"red": 40})
        cfg = load_config(path)
        sim.add_device(1, cfg.sensors["garage-b2-water"].profile, {"level": 45.0})  # red from the first poll
        pins = SimGpio()
        d = Daemon(cfg, gpio=pins)
        starter = threading.Thread(target=d.start, daemon=True)
        starter.start()
        try:
            wait_for(lambda: any(e["value"] == 0 for e in pins.history(17)), 10,
                     what="the siren ON while the outbox is still being checked")
            assert d.outbox is None and d.recorder.lanes.urgent_depth() >= 1
        finally:
            release.set()
            starter.join(20)
        try:
            assert d.recorder.flush(10)
            rows = [json.loads(b) for (b,) in d.outbox.db.execute("SELECT body FROM events WHERE type = 'alarm'")]
            assert rows and rows[0]["level"] == "red"
        finally:
            d.stop()
