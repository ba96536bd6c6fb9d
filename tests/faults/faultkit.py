"""What every fault-injection test needs: a test config, `gateway run` as a process the test can
kill -9, its state seen through the control socket, the sim GPIO pin record, the outbox file read
with sqlite3, and the completeness check the platform relies on (every seq either received or
declared evicted).

    cfg = write_config(tmp_path, BUSES_AND_SENSORS, broker_port=broker.port)
    gw = GatewayProcess(cfg, tmp_path / "daemon.log").start()
    gw.wait_up()
    gw.status()["devices"]["garage-b2-water"]["polls"]
    gw.kill9(); gw.start()
    missing = missing_seqs(rx, GW, outbox_max_seq(tmp_path / "var" / "outbox.sqlite"))
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from gateway.control import call
from gateway.errors import GatewayError

REPO = Path(__file__).resolve().parents[2]
GW = "faults-gw"
SIREN_PIN = 17
SIREN = "garage-siren"


def write_config(tmp_path, body: str, *, broker_port: int | None = None, broker_host: str = "127.0.0.1",
                 data_dir: str = "./var", control_socket: str = "./var/control.sock",
                 record: str = "./var/pins.jsonl", outbox: str = "telemetry_period_s = 1\nstatus_period_s = 5",
                 name: str = "gateway.toml") -> str:
    """A config file: [gateway], the sim GPIO with one active-low siren on pin 17, `body` (buses,
    sensors, rules), an [uplink] when `broker_port` is given, and [outbox]."""
    uplink = "" if broker_port is None else textwrap.dedent(f"""
        [uplink]
        host = "{broker_host}"
        port = {broker_port}
        topic_root = "city/v1"
        client_id = "{GW}"
        keepalive_s = 5
        replay_per_s = 1000
        """)
    text = textwrap.dedent(f"""
        [gateway]
        id = "{GW}"
        data_dir = "{data_dir}"
        control_socket = "{control_socket}"

        [gpio]
        backend = "sim"
        record = "{record}"

        [outputs.{SIREN}]
        pin = {SIREN_PIN}
        active_low = true
        pattern = {{ yellow = "steady", orange = "steady", red = "steady" }}
        """) + textwrap.dedent(body) + uplink + "\n[outbox]\n" + textwrap.dedent(outbox) + "\n"
    path = Path(tmp_path) / name
    path.write_text(text)
    return str(path)


class GatewayProcess:
    """`gateway run -c CONFIG` as a child process; its output goes to a log file (a pipe nobody reads
    would fill up and freeze the daemon's logging thread). `prefix` runs it under e.g. `ip netns exec`."""

    def __init__(self, config_path: str, log_path, prefix: tuple[str, ...] = ()):
        self.config_path = str(config_path)
        self.log_path = Path(log_path)
        self.prefix = tuple(prefix)
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        base = Path(self.config_path).parent
        text = Path(self.config_path).read_text()
        self.socket = str(base / _toml_value(text, "control_socket"))
        self.data_dir = base / _toml_value(text, "data_dir")
        self.record = base / _toml_value(text, "record")

    @property
    def outbox_path(self) -> Path:
        return self.data_dir / "outbox.sqlite"

    def start(self) -> "GatewayProcess":
        assert not self.running, "already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts} at {time.time():.3f} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen([*self.prefix, sys.executable, "-m", "gateway.cli", "run",
                                          "-c", self.config_path],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=REPO)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit code (None if it was not running)."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return proc.returncode

    def status(self, timeout: float = 5.0) -> dict | None:
        """The daemon's `status` over the control socket (what `gateway status --json` prints), or None."""
        try:
            return call(self.socket, "status", timeout=timeout)
        except (GatewayError, OSError):
            return None

    def wait_up(self, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{self.log_tail()}")
            st = self.status(timeout=2.0)
            if st is not None:
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"gateway not answering on {self.socket} after {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """The real `gateway` CLI against this daemon's config."""
        return subprocess.run([sys.executable, "-m", "gateway.cli", *args, "-c", self.config_path],
                              capture_output=True, text=True, timeout=timeout, cwd=REPO)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def rss_kb(self) -> int:
        """VmRSS of the daemon from /proc/PID/status, in kB."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError(f"no VmRSS for pid {self.pid}")

    def pins(self, pin: int = SIREN_PIN) -> list[dict]:
        """Changes of `pin` in the sim GPIO record ({"t", "pin", "value"}; active-low: 0 is ON)."""
        return [p for p in read_pins(self.record) if p["pin"] == pin]


def _toml_value(text: str, key: str) -> str:
    import tomllib

    doc = tomllib.loads(text)
    for table in ("gateway", "gpio"):
        if key in doc.get(table, {}):
            return doc[table][key]
    raise KeyError(key)


def read_pins(path) -> list[dict]:
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a half-written last line of a process killed mid-write
    return out


def siren_turned_on(changes: list[dict]) -> list[dict]:
    """Pin changes that switched the active-low siren ON."""
    return [p for p in changes if p["value"] == 0]


def outbox_max_seq(where) -> int:
    """The highest seq the outbox ever gave out. `where` is a GatewayProcess or the file's path. While
    the daemon runs it holds the file exclusively (no -shm to SIGBUS on), so it is asked over the control
    socket; otherwise the file is read with sqlite3 (delivered rows may be deleted by housekeeping;
    sqlite_sequence keeps the high-water mark of the AUTOINCREMENT column)."""
    if isinstance(where, GatewayProcess):
        if where.running:
            return where.status()["outbox"]["next_seq"] - 1
        where = where.outbox_path
    con = sqlite3.connect(str(where), timeout=10)
    try:
        top = con.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
        row = con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return max(top, row[0] if row else 0)
    finally:
        con.close()


def missing_seqs(rx, gateway: str, max_seq: int) -> list[int]:
    """Seqs 1..max_seq neither received by the platform nor inside a declared `gap` range."""
    got = rx.seqs(gateway)
    declared = rx.declared_gaps(gateway)
    return [s for s in range(1, max_seq + 1)
            if s not in got and not any(lo <= s <= hi for lo, hi in declared)]


def ranges(seqs: list[int]) -> list[tuple[int, int]]:
    """[3, 4, 5, 9] -> [(3, 5), (9, 9)]: short failure messages."""
    out: list[tuple[int, int]] = []
    for s in sorted(seqs):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def ts_of(event: dict) -> float:
    from datetime import datetime

    return datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()


def report(*lines: str) -> None:
    """Figures for the log of the run (shown with -s, and in the terminal summary via the fixture)."""
    for line in lines:
        print(f"[faults] {line}", file=sys.stderr, flush=True)
        REPORT.append(line)


REPORT: list[str] = []


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip() not in ("", "0", "false", "no")
