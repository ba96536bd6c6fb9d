"""SD-card write volume of `gateway run` (a real process) at 50 sensors with default settings: bytes
written per day, from /proc/PID/io `write_bytes` (what the kernel dirtied in the page cache for the
process: what the card gets), split by file from the write syscalls themselves (strace attached for
the window: outbox db, WAL, state files, log).

Time-compressed: every period of the daemon is divided by `--speed` (polls, telemetry and status
periods, the Recorder's commit interval), so a 180 s window at speed 10 is half an hour of a site; bytes
per day = bytes in the window x 86400 / (window x speed). WAL checkpoints go by pages, not time, so
they scale by themselves. Two cases, as issue 11 asks: every value still, and 10 of the 50 sensors
moving (past the 5 % deadband) every 10 s. Target: under 150 MB/day each.

The steady state: delivered rows stay a day as `gateway events`' history (outbox.KEEP_DELIVERED_S, by
event time), so on a site housekeeping deletes a day-old row for every row recorded, and freed pages are
reused. A compressed window never gets there by itself, so the outbox is prefilled (with the real
Outbox class) with a day of that site's delivered history whose timestamps make its oldest rows expire
at the compressed rate: housekeeping deletes as fast as the daemon records, in a file of a day's rows.

`--offline` drives the Outbox alone with the same site (simulated time, a day of history first) and
reads the WAL's frame headers to say which B-tree each written page belongs to (dbstat): where the WAL
bytes go.

    python bench/write_volume.py [--speed 10] [--window 180] [--sensors 50] [--commit S] [--no-prefill]
    python bench/write_volume.py --offline [--hours 2]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import struct
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


STATUS = {"uptime_s": 86400.0, "cpu_temp_c": 51.2, "disk_free_mb": 12345.6,
          "outbox": {"state": "ok", "pending": 0, "depth": {"alarm": 0, "fault": 0, "audit_status": 0, "telemetry": 0},
                     "oldest_pending_age_s": None, "evicted": 0, "gaps_merged": 0, "failed": 0, "write_errors": 0},
          "recorder": {k: 0 for k in ("shed_telemetry", "dropped_urgent", "dropped_unwritable", "dropped_invalid",
                                      "dropped_marks", "dropped_calls")}, "load_1m": 0.42}


def _reading(i: int, moving: bool, reason: str) -> dict:
    """A report of the site's sensor i as the aggregator makes it (still, or moving 20 % every 10 s)."""
    v = 10.0 + i % 20
    if reason == "period" and not moving:
        return {"sensor": f"w{i + 1}", "point": "level", "unit": "cm", "quality": "good", "reason": "period",
                "period_s": 60.001, "count": 60, "bad": 0, "min": v, "max": v, "mean": v, "last": v}
    n = 60 if reason == "period" else 10
    return {"sensor": f"w{i + 1}", "point": "level", "unit": "cm", "quality": "good", "reason": reason,
            "period_s": 60.001 if reason == "period" else 10.002, "count": n, "bad": 0, "min": v,
            "max": v * 1.2, "mean": float(f"{v * 1.1 + 0.01 * n:.7g}"), "last": v * 1.2}


def site_commits(n: int, moving: int, commit_s: float, seconds: float, start: float):
    """(events, end of the commit's interval) of `seconds` of the site, one group commit per commit_s:
    a report per sensor a minute, a deadband report of each moving sensor every 10 s, status a minute."""
    from gateway.record.outbox import Event

    t, k = start, 0
    while t < start + seconds:
        evs = []
        for j in range(int(commit_s // 10) or 1):
            evs += [Event("telemetry", _reading(i, True, "deadband"), t + j * 10) for i in range(moving)]
        if k % max(1, int(60 // commit_s)) == 0:
            evs += [Event("telemetry", _reading(i, i < moving, "period"), t) for i in range(n)]
            evs.append(Event("status", STATUS, t))
        k += 1
        t += commit_s
        yield evs, t


def prefill_history(path: Path, gateway_id: str, n: int, moving: int, speed: float, commit_s: float) -> int:
    """A day of the site's delivered history in a fresh outbox, its timestamps squeezed so the oldest
    rows expire now and the rest at `speed` times the real rate. Returns the rows written."""
    from gateway.record.outbox import Outbox

    now = time.time()
    ob = Outbox(path, gateway_id)
    ob.db.execute("PRAGMA synchronous=OFF")  # a fixture, not the measurement
    marks = []
    for evs, _t in site_commits(n, moving, commit_s or 30.0, 86400.0, 0.0):
        squeezed = [e._replace(ts=now - 86400 + 60 + e.ts / speed) for e in evs]
        marks = ob.commit(squeezed, marks)
    ob.commit([], marks)
    rows = ob.stats()["rows"]
    ob.close()
    return rows


def one(n: int, moving: int, speed: float, warmup_s: float, window_s: float, broker: Mosquitto,
        commit_s: float, prefill: bool = True) -> dict:
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
            prefill_rows = 0
            if prefill:
                (td / "var").mkdir(exist_ok=True)
                prefill_rows = prefill_history(td / "var" / "outbox.sqlite", f"bench-{n}", n, moving, speed, commit_s)
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
            wb0, t0, wall0 = write_bytes(proc.pid), time.monotonic(), time.time()
            time.sleep(window_s)
            wb1, t1, wall1 = write_bytes(proc.pid), time.monotonic(), time.time()
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
        recorded = _recorded(td / "var" / "outbox.sqlite", wall0, wall1)
    per_day = 86400.0 / ((t1 - t0) * speed)
    return {"sensors": n, "moving": moving, "speed": speed, "window_s": t1 - t0, "prefill_rows": prefill_rows,
            "mb_per_day": (wb1 - wb0) * per_day / 1e6,
            "split_mb_per_day": {k: v * per_day / 1e6 for k, v in sorted(split.items())},
            "recorded_per_day": {k: round(v * per_day) for k, v in recorded.items()}}


def _recorded(path: Path, t0: float, t1: float) -> dict:
    """Events the daemon recorded in the window, by type (a fault or alarm is a commit of its own)."""
    import sqlite3

    con = sqlite3.connect(str(path))
    try:
        return dict(con.execute("SELECT type, count(*) FROM events WHERE ts >= ? AND ts < ? GROUP BY type",
                                (t0, t1)).fetchall())
    except sqlite3.Error:
        return {}
    finally:
        con.close()


def measure(sensors: int = 50, speed: float = 10.0, warmup_s: float = 15.0, window_s: float = 180.0,
            commit_s: float | None = None, prefill: bool = True) -> dict:
    """commit_s: the [outbox] commit_s to measure with (default: the firmware's default)."""
    commit_s = DEFAULTS["commit_s"] if commit_s is None else commit_s
    if shutil.which("strace") is None:
        raise RuntimeError("write_volume needs strace for the split by file (apt-get install strace)")
    with tempfile.TemporaryDirectory(prefix="wv-broker-") as bd:
        broker = Mosquitto(bd).start()
        try:
            rows = [one(sensors, moving, speed, warmup_s, window_s, broker, commit_s, prefill) for moving in (0, 10)]
        finally:
            broker.close()
    return {"rows": rows, "target_mb_day": TARGET_MB_DAY, "commit_s": commit_s if _supports_commit_s() else None}


def _frames(wal: str, last: list) -> list[int]:
    """Page numbers of the WAL frames written since `last` ([frame index, salt]; the WAL restarts with a
    new salt after a checkpoint)."""
    out = []
    with open(wal, "rb") as f:
        hdr = f.read(32)
        if len(hdr) < 32:
            return out
        page, salt = struct.unpack(">I", hdr[8:12])[0], hdr[16:24]
        if salt != last[1]:
            last[0], last[1] = 0, salt
        f.seek(32 + last[0] * (page + 24))
        while True:
            fh = f.read(24)
            if len(fh) < 24 or fh[8:16] != salt:
                return out
            out.append(struct.unpack(">I", fh[:4])[0])
            f.seek(page, 1)
            last[0] += 1


def offline(sensors: int = 50, moving: int = 10, hours: float = 2.0, commit_s: float | None = None,
            autocheckpoint: int | None = None) -> dict:
    """The Outbox alone, the site's commits in simulated time after a day of history: WAL frames per
    group commit by B-tree, and MB/day of WAL and of all writes (wchar) from this process."""
    import types

    from gateway.record import outbox as outbox_mod
    from gateway.record.outbox import Outbox

    commit_s = commit_s or DEFAULTS["commit_s"] or 30.0
    clock = [time.time() - 3 * 86400]
    real_time = outbox_mod.time
    outbox_mod.time = types.SimpleNamespace(time=lambda: clock[0])  # housekeeping's "now" is the site's
    try:
        with tempfile.TemporaryDirectory(prefix="wv-offline-", dir="/var/tmp") as td:
            path = os.path.join(td, "outbox.sqlite")
            ob = Outbox(path, f"bench-{sensors}")
            if autocheckpoint is not None:  # the checkpoint policy tried (SQLite's default: 1000 pages)
                ob.db.execute(f"PRAGMA wal_autocheckpoint={int(autocheckpoint)}")

            def run(seconds, frames=None):
                marks, last, k = [], [0, None], 0
                for evs, t in site_commits(sensors, moving, commit_s, seconds, clock[0]):
                    clock[0] = t
                    marks = ob.commit(evs, marks)
                    k += 1
                    if k % 6 == 0:  # the Recorder's housekeeping: every six commits
                        ob.housekeep()
                    if frames is not None:
                        frames.extend(_frames(path + "-wal", last))
                return k

            run(86400 + 3600)
            io0 = _io()
            frames: list[int] = []
            commits = run(hours * 3600, frames)
            io1 = _io()
            owner = {pg: name for name, pg in ob.db.execute("SELECT name, pageno FROM dbstat")}
            owner[1] = "page 1 (header, freelist count)"
            page = ob._page_size
            rows = ob.stats()["rows"]
            ob.close()
    finally:
        outbox_mod.time = real_time
    per_day = 86400 / (hours * 3600)
    by = collections.Counter(owner.get(pg, "freelist") for pg in frames)
    return {"sensors": sensors, "moving": moving, "commit_s": commit_s, "page_size": page, "rows": rows,
            "autocheckpoint": autocheckpoint,
            "commits": commits, "frames_per_commit": len(frames) / commits,
            "wal_mb_day": len(frames) * (page + 24) * per_day / 1e6,
            "wchar_mb_day": (io1["wchar"] - io0["wchar"]) * per_day / 1e6,
            "by_btree": {k: {"frames_per_commit": v / commits, "mb_day": v * (page + 24) * per_day / 1e6}
                         for k, v in by.most_common()}}


def _io() -> dict:
    with open("/proc/self/io") as f:
        return {line.split(":")[0]: int(line.split()[1]) for line in f}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", type=int, default=50)
    ap.add_argument("--speed", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--window", type=float, default=180.0)
    ap.add_argument("--commit", type=float, default=None, help="[outbox] commit_s (default: the default)")
    ap.add_argument("--no-prefill", action="store_true", help="start from an empty outbox (not the steady state)")
    ap.add_argument("--offline", action="store_true", help="the Outbox alone: WAL pages by B-tree")
    ap.add_argument("--hours", type=float, default=2.0, help="--offline: simulated hours measured")
    a = ap.parse_args()
    if a.offline:
        for moving in (0, 10):
            o = offline(a.sensors, moving, a.hours, a.commit)
            print(f"{o['sensors']} sensors, {o['moving']} moving, {o['page_size']}-byte pages, {o['rows']:,} rows: "
                  f"WAL {o['wal_mb_day']:.1f} MB/day ({o['frames_per_commit']:.1f} frames a commit), all writes "
                  f"{o['wchar_mb_day']:.1f} MB/day")
            for name, b in o["by_btree"].items():
                print(f"    {name:<34} {b['frames_per_commit']:5.2f} frames/commit {b['mb_day']:6.1f} MB/day")
        return 0
    r = measure(a.sensors, a.speed, a.warmup, a.window, a.commit, not a.no_prefill)
    for row in r["rows"]:
        split = ", ".join(f"{k} {v:.1f}" for k, v in row["split_mb_per_day"].items())
        ok = "met" if row["mb_per_day"] < TARGET_MB_DAY else "NOT met"
        print(f"{row['sensors']} sensors, {row['moving']} moving: {row['mb_per_day']:.1f} MB/day written "
              f"(target < {TARGET_MB_DAY:g}: {ok}); write syscalls by file, MB/day: {split}; "
              f"events recorded per day: {row['recorded_per_day']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
