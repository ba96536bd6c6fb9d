"""Messages a person reads (issue 10 item 6): one log line per bus fault (not one per point), the
errno said once, recoveries at INFO."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import serial

from gateway.errors import os_reason


def test_pyserial_open_error_is_said_once():
    try:
        serial.serial_for_url("/dev/ttyNOPE-test0", exclusive=True)
    except serial.SerialException as e:
        assert os_reason(e) == "No such file or directory"
    assert os_reason(PermissionError(13, "Permission denied")) == "Permission denied"


def test_a_dead_bus_is_one_log_line_not_one_per_point(tmp_path):
    cfg = tmp_path / "g.toml"
    cfg.write_text(textwrap.dedent("""
        [gateway]
        id = "msg-gw"
        data_dir = "./var"
        control_socket = "./var/c.sock"
        [buses.rs485]
        type = "rtu"
        port = "/dev/ttyNOPE-test1"
        [[sensors]]
        name = "w1"
        bus = "rs485"
        unit = 1
        profile = "water-level-rs485"
        [[sensors]]
        name = "s1"
        bus = "rs485"
        unit = 5
        profile = "smoke-rs485"
        [[rules]]
        sensor = "w1"
        point = "level"
        above = { red = 40 }
        [[rules]]
        sensor = "s1"
        point = "status"
        equals = { red = 1 }
        """))
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "running:" in line:
                break
        # the first poll comes right after "running"; read until the fault line (bounded by the timeout)
        import select
        import time
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 0.2)[0]:
                lines.append(proc.stdout.readline())
    finally:
        proc.terminate()
        lines += proc.communicate(timeout=15)[0].splitlines(keepends=True)
    text = "".join(lines)
    faults = [x for x in lines if "ttyNOPE-test1" in x]
    assert len(faults) == 1, text  # the bus, once; not w1.level and s1.status again
    assert faults[0].count("No such file or directory") == 1 and "Errno" not in faults[0], faults[0]
