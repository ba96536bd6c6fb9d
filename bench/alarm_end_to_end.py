"""End to end: value changed in the simulated device -> relay pin changed, through the real
daemon (Modbus TCP poll, decode, rule, relay). Target: <= poll_s + one transaction + 10 ms.
Also the gateway's own overhead: reading decoded -> relay (see siren_latency.py for p99 under load).

    python bench/alarm_end_to_end.py [--rounds 20] [--poll 0.5]
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
from gateway.service.daemon import Daemon  # noqa: E402

PIN = 17


def measure(rounds: int = 20, poll: float = 0.5) -> dict:
    """Value changed in the simulated device -> relay pin changed, through the Daemon (in-process)."""
    with tempfile.TemporaryDirectory() as td, SimBus.tcp("127.0.0.1", 0) as sim:
        p = Path(td) / "g.toml"
        p.write_text(textwrap.dedent(f"""
            [gateway]
            id = "bench"
            data_dir = "./var"
            control_socket = "./var/c.sock"
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
            [outputs.siren]
            pin = {PIN}
            pattern = {{ red = "steady" }}
            [[rules]]
            sensor = "w"
            point = "level"
            above = {{ red = 40 }}
            sound = ["siren"]
        """))
        cfg = load_config(str(p))
        sim.add_device(1, cfg.sensors["w"].profile, {"level": 1.0})
        gpio = SimGpio()
        d = Daemon(cfg, gpio=gpio).start()
        lat = []
        try:
            for i in range(rounds):
                on = i % 2 == 0
                n = len(gpio.history(PIN))
                t0 = time.monotonic()
                sim.set_value(1, "level", 45.0 if on else 1.0)
                if not gpio.wait_for(lambda g: len(g.history(PIN)) > n, timeout=5 * poll + 2):
                    raise RuntimeError("relay did not switch")
                lat.append(time.monotonic() - t0)
        finally:
            d.stop()
        tx = statistics.median(s.last_poll_s for s in [d.acquisition.stats()["w"]])
    bound = poll + tx + 0.010
    return {"rounds": rounds, "poll_s": poll, "latencies_s": lat, "median_s": statistics.median(lat),
            "max_s": max(lat), "transaction_s": tx, "bound_s": bound, "met": max(lat) <= bound}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--poll", type=float, default=0.5)
    a = ap.parse_args()
    try:
        r = measure(a.rounds, a.poll)
    except RuntimeError as e:
        print(e)
        return 1
    print(f"value changed in the device -> relay, {a.rounds} changes, poll_s {a.poll:g} s")
    print(f"  median {r['median_s'] * 1000:7.1f} ms   max {r['max_s'] * 1000:7.1f} ms")
    print(f"  bound poll_s + one transaction ({r['transaction_s'] * 1000:.1f} ms) + 10 ms = "
          f"{r['bound_s'] * 1000:.1f} ms: {'met' if r['met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
