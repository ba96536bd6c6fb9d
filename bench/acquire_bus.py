"""The acquisition scheduler on a timing-faithful RTU bus (issue figures):

1. polls/s of 5 QDY30A water-level devices polled back to back (poll_s tiny), against the
   wire-time limit of the same requests (FC03 of 3 registers each) at 9600 baud: target >= 90 %;
2. one of the five dead: how much longer the others' cycle gets, in timeouts (target <= 1).

    python bench/acquire_bus.py [--baud 9600] [--seconds 10]
"""

from __future__ import annotations

import argparse
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
        poll_s = 0.001
    """ for i in range(1, n + 1))
    p = tmp / "bench.toml"
    p.write_text(textwrap.dedent(body))
    return load_config(str(p))


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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--seconds", type=float, default=8.0)
    a = ap.parse_args()
    n = 5
    limit = 1.0 / (wire_time_s(8 + 5 + 2 * 3, a.baud) + 2 * frame_gap_s(a.baud))
    with tempfile.TemporaryDirectory() as td, PtyPair(Path(td)) as pty:
        cfg = _cfg(Path(td), pty.a, a.baud, n)
        sim = SimBus.rtu(pty.b, a.baud, wire_timing=True)
        for i in range(1, n + 1):
            sim.add_device(i, cfg.sensors[f"w{i}"].profile, {"level": 10.0 + i})
        with sim:
            stamps = _run(cfg, a.seconds)
            total = sum(len(v) for v in stamps.values())
            rate = total / a.seconds
            cycle_live = a.seconds / min(len(v) for v in stamps.values())
            sim.behave(3, "dead")
            stamps_dead = _run(cfg, a.seconds)
            live = [s for s in stamps_dead if s != "w3"]
            cycle_dead = a.seconds / min(len(stamps_dead[s]) for s in live)
    print(f"RTU scheduler at {a.baud} baud, {n} devices, FC03 x3 registers each")
    print(f"  polls/s achieved          {rate:8.1f}")
    print(f"  wire-time limit           {limit:8.1f}")
    print(f"  share of the limit        {100 * rate / limit:8.1f} %   (target >= 90 %)")
    print(f"  cycle, all alive          {cycle_live * 1000:8.1f} ms")
    print(f"  cycle, one of 5 dead      {cycle_dead * 1000:8.1f} ms")
    extra = (cycle_dead - cycle_live * 4 / 5) / TIMEOUT_S  # 4 live devices' own share stays
    print(f"  dead device's cost        {extra:8.2f} timeouts per cycle (timeout {TIMEOUT_S * 1000:.0f} ms, "
          f"target <= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
