"""CPU and resident memory of `gateway run` (a real process) at 10, 50 and 200 sensors polled at 1 Hz.

Each sensor is a QDY30A water-level device on simulated Modbus TCP (SimBus, up to 247 units per
bus), watched by a rule that would sound a siren on a simulated relay; the uplink publishes to a
local mosquitto. After every unit has been polled once and a warm-up window, CPU is
utime + stime from /proc/PID/stat over a measurement window (all threads), RSS is VmRSS from
/proc/PID/status at the end of it (VmHWM is the peak). The daemon is started through
bench/_production.py: numpy, which the bench extra brings into the venv and which sqlite-utils
imports when it can, is hidden as it is on a Pi; the RSS with numpy visible is reported besides.
Targets at 50 sensors: RSS <= 45 MB, CPU <= 2 % of one core.

    python bench/daemon_load.py [--sensors 10,50,200] [--warmup 8] [--window 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _daemon as D  # noqa: E402
from mosquitto import Mosquitto  # noqa: E402

TARGET_RSS_MB = 45.0
TARGET_CPU_PCT = 2.0

# What the running daemon imports, grouped: the RSS each group adds, in this order, in a fresh
# interpreter with numpy hidden (a process's RSS after its imports, before it does anything).
IMPORT_GROUPS = [
    ("python + site", []),
    ("asyncio, ssl, logging", ["asyncio", "ssl", "logging.handlers"]),
    ("pyserial", ["serial"]),
    ("pymodbus", ["pymodbus.client"]),
    ("paho-mqtt", ["paho.mqtt.client"]),
    ("sqlite-utils (+click, pluggy, dateutil)", ["sqlite_utils"]),
    ("cryptography (Ed25519, serialization)", ["cryptography.hazmat.primitives.asymmetric.ed25519",
                                               "cryptography.hazmat.primitives.serialization"]),
    ("jsonschema (+referencing, rpds, attrs)", ["jsonschema"]),
    ("gateway + drivers", ["gateway.commands", "gateway.commands.keys", "gateway.cli", "gateway.service.daemon", "gateway.acquire", "gateway.act.loop",
                           "gateway.act.safety", "gateway.record", "gateway.record.health",
                           "gateway.sync.uplink", "gateway.control", "gateway.control.handlers",
                           "gateway.service.notify", "drivers.gpio", "drivers.tcp", "drivers.rtu"]),
]

_IMPORT_PROBE = r"""
import importlib, json, sys, time
sys.modules["numpy"] = None; sys.modules["pandas"] = None
sys.path.insert(0, ROOT)
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
out = []
for label, mods in GROUPS:
    t = time.perf_counter()
    for m in mods:
        try:
            importlib.import_module(m)
        except ImportError:  # not in this version of the gateway
            pass
    out.append((label, rss(), time.perf_counter() - t))
out.append(("modules loaded", len(sys.modules)))
print(json.dumps(out))
"""


def import_profile() -> dict:
    """RSS after each group of imports (MB, cumulative) and the time each group takes to import."""
    code = f"ROOT = {str(D.ROOT)!r}\nGROUPS = {IMPORT_GROUPS!r}\n" + _IMPORT_PROBE
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=D.env()).stdout
    rows = json.loads(out)
    modules = rows.pop()[1]
    steps, prev = [], 0.0
    for label, total, secs in rows:
        steps.append({"group": label, "adds_mb": total - prev, "total_mb": total, "import_s": secs})
        prev = total
    return {"steps": steps, "modules": modules, "import_total_s": sum(s["import_s"] for s in steps[1:])}


def _one(n: int, broker: Mosquitto, warmup_s: float, window_s: float, production: bool = True,
         workdir: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"load-{n}-") as td:
        td = Path(td)
        buses = D.sim_buses(n)
        for b in buses:
            b.start()
        proc = None
        try:
            cfg = D.write_config(td, buses, n, broker=(broker.host, broker.port))
            proc = D.start_daemon(cfg, td / "daemon.log", production=production)
            units = [(bus, u) for bus in buses for u in range(1, min(D.UNITS_PER_BUS, n - buses.index(bus)
                                                                           * D.UNITS_PER_BUS) + 1)]
            D.wait_until(lambda: proc.poll() is not None or all(b.requests(u) > 0 for b, u in units), 30,
                         interval=0.05, what=f"every one of {n} units polled once")
            if proc.poll() is not None:
                raise RuntimeError(f"gateway run exited with {proc.returncode}: "
                                   f"{(td / 'daemon.log').read_text()[-2000:]}")
            time.sleep(warmup_s)  # warm-up window: caches, first telemetry, uplink birth
            polls0 = sum(b.requests(u) for b, u in units)
            th0, cpu0, t0 = D.thread_cpu(proc.pid), D.cpu_s(proc.pid), time.monotonic()
            time.sleep(window_s)  # the measurement window
            th1, cpu1, t1 = D.thread_cpu(proc.pid), D.cpu_s(proc.pid), time.monotonic()
            polls1 = sum(b.requests(u) for b, u in units)
            rss = D.status_kb(proc.pid) / 1024
            hwm = D.status_kb(proc.pid, "VmHWM") / 1024
            nthreads = D.threads(proc.pid)
            dt = t1 - t0
            per_thread: dict[str, float] = {}
            for tid, (name, c) in th1.items():
                key = "main" if tid == proc.pid else name
                per_thread[key] = per_thread.get(key, 0.0) + 100 * (c - th0.get(tid, (name, 0.0))[1]) / dt
        finally:
            if proc is not None:
                D.stop_daemon(proc)
            for b in buses:
                b.stop()
    return {"sensors": n, "buses": len(buses), "window_s": dt, "cpu_pct": 100 * (cpu1 - cpu0) / dt,
            "rss_mb": rss, "hwm_mb": hwm, "threads": nthreads, "polls_per_s": (polls1 - polls0) / dt,
            "thread_cpu_pct": dict(sorted(per_thread.items(), key=lambda kv: -kv[1]))}


def _fit(rows: list[dict], key) -> tuple[float, float]:
    """Least squares a + b * sensors of key(row): the fixed part and the per-sensor part."""
    xs = [r["sensors"] for r in rows]
    ys = [key(r) for r in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - b * mx, b


def measure(sensors=(10, 50, 200), warmup_s: float = 8.0, window_s: float = 30.0,
            numpy_check: bool = True) -> dict:
    rows = []
    with tempfile.TemporaryDirectory(prefix="load-broker-") as bd:
        broker = Mosquitto(bd).start()
        try:
            for n in sensors:
                rows.append(_one(n, broker, warmup_s, window_s))
            numpy_rss = None
            if numpy_check:  # the same 50-sensor daemon with numpy importable: RSS only
                numpy_rss = _one(50, broker, 2.0, 2.0, production=False)["rss_mb"]
        finally:
            broker.close()
    fits = {}
    if len(rows) >= 2:
        fits["cpu_pct"] = _fit(rows, lambda r: r["cpu_pct"])
        fits["rss_mb"] = _fit(rows, lambda r: r["rss_mb"])
        names = {k for r in rows for k in r["thread_cpu_pct"]}
        fits["threads"] = {k: _fit(rows, lambda r, k=k: r["thread_cpu_pct"].get(k, 0.0)) for k in names}
    return {"rows": rows, "fits": fits, "rss_with_numpy_mb": numpy_rss, "imports": import_profile(),
            "target_rss_mb": TARGET_RSS_MB, "target_cpu_pct": TARGET_CPU_PCT}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", default="10,50,200")
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--window", type=float, default=30.0)
    a = ap.parse_args()
    r = measure(tuple(int(x) for x in a.sensors.split(",")), a.warmup, a.window)
    print(f"gateway run, sensors at 1 Hz on simulated Modbus TCP, uplink to a local mosquitto, "
          f"{r['rows'][0]['window_s']:.0f} s windows")
    print(f"{'sensors':>7} {'polls/s':>8} {'CPU %':>7} {'RSS MB':>7} {'peak MB':>8} {'threads':>7}")
    for row in r["rows"]:
        print(f"{row['sensors']:>7} {row['polls_per_s']:>8.1f} {row['cpu_pct']:>7.2f} {row['rss_mb']:>7.1f} "
              f"{row['hwm_mb']:>8.1f} {row['threads']:>7}")
    for row in r["rows"]:
        print(f"  CPU by thread at {row['sensors']}: " +
              ", ".join(f"{k} {v:.2f} %" for k, v in row["thread_cpu_pct"].items() if v >= 0.005))
    if r["fits"]:
        a0, b0 = r["fits"]["cpu_pct"]
        print(f"  CPU ~ {a0:.2f} % + {b0 * 100:.2f} % per 100 sensors")
        for k, (fa, fb) in sorted(r["fits"]["threads"].items(), key=lambda kv: -kv[1][1]):
            if abs(fa) + abs(fb) * 50 >= 0.05:
                print(f"    {k:<20} {fa:6.2f} % fixed + {fb * 100:6.3f} % per 100 sensors")
    if r["rss_with_numpy_mb"]:
        print(f"  RSS at 50 with numpy importable (this venv as it is): {r['rss_with_numpy_mb']:.1f} MB")
    print("  RSS after imports only (numpy hidden):")
    for s in r["imports"]["steps"]:
        print(f"    {s['group']:<42} +{s['adds_mb']:5.1f} MB  = {s['total_mb']:5.1f} MB   "
              f"{s['import_s'] * 1000:5.0f} ms")
    print(f"  {r['imports']['modules']} modules, imported in {r['imports']['import_total_s'] * 1000:.0f} ms")
    at50 = next((row for row in r["rows"] if row["sensors"] == 50), None)
    if at50:
        print(f"  at 50 sensors: RSS {at50['rss_mb']:.1f} MB (target <= {TARGET_RSS_MB:g}): "
              f"{'met' if at50['rss_mb'] <= TARGET_RSS_MB else 'NOT met'}; CPU {at50['cpu_pct']:.2f} % "
              f"(target <= {TARGET_CPU_PCT:g}): {'met' if at50['cpu_pct'] <= TARGET_CPU_PCT else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
