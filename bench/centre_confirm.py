"""City protocols end to end: a value changed in the simulated device -> the alarm confirmed by the
centre, through the real Daemon (in-process) and the reference centres over TCP.

- smoke status -> GB/T 26875.3 component state (fire) confirmed by the fire centre; target <= 10 s
  (GB 26875.1: a fire alarm reaches the centre within 10 s)
- water level over the red threshold -> SL 651-2014 加报 (33) confirmed by the flood office

    python bench/centre_confirm.py [--rounds 10] [--poll 0.2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from drivers.gpio.sim import SimGpio  # noqa: E402
from drivers.sim import SimBus  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.platform.gb26875_centre import Gb26875Centre  # noqa: E402
from gateway.platform.sl651_centre import Sl651Centre  # noqa: E402
from gateway.service.daemon import Daemon  # noqa: E402
from gateway.sync.gb26875 import datatypes as dt  # noqa: E402


def _wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.001)
    return False


def measure(rounds: int = 10, poll: float = 0.2) -> dict:
    with tempfile.TemporaryDirectory() as td, SimBus.tcp("127.0.0.1", 0) as sim, \
            Gb26875Centre(device="000000000001") as gb, Sl651Centre() as sl:
        p = Path(td) / "g.toml"
        p.write_text(textwrap.dedent(f"""
            [gateway]
            id = "bench-centres"
            data_dir = "{td}/var"
            control_socket = "{td}/var/c.sock"
            [buses.b]
            type = "tcp"
            host = "127.0.0.1"
            port = {sim.port}
            [[sensors]]
            name = "w"
            bus = "b"
            unit = 1
            profile = "water-level-rs485"
            poll_s = {poll}
            [[sensors]]
            name = "smoke"
            bus = "b"
            unit = 3
            profile = "smoke-rs485"
            poll_s = {poll}
            [outputs.siren]
            pin = 17
            pattern = {{ red = "steady" }}
            [[rules]]
            sensor = "w"
            point = "level"
            above = {{ red = 40 }}
            sound = ["siren"]
            [[rules]]
            sensor = "smoke"
            point = "status"
            equals = {{ red = 1 }}
            sound = ["siren"]
            [gb26875]
            host = "127.0.0.1"
            port = {gb.port}
            source = "000000000001"
            destination = "000000000000"
            [sl651]
            host = "127.0.0.1"
            port = {sl.port}
            station = "0012345678"
            centre = 1
            password = "1234"
            timed_report_s = 0
            hourly = false
        """))
        cfg = load_config(str(p))
        sim.add_device(1, cfg.sensors["w"].profile, {"level": 1.0})
        sim.add_device(3, cfg.sensors["smoke"].profile, {"status": 0})
        d = Daemon(cfg, gpio=SimGpio()).start()
        fire, flood = [], []
        try:
            if not _wait(lambda: gb.connections() == 1 and sl.connections() == 1, 20):
                raise RuntimeError("the gateway did not connect to both centres")
            for i in range(rounds):
                on = i % 2 == 0
                n = len(gb.confirmed())
                t0 = time.monotonic()
                sim.set_value(3, "status", 1 if on else 0)
                if not _wait(lambda: any(u["type"] == dt.COMPONENT_STATE for u in gb.confirmed()[n:]), 15):
                    raise RuntimeError("fire centre did not confirm")
                fire.append(time.monotonic() - t0)
                n = len(sl.confirmed("extra"))
                t0 = time.monotonic()
                sim.set_value(1, "level", 45.0 if on else 1.0)
                if not _wait(lambda: len(sl.confirmed("extra")) > n, 15):
                    raise RuntimeError("flood office did not confirm")
                flood.append(time.monotonic() - t0)
        finally:
            d.stop()
    return {"rounds": rounds, "poll_s": poll, "fire_s": fire, "flood_s": flood,
            "fire_median_s": statistics.median(fire), "fire_max_s": max(fire),
            "flood_median_s": statistics.median(flood), "flood_max_s": max(flood), "met": max(fire) <= 10.0}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--poll", type=float, default=0.2)
    a = ap.parse_args()
    r = measure(a.rounds, a.poll)
    print(f"device change -> centre confirm, {a.rounds} changes each, poll_s {a.poll:g} s")
    print(f"  GB/T 26875.3 fire alarm: median {r['fire_median_s'] * 1000:.0f} ms, max {r['fire_max_s'] * 1000:.0f} ms"
          f" (target <= 10 s: {'met' if r['met'] else 'NOT met'})")
    print(f"  SL 651 加报:             median {r['flood_median_s'] * 1000:.0f} ms, max {r['flood_max_s'] * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
