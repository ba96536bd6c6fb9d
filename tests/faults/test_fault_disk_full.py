"""Disk full: data_dir (the outbox, the alarm state) on a 16 MB tmpfs, the broker away so the outbox has
to grow, then the filesystem filled to the last byte. The outbox turns unwritable: telemetry is dropped
and counted (or evicted with a declared `gap`), the alarm raised meanwhile is kept, the siren sounds on
time (its pin record lives outside the full filesystem), the daemon stays up and `gateway status`
answers. When the filler is deleted events are written again, and once the broker is back the platform
gets the alarm, the outbox fault and its recovery (with the dropped count) and fresh telemetry, with
no undeclared gap. Needs root and mount; otherwise skipped with the reason."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time

import pytest

from drivers.sim.modbus_device import SimBus
from faultkit import GW, SIREN_PIN, missing_seqs, outbox_max_seq, ranges, report, ts_of, write_config
from gateway.config import load_config
from tests.daemonkit import garage_toml
from tests.mosquitto import wait_for


@pytest.fixture
def small_fs(tmp_path):
    """A 16 MB tmpfs at tmp_path/data, unmounted at teardown whatever happened. Not 2 MB: SQLite
    checkpoints its WAL only at ~4 MB (1000 pages), so a smaller disk would fill up again by itself."""
    why = None
    if os.geteuid() != 0:
        why = "disk-full test needs root to mount a small tmpfs (running as uid %d)" % os.geteuid()
    elif shutil.which("mount") is None or shutil.which("umount") is None:
        why = "disk-full test needs mount/umount (util-linux), not found"
    d = tmp_path / "data"
    d.mkdir()
    if why is None:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(d)], capture_output=True, text=True)
        if r.returncode != 0:
            why = f"disk-full test: mounting a tmpfs failed here: {r.stderr.strip() or r.returncode}"
    if why:
        print(why)
        pytest.skip(why)
    try:
        yield d
    finally:
        for attempt in range(20):
            if subprocess.run(["umount", str(d)], capture_output=True).returncode == 0:
                break
            time.sleep(0.25)  # a process of the test may still be closing a file there
        else:
            subprocess.run(["umount", "-l", str(d)], capture_output=True)


def fill(directory) -> int:
    """Write a filler file until the filesystem refuses another byte. Returns bytes written."""
    path = os.path.join(directory, "filler")
    n = 0
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 16, 4096, 1):
            while True:
                try:
                    n += f.write(b"\0" * size)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    return n


def test_disk_full_keeps_alarms_and_the_siren_and_recovers(tmp_path, small_fs, broker, receiver, gateways):
    rx = receiver
    (tmp_path / "run").mkdir()
    with SimBus.tcp("127.0.0.1", 0) as sim:
        body = garage_toml(sim.port, above={"yellow": 15, "red": 40}, hydrant=True)
        path = write_config(tmp_path, body, broker_port=broker.port,
                            data_dir="./data", control_socket="./run/control.sock", record="./pins.jsonl",
                            outbox="telemetry_period_s = 0.2\nstatus_period_s = 2\ndeadband = 0")
        cfg = load_config(path)
        sim.add_device(1, cfg.sensors["garage-b2-water"].profile, {"level": 2.0})
        sim.add_device(2, cfg.sensors["hydrant-3"].profile, {"pressure": 0.3})
        gw = gateways(path, tmp_path / "daemon.log")
        gw.wait_up(30)
        wait_for(lambda: len(rx.of_type("telemetry")) >= 20, 30, what="telemetry at the platform")

        broker.stop()  # the outbox must now grow: nothing is delivered and housekept
        wait_for(lambda: (gw.status() or {}).get("uplink", {}).get("state") not in (None, "online"), 30,
                 what="the uplink to notice the outage")
        filled = fill(small_fs)
        full_at = time.time()
        st = wait_for(lambda: (lambda s: s if s and s["outbox"].get("write_errors", 0) > 0 else None)(gw.status()),
                      60, what="the outbox to fail on the full disk")
        failed_s = time.time() - full_at

        before = len(gw.pins(SIREN_PIN))
        raised_at = time.time()
        sim.set_value(1, "level", 45.0)  # red flood on a full disk
        on = wait_for(lambda: [p for p in gw.pins(SIREN_PIN)[before:] if p["value"] == 0], 5,
                      what="the siren ON with the disk full")
        siren_s = on[0]["t"] - raised_at
        time.sleep(3)  # telemetry keeps coming and has nowhere to go
        r = gw.cli("status", "--json")
        assert r.returncode == 0, r.stderr
        full_status = json.loads(r.stdout)
        assert gw.running, gw.log_tail()
        assert full_status["outputs"]["garage-siren"]["on"] is True
        assert full_status["outbox"]["last_error"] and "full" in full_status["outbox"]["last_error"]

        os.unlink(small_fs / "filler")  # space returns
        freed_at = time.time()
        wait_for(lambda: (gw.status() or {}).get("outbox", {}).get("last_error") is None, 30,
                 what="the outbox writable again")
        broker.start()
        wait_for(lambda: any(e.get("transition") == "raised" and e.get("level") == "red"
                             for e in rx.of_type("alarm")), 120, what="the alarm made on the full disk")
        wait_for(lambda: any(e.get("component") == "outbox" and e.get("state") == "recovered"
                             for e in rx.of_type("fault")), 60, what="the outbox recovery event")
        wait_for(lambda: any(ts_of(e) > freed_at for e in rx.of_type("telemetry")), 60,
                 what="fresh telemetry after the space returned")
        max_seq = outbox_max_seq(gw)
        wait_for(lambda: not missing_seqs(rx, GW, max_seq), 60, what=f"every seq up to {max_seq}")
        siren = gw.pins(SIREN_PIN)
        assert gw.stop() == 0, gw.log_tail()
        log = gw.log()

    outbox_faults = [e for e in rx.of_type("fault") if e.get("component") == "outbox"]
    recovered = [e for e in outbox_faults if e["state"] == "recovered"][0]
    dropped = recovered.get("dropped", 0)
    evicted = sum(e["count"] for e in rx.of_type("gap"))
    red = [e for e in rx.of_type("alarm") if e.get("level") == "red"][0]
    report(f"disk full: filler {filled / 1e6:.2f} MB, outbox failed {failed_s:.1f} s after the disk filled, "
           f"siren ON {siren_s * 1000:.0f} ms after the flood, telemetry dropped {dropped}, evicted {evicted}, "
           f"alarm seq {red['seq']} delivered, outbox faults {[e['state'] for e in outbox_faults]}")
    assert [e["state"] for e in outbox_faults][:1] == ["fault"] and recovered
    assert dropped + evicted > 0  # telemetry really had nowhere to go
    assert abs(ts_of(red) - raised_at) < 2  # the alarm kept with its own time, not the recovery's
    assert siren_s < 1.0
    assert [p["value"] for p in siren if p["t"] >= raised_at][:1] == [0]
    assert not [p for p in siren if p["t"] >= on[0]["t"] and p["value"] == 1], "the siren dropped on a full disk"
    assert rx.undeclared_gaps(GW) == [], ranges(missing_seqs(rx, GW, max_seq))
    assert rx.invalid == [], rx.invalid[:3]
    assert "OUTBOX NOT WRITABLE" in log and "Traceback" not in log
