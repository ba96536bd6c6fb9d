"""The acquisition scheduler on a timing-faithful RTU bus (issue figures):

1. polls/s of 5 QDY30A water-level devices polled back to back (poll_s tiny), against the
   wire-time limit of the same requests (FC03 of 3 registers each) at 9600 baud: target >= 90 %;
2. one of the five dead: how much longer the others' cycle gets, in timeouts (target <= 1).

    python bench/acquire_bus.py [--baud 9600[,19200,115200]] [--seconds 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from drivers.rtu import frame_gap_s, wire_time_s  # noqa: E402
from drivers.sim import SimBus  # noqa: E402
from gateway.acquire import Acquisition  # noqa: E402
from gateway.config import load_config  # noqa: E402
from ptys import PtyPair  # noqa: E402

TIMEOUT_S = 0.1


def _cfg(tmp: Path, port: str, baud: int, n: int):
    body = f"""
        [gateway]
        id = "bench"
        data_dir = "./var"

        [buses.rs485]
        type = "rtu"
        port = "{port}"
        baudrate = {baud}
        timeout_s = {TIMEOUT_S}
    """ + "".join(f"""
        [[sensors]]
        name = "w{i}"
        bus = "rs485"
        unit = {i}
        profile = "water-level-rs485"
        poll_s = 0.05
    """ for i in range(1, n + 1))
    p = tmp / "bench.toml"
    p.write_text(textwrap.dedent(body))
    cfg = load_config(str(p))
    # Saturate the bus: a period no config may set (poll_s >= 0.05), so every sensor is always due
    # and the scheduler, not the period, decides the rate.
    fast = {name: dataclasses.replace(s, poll_s=0.001) for name, s in cfg.sensors.items()}
    return dataclasses.replace(cfg, sensors=fast)


def _run(cfg, seconds: float) -> dict[str, list[float]]:
    stamps: dict[str, list[float]] = {}
    lock = threading.Lock()

    def sink(r):
        if r.point == "level":
            with lock:
                stamps.setdefault(r.sensor, []).append(r.mono)

    acq = Acquisition(cfg, sink)
    acq.start()
    time.sleep(seconds)  # a benchmark window, not a test wait
    acq.stop()
    return stamps


def measure(baud: int = 9600, seconds: float = 8.0, n: int = 5) -> dict:
    """Scheduler throughput against the wire limit at `baud`, and a dead device's cost."""
    limit = 1.0 / (wire_time_s(8 + 5 + 2 * 3, baud) + 2 * frame_gap_s(baud))
    with tempfile.TemporaryDirectory() as td, PtyPair(Path(td)) as pty:
        cfg = _cfg(Path(td), pty.a, baud, n)
        sim = SimBus.rtu(pty.b, baud, wire_timing=True)
        for i in range(1, n + 1):
            sim.add_device(i, cfg.sensors[f"w{i}"].profile, {"level": 10.0 + i})
        with sim:
            stamps = _run(cfg, seconds)
            total = sum(len(v) for v in stamps.values())
            rate = total / seconds
            cycle_live = seconds / min(len(v) for v in stamps.values())
            sim.behave(3, "dead")
            stamps_dead = _run(cfg, seconds)
            live = [s for s in stamps_dead if s != "w3"]
            cycle_dead = seconds / min(len(stamps_dead[s]) for s in live)
    extra = (cycle_dead - cycle_live * 4 / 5) / TIMEOUT_S  # 4 live devices' own share stays
    return {"baud": baud, "devices": n, "seconds": seconds, "rate": rate, "limit": limit,
            "share": rate / limit, "cycle_live_s": cycle_live, "cycle_dead_s": cycle_dead,
            "timeout_s": TIMEOUT_S, "dead_cost_timeouts": extra}


def report(r: dict) -> None:
    print(f"RTU scheduler at {r['baud']} baud, {r['devices']} devices, FC03 x3 registers each")
    print(f"  polls/s achieved          {r['rate']:8.1f}")
    print(f"  wire-time limit           {r['limit']:8.1f}")
    print(f"  share of the limit        {100 * r['share']:8.1f} %   (target >= 90 %)")
    print(f"  cycle, all alive          {r['cycle_live_s'] * 1000:8.1f} ms")
    print(f"  cycle, one of 5 dead      {r['cycle_dead_s'] * 1000:8.1f} ms")
    print(f"  dead device's cost        {r['dead_cost_timeouts']:8.2f} timeouts per cycle "
          f"(timeout {r['timeout_s'] * 1000:.0f} ms, target <= 1)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baud", default="9600", help="one baud rate or a comma-separated list")
    ap.add_argument("--seconds", type=float, default=8.0)
    a = ap.parse_args()
    for baud in (int(b) for b in a.baud.split(",")):
        report(measure(baud, a.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
