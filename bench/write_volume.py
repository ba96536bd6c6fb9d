"""SD-card write volume of `gateway run` (a real process) at 50 sensors with default settings: bytes
written per day, from /proc/PID/io `write_bytes` (what the kernel dirtied in the page cache for the
process: what the card gets), split by file from the write syscalls themselves (strace attached for
the window: outbox db, WAL, state files, log).

Time-compressed: every period of the daemon is divided by `--speed` (polls, telemetry and status
periods, the Recorder's commit interval), so a 180 s window at speed 10 is half an hour of a site; bytes
per day = bytes in the window x 86400 / (window x speed). WAL checkpoints go by pages, not time, so
they scale by themselves. Two cases, as issue 11 asks: every value still, and 10 of the 50 sensors
moving (past the 5 % deadband) every 10 s. Target: under 150 MB/day each.

    python bench/write_volume.py [--speed 10] [--window 180] [--sensors 50] [--commit S]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _daemon as D  # noqa: E402
from mosquitto import Mosquitto  # noqa: E402

TARGET_MB_DAY = 150.0
def _default_commit_s() -> float:
    from gateway.config.model import Outbox
    return getattr(Outbox(), "commit_s", 0.0)


DEFAULTS = {"poll_s": 1.0, "telemetry_period_s": 60.0, "status_period_s": 60.0, "commit_s": _default_commit_s()}
_WRITE = re.compile(r"^\d+\s+(?:write|pwrite64|writev|pwritev2?)\((\d+)<([^>]*)>.*\)\s+=\s+(\d+)")


def _supports_commit_s() -> bool:
    from gateway.config.model import Outbox
    return "commit_s" in Outbox.__dataclass_fields__


def write_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("write_bytes:"))


def kind(path: str, log: str) -> str:
    name = Path(path).name
    if path == log:
        return "log"
    if name.endswith("-wal"):
        return "wal"
    if name.startswith("outbox.sqlite"):
        return "outbox"
    if name.startswith(("alarms", "seq")):
        return "state"
    return "other"


def _mover(buses, n: int, moving: int, every_s: float, stop: threading.Event) -> None:
    """`moving` sensors step their level by 20 % back and forth every `every_s` (past any 5 % deadband)."""
    up = False
    while not stop.wait(every_s):
        up = not up
        for i in range(moving):
            b, unit = divmod(i, D.UNITS_PER_BUS)
            base = 10.0 + (i % 20)
            buses[b].set_value(unit + 1, "level", base * (1.2 if up else 1.0))


def one(n: int, moving: int, speed: float, warmup_s: float, window_s: float, broker: Mosquitto,
        commit_s: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="wv-", dir="/var/tmp") as td:  # a real disk, not a tmpfs
        td = Path(td)
        buses = D.sim_buses(n)
        for b in buses:
            b.start()
        proc = strace = None
        stop = threading.Event()
        try:
            cfg = D.write_config(td, buses, n, poll_s=DEFAULTS["poll_s"] / speed, broker=(broker.host, broker.port))
            outbox = (f"\n[outbox]\ntelemetry_period_s = {DEFAULTS['telemetry_period_s'] / speed}\n"
                      f"status_period_s = {DEFAULTS['status_period_s'] / speed}\n")
            if _supports_commit_s():
                outbox += f"commit_s = {commit_s / speed}\n"
            cfg.write_text(cfg.read_text() + outbox)
            log = td / "daemon.log"
            proc = D.start_daemon(cfg, log)
            D.wait_until(lambda: proc.poll() is not None or (td / "var" / "control.sock").exists(), 30,
                         interval=0.05, what="daemon up")
            if proc.poll() is not None:
                raise RuntimeError(f"gateway run exited: {log.read_text()[-2000:]}")
            mover = threading.Thread(target=_mover, args=(buses, n, moving, 10.0 / speed, stop), daemon=True)
            if moving:
                mover.start()
            time.sleep(warmup_s)
            trace = td / "strace.out"
            strace = subprocess.Popen(["strace", "-f", "-qq", "-y", "-s", "0", "-e", "trace=write,pwrite64,writev,"
                                       "pwritev,pwritev2", "-e", "signal=none", "-o", str(trace), "-p", str(proc.pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # strace attaches to every thread
            wb0, t0 = write_bytes(proc.pid), time.monotonic()
            time.sleep(window_s)
            wb1, t1 = write_bytes(proc.pid), time.monotonic()
            strace.terminate()
            strace.wait(10)
            split: dict[str, int] = {}
            for line in trace.read_text(errors="replace").splitlines():
                m = _WRITE.match(line)
                if m:
                    k = kind(m.group(2), str(log))
                    split[k] = split.get(k, 0) + int(m.group(3))
        finally:
            stop.set()
            if strace is not None and strace.poll() is None:
                strace.kill()
            if proc is not None:
                D.stop_daemon(proc)
            for b in buses:
                b.stop()
    per_day = 86400.0 / ((t1 - t0) * speed)
    return {"sensors": n, "moving": moving, "speed": speed, "window_s": t1 - t0,
            "mb_per_day": (wb1 - wb0) * per_day / 1e6,
            "split_mb_per_day": {k: v * per_day / 1e6 for k, v in sorted(split.items())}}


def measure(sensors: int = 50, speed: float = 10.0, warmup_s: float = 15.0, window_s: float = 180.0,
            commit_s: float | None = None) -> dict:
    """commit_s: the [outbox] commit_s to measure with (default: the firmware's default)."""
    commit_s = DEFAULTS["commit_s"] if commit_s is None else commit_s
    if shutil.which("strace") is None:
        raise RuntimeError("write_volume needs strace for the split by file (apt-get install strace)")
    with tempfile.TemporaryDirectory(prefix="wv-broker-") as bd:
        broker = Mosquitto(bd).start()
        try:
            rows = [one(sensors, moving, speed, warmup_s, window_s, broker, commit_s) for moving in (0, 10)]
        finally:
            broker.close()
    return {"rows": rows, "target_mb_day": TARGET_MB_DAY, "commit_s": commit_s if _supports_commit_s() else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", type=int, default=50)
    ap.add_argument("--speed", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--window", type=float, default=180.0)
    ap.add_argument("--commit", type=float, default=None, help="[outbox] commit_s (default: the default)")
    a = ap.parse_args()
    r = measure(a.sensors, a.speed, a.warmup, a.window, a.commit)
    for row in r["rows"]:
        split = ", ".join(f"{k} {v:.1f}" for k, v in row["split_mb_per_day"].items())
        ok = "met" if row["mb_per_day"] < TARGET_MB_DAY else "NOT met"
        print(f"{row['sensors']} sensors, {row['moving']} moving: {row['mb_per_day']:.1f} MB/day written "
              f"(target < {TARGET_MB_DAY:g}: {ok}); write syscalls by file, MB/day: {split}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
