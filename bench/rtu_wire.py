"""RTU polling rate against the wire-time limit, on a timing-faithful simulated bus.

A socat pty ignores the baud rate, so the simulated slave (SimBus wire_timing=True) holds
each reply back for the request's and the reply's wire time at the configured baud plus
one t3.5 gap; the master keeps the other t3.5 before its next request. The limit for one
FC03 transaction of N registers is therefore

    (8 + 5 + 2N) chars * 11 bits / baud  +  2 * t3.5

and this prints the achieved transactions/s as a share of it (target >= 90 %), for our
RtuLink and, for reference, for pymodbus's own sync ModbusSerialClient on the same bus.

    python bench/rtu_wire.py [--baud 9600[,19200,115200]] [--reads 200]
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


def _rate(read, count: int, reads: int) -> float:
    expected = [a * 7 for a in range(count)]
    for _ in range(5):  # warm up: first frames pay for imports and task creation
        read(count)
    t0 = time.perf_counter()
    for _ in range(reads):
        if read(count) != expected:
            raise SystemExit("wrong registers read")
    return reads / (time.perf_counter() - t0)


def run(baud: int, reads: int, counts=(1, 10)) -> list[tuple[str, int, float, float]]:
    from pymodbus.client import ModbusSerialClient

    results = []
    with tempfile.TemporaryDirectory() as tmp, PtyPair(tmp) as pty:
        sim = SimBus.rtu(pty.b, baud, wire_timing=True)
        sim.add_device(1, None, registers={a: a * 7 for a in range(0, 16)})
        with sim:
            with RtuLink("bench", pty.a, baudrate=baud) as link:
                for count in counts:
                    rate = _rate(lambda n: link.read_registers(1, 3, 0, n, timeout=0.3, retries=0),
                                 count, reads)
                    results.append(("RtuLink", count, rate, limit_per_s(count, baud)))
            client = ModbusSerialClient(pty.a, baudrate=baud, timeout=0.3, retries=0)
            if not client.connect():
                raise SystemExit(f"pymodbus cannot open {pty.a}")
            try:
                for count in counts:
                    rate = _rate(lambda n: client.read_holding_registers(0, count=n, device_id=1).registers,
                                 count, reads)
                    results.append(("pymodbus sync", count, rate, limit_per_s(count, baud)))
            finally:
                client.close()
    return results


def measure(baud: int = 9600, reads: int = 200, counts=(1, 10)) -> dict:
    """Transactions/s of RtuLink and pymodbus's sync client against the wire limit at `baud`."""
    rows = [{"master": m, "registers": c, "rate": r, "limit": lim, "share": r / lim}
            for m, c, r, lim in run(baud, reads, counts)]
    worst = min(r["share"] for r in rows if r["master"] == "RtuLink")
    return {"baud": baud, "reads": reads, "rows": rows, "rtulink_worst_share": worst}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baud", default="9600", help="one baud rate or a comma-separated list")
    ap.add_argument("--reads", type=int, default=200)
    args = ap.parse_args()
    for baud in (int(b) for b in args.baud.split(",")):
        res = measure(baud, args.reads)
        print(f"RTU FC03 over a socat pty, wire-timed slave, {baud} baud, {args.reads} reads each")
        print(f"{'master':<14} {'registers':>9} {'achieved/s':>11} {'limit/s':>8} {'share':>7}")
        for r in res["rows"]:
            print(f"{r['master']:<14} {r['registers']:>9} {r['rate']:>11.2f} {r['limit']:>8.2f} "
                  f"{100 * r['share']:>6.1f}%")
        print("RtuLink target >= 90 %:", "met" if res["rtulink_worst_share"] >= 0.9 else "NOT met")


if __name__ == "__main__":
    main()
