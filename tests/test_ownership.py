"""One daemon owns a gateway (issue 10 item 3): a second `gateway run` on the same data directory,
serial port or GPIO chip is refused at once, naming the first; the first keeps sounding and
delivering. Real processes, real flock(2), the sim GPIO's pin record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from drivers.sim.modbus_device import SimBus
from gateway.config import load_config
from gateway.service import ownership
from tests.daemonkit import run_daemon, siren_on, stop_daemon, write_config
from tests.mosquitto import Mosquitto
from tests.ptys import wait_until

UPLINK = """
[uplink]
host = "127.0.0.1"
port = {port}

[outbox]
commit_s = 0.5  # delivery marks are group-committed: the history says "delivered" within a test's wait
"""


def _gateway(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_a_second_daemon_on_the_same_data_dir_is_refused_and_the_first_still_sounds_and_delivers(tmp_path):
    from gateway.platform.receiver import Receiver

    with Mosquitto(tmp_path / "broker") as broker, SimBus.tcp("127.0.0.1", 0) as sim:
        cfg_path = write_config(tmp_path, "own-gw", sim.port, extra=UPLINK.format(port=broker.port))
        sim.add_device(1, load_config(cfg_path).sensors["garage-b2-water"].profile, {"level": 2.0})
        rx = Receiver("127.0.0.1", broker.port).start()
        try:
            first = run_daemon(cfg_path)
            try:
                wait_until(lambda: (tmp_path / "var" / "control.sock").exists(), timeout=15, what="first daemon up")
                lock = tmp_path / "var" / ownership.DATA_LOCK
                assert ownership.holder(str(lock))["pid"] == first.pid
                started = time.monotonic()
                second = _gateway("run", "-c", cfg_path)
                took = time.monotonic() - started
                assert second.returncode != 0
                err = second.stdout + second.stderr
                assert f"data directory {tmp_path / 'var'} is owned by another gateway daemon, pid {first.pid}" in err
                assert "gateway run -c" in err and f"kill {first.pid}" in err, err
                assert took < 10  # refused at once, not after a socket timeout
                # The second touched nothing: no relay change of its own, no shutdown of the first's sirens.
                assert "relay" not in err and "restored" not in err, err
                assert first.poll() is None
                # ... and the first still sounds and delivers.
                sim.set_value(1, "level", 45.0)
                wait_until(lambda: siren_on(tmp_path), timeout=10, what="siren ON after the refused second")
                wait_until(lambda: any(e.get("level") == "red" for e in rx.of_type("alarm")), timeout=15,
                           what="the red alarm delivered to the platform")
                status = json.loads(_gateway("status", "--json", "-c", cfg_path).stdout)
                assert status["outbox"].get("write_errors", 0) == 0
                # delivered, and still in the history `gateway events` reads from the outbox
                wait_until(lambda: "raised red" in (ev := _gateway("events", "--type", "alarm", "-c", cfg_path).stdout)
                           and "[not yet at the platform]" not in ev, timeout=15, what="the alarm delivered, in history")
            finally:
                out = stop_daemon(first)
            assert "UNIQUE constraint" not in out, out
        finally:
            rx.stop()


def test_claims_count_within_a_process_and_are_refused_across_processes(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    a = ownership.Ownership(str(data)).acquire()
    b = ownership.Ownership(str(data)).acquire()  # a reload in the same process: counted, not refused
    probe = (f"import sys; sys.path.insert(0, {os.getcwd()!r}); from gateway.service import ownership as o\n"
             f"try:\n o.Ownership({str(data)!r}).acquire(); print('TAKEN')\n"
             f"except o.OwnedElsewhere as e: print('REFUSED', e)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout
    assert out.startswith("REFUSED") and f"pid {os.getpid()}" in out
    a.release()
    assert ownership.holder(ownership.data_lock_path(str(data))) is not None  # b still holds it
    b.release()
    assert ownership.holder(ownership.data_lock_path(str(data))) is None
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout
    assert out.startswith("TAKEN")


def test_a_serial_port_is_owned_by_its_real_device_whatever_name_the_config_uses(tmp_path):
    """Two data directories, one USB adapter named twice (by-id symlink and /dev/ttyUSB0)."""
    dev = tmp_path / "ttyUSB9"
    dev.write_text("")
    alias = tmp_path / "usb-FTDI_FT232R-if00-port0"
    alias.symlink_to(dev)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = ownership.Ownership(str(tmp_path / "a"), {"rs485": str(dev)}).acquire()
    try:
        probe = (f"import sys; sys.path.insert(0, {os.getcwd()!r}); from gateway.service import ownership as o\n"
                 f"try:\n o.Ownership({str(tmp_path / 'b')!r}, {{'bus2': {str(alias)!r}}}).acquire(); print('TAKEN')\n"
                 f"except o.OwnedElsewhere as e: print('REFUSED', e)")
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout
        assert out.startswith("REFUSED"), out
        assert f"serial port {alias} (bus bus2) is owned by another gateway daemon, pid {os.getpid()}" in out
    finally:
        first.release()


def test_gpio_chip_is_claimed_for_real_backends_only():
    assert ownership.gpio_chip("sim") is None
    assert ownership.gpio_chip("rpi") in ("/dev/gpiochip0", "/dev/gpiomem")


def test_a_daemon_that_cannot_bind_its_control_socket_does_not_run(tmp_path):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        cfg_path = write_config(tmp_path, "nosock-gw", sim.port)
        text = open(cfg_path).read().replace('control_socket = "./var/control.sock"',
                                             'control_socket = "./var/not-a-socket"')
        open(cfg_path, "w").write(text)
        (tmp_path / "var").mkdir()
        (tmp_path / "var" / "not-a-socket").write_text("a regular file\n")
        res = _gateway("run", "-c", cfg_path)
        assert res.returncode != 0
        err = res.stdout + res.stderr
        assert "not-a-socket exists and is not a socket" in err, err
        assert "running:" not in err  # it never said it was running


def test_scan_is_refused_while_a_daemon_holds_the_site_even_without_its_socket(tmp_path):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        cfg_path = write_config(tmp_path, "scan-gw", sim.port)
        with ownership.Ownership(str(tmp_path / "var")):
            r = _gateway("scan", "garage", "--units", "1-2", "-c", cfg_path)
    assert r.returncode == 1
    assert f"pid {os.getpid()}" in r.stderr and "owns bus garage" in r.stderr, r.stderr


def test_a_lock_file_left_by_another_user_still_locks(tmp_path, monkeypatch):
    """`sudo gateway run` once leaves root's 0644 lock file behind; the service user must still start.
    (Another user cannot run this venv's Python here, so the EACCES it would get is injected.)"""
    ownership.Ownership(str(tmp_path)).acquire().release()  # the file is left behind, free
    lock = ownership.data_lock_path(str(tmp_path))
    real_open = os.open

    def as_another_user(path, flags, *a):
        if path == lock and flags & (os.O_RDWR | os.O_WRONLY):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *a)

    monkeypatch.setattr(ownership.os, "open", as_another_user)
    held = ownership.Ownership(str(tmp_path)).acquire()
    monkeypatch.setattr(ownership.os, "open", real_open)
    try:
        probe = (f"import sys; sys.path.insert(0, {os.getcwd()!r}); from gateway.service import ownership as o\n"
                 f"try:\n o.Ownership({str(tmp_path)!r}).acquire(); print('TAKEN')\n"
                 f"except o.OwnedElsewhere as e: print('REFUSED', e)")
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout
        assert out.startswith("REFUSED"), out  # locked read-only, still a lock
    finally:
        held.release()
