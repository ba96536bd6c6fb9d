"""RTU polling rate against the wire-time limit, on a timing-faithful simulated bus.

A socat pty ignores the baud rate, so the simulated slave (SimBus wire_timing=True) holds
each reply back for the request's and the reply's wire time at the configured baud plus
one t3.5 gap; the master keeps the other t3.5 before its next request. The limit for one
FC03 transaction of N registers is therefore

    (8 + 5 + 2N) chars * 11 bits / baud  +  2 * t3.5

and this prints the achieved transactions/s as a share of it (target >= 90 %).

    python bench/rtu_wire.py [--baud 9600] [--reads 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from drivers.rtu import RtuLink, frame_gap_s, wire_time_s  # noqa: E402
from drivers.sim import SimBus  # noqa: E402
from ptys import PtyPair  # noqa: E402


def limit_per_s(count: int, baud: int) -> float:
    chars = 8 + 5 + 2 * count
    return 1.0 / (wire_time_s(chars, baud) + 2 * frame_gap_s(baud))


def run(baud: int, reads: int, counts=(1, 10)) -> list[tuple[int, float, float]]:
    results = []
    with tempfile.TemporaryDirectory() as tmp, PtyPair(tmp) as pty:
        sim = SimBus.rtu(pty.b, baud, wire_timing=True)
        sim.add_device(1, None, registers={a: a * 7 for a in range(0, 16)})
        with sim, RtuLink("bench", pty.a, baudrate=baud) as link:
            for count in counts:
                expected = [a * 7 for a in range(count)]
                for _ in range(5):  # warm up: first frames pay for imports and task creation
                    link.read_registers(1, 3, 0, count, timeout=0.3, retries=0)
                t0 = time.perf_counter()
                for _ in range(reads):
                    if link.read_registers(1, 3, 0, count, timeout=0.3, retries=0) != expected:
                        raise SystemExit("wrong registers read")
                rate = reads / (time.perf_counter() - t0)
                results.append((count, rate, limit_per_s(count, baud)))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--reads", type=int, default=200)
    args = ap.parse_args()
    print(f"RTU FC03 over a socat pty, wire-timed slave, {args.baud} baud, {args.reads} reads each")
    print(f"{'registers':>9} {'achieved/s':>11} {'limit/s':>8} {'share':>7}")
    worst = 100.0
    for count, rate, limit in run(args.baud, args.reads):
        share = 100.0 * rate / limit
        worst = min(worst, share)
        print(f"{count:>9} {rate:>11.2f} {limit:>8.2f} {share:>6.1f}%")
    print("target >= 90 %:", "met" if worst >= 90 else "NOT met")


if __name__ == "__main__":
    main()
