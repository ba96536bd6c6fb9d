"""Cold start and `gateway status` against a running daemon (issue 5's figures).

- cold start: from spawning `gateway run -c FILE` (a new Python process) to the first Modbus request
  reaching a simulated device (the SimBus's first `served` entry), 50 water-level sensors on Modbus
  TCP, uplink to a local mosquitto; the first run starts on an empty data directory, the later ones
  are restarts over the outbox the earlier runs left. Target <= 1.5 s. The repo's modules start
  from bytecode, as a pip install on a Pi does (this workplace sets PYTHONDONTWRITEBYTECODE=1: two
  extra starts without bytecode are reported besides).
- `gateway status -c FILE` as a process (what a technician types): spawn to exit. Target <= 200 ms.
- the control-socket call alone (`gateway.control.call(path, "status")`) from an open interpreter.

The gateway is started through bench/_production.py (numpy hidden as on a Pi; see daemon_load.py).

    python bench/cold_start.py [--runs 5] [--cli 10] [--calls 200]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _daemon as D  # noqa: E402
from mosquitto import Mosquitto  # noqa: E402

from gateway.control import call  # noqa: E402
from gateway.errors import ControlError  # noqa: E402

TARGET_START_S = 1.5
TARGET_STATUS_S = 0.200
SENSORS = 50


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def _answers(sock: str) -> bool:
    try:
        call(sock, "status", timeout=1.0)
        return True
    except (ControlError, OSError):
        return False


def _spawn_timed(argv: list[str], cached: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=D.env(cached), timeout=30)
    return time.perf_counter() - t, done


def measure(runs: int = 5, cli_runs: int = 10, calls: int = 200, sensors: int = SENSORS) -> dict:
    starts, readies, uncached_starts = [], [], []
    with tempfile.TemporaryDirectory(prefix="cold-") as td:
        td = Path(td)
        broker = Mosquitto(td / "broker").start()
        buses = D.sim_buses(sensors)
        for b in buses:
            b.start()
        proc = None
        try:
            cfg = D.write_config(td, buses, sensors, broker=(broker.host, broker.port))
            sock = str(td / "var" / "control.sock")
            for i in range(runs + 3):
                # two starts compiling the repo's modules (PYTHONDONTWRITEBYTECODE=1), one untimed start
                # that byte-compiles whatever the daemon imports lazily, then the measured ones
                cached = i >= 2
                for b in buses:
                    b.served.clear()
                t0 = time.monotonic()
                proc = D.start_daemon(cfg, td / "daemon.log", cached=cached)
                D.wait_until(lambda: proc.poll() is not None or any(b.served for b in buses), 20,
                             interval=0.001, what="the first poll")
                if proc.poll() is not None:
                    raise RuntimeError(f"gateway run exited with {proc.returncode}: "
                                       f"{(td / 'daemon.log').read_text()[-2000:]}")
                first = min(b.served[0].mono for b in buses if b.served) - t0
                D.wait_until(lambda: _answers(sock), 20, interval=0.005, what="the control socket")
                if not cached:
                    uncached_starts.append(first)
                elif i > 2:
                    starts.append(first)
                    readies.append(time.monotonic() - t0)
                if i < runs + 2:
                    D.stop_daemon(proc)
                    proc = None
            # The daemon of the last run keeps running: status against it.
            time.sleep(2.0)  # a settling window: the first telemetry and the uplink birth are out
            argv = D.gateway_argv("status", "-c", str(cfg))
            cli, out = [], None
            for _ in range(cli_runs):
                dt, out = _spawn_timed(argv)
                if out.returncode != 0:
                    raise RuntimeError(f"gateway status failed: {out.stderr[-1000:]}")
                cli.append(dt)
            plain = [_spawn_timed(D.gateway_argv("status", "-c", str(cfg), production=False))[0]
                     for _ in range(3)]
            uncached = [_spawn_timed(argv, cached=False)[0] for _ in range(3)]
            bare = [_spawn_timed([sys.executable, "-c", "pass"])[0] for _ in range(5)]
            sock_calls = []
            for _ in range(calls):
                t = time.perf_counter()
                st = call(sock, "status")
                sock_calls.append(time.perf_counter() - t)
            status_lines = len(out.stdout.splitlines())
            sensors_in_status = len(st.get("sensors", [])) if isinstance(st, dict) else None
        finally:
            if proc is not None:
                D.stop_daemon(proc)
            for b in buses:
                b.stop()
            broker.close()
    return {"sensors": sensors, "runs": runs,
            "first_poll_s": starts, "first_poll_median_s": statistics.median(starts),
            "first_poll_max_s": max(starts), "control_ready_s": readies,
            "cli_s": cli, "cli_median_s": statistics.median(cli), "cli_max_s": max(cli),
            "cli_with_numpy_median_s": statistics.median(plain), "cli_uncached_median_s": statistics.median(uncached),
            "first_poll_uncached_s": uncached_starts, "python_startup_s": statistics.median(bare),
            "call_s": sock_calls, "call_p50_s": statistics.median(sock_calls), "call_p99_s": pct(sock_calls, 99),
            "call_max_s": max(sock_calls), "status_lines": status_lines, "status_sensors": sensors_in_status,
            "target_start_s": TARGET_START_S, "target_status_s": TARGET_STATUS_S}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cli", type=int, default=10)
    ap.add_argument("--calls", type=int, default=200)
    a = ap.parse_args()
    r = measure(a.runs, a.cli, a.calls)
    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    print(f"cold start, {r['sensors']} sensors, {r['runs']} runs (first on an empty data dir)")
    print(f"  spawn -> first poll at a device: {', '.join(ms(s) for s in r['first_poll_s'])}; "
          f"median {ms(r['first_poll_median_s'])}, max {ms(r['first_poll_max_s'])} "
          f"(target <= {r['target_start_s']:g} s): {'met' if r['first_poll_max_s'] <= r['target_start_s'] else 'NOT met'}")
    print(f"  spawn -> control socket answers: median {ms(statistics.median(r['control_ready_s']))}")
    print(f"  without bytecode for the repo (PYTHONDONTWRITEBYTECODE=1): "
          f"{', '.join(ms(s) for s in r['first_poll_uncached_s'])}")
    print(f"gateway status against the running daemon ({r['status_lines']} lines, "
          f"{r['status_sensors']} sensors)")
    print(f"  CLI process: median {ms(r['cli_median_s'])}, max {ms(r['cli_max_s'])} "
          f"(target <= {r['target_status_s'] * 1000:.0f} ms): "
          f"{'met' if r['cli_max_s'] <= r['target_status_s'] else 'NOT met'}; with numpy importable "
          f"{ms(r['cli_with_numpy_median_s'])}; without bytecode {ms(r['cli_uncached_median_s'])}; a bare `python -c pass` {ms(r['python_startup_s'])}")
    print(f"  control-socket call alone: p50 {r['call_p50_s'] * 1000:.2f} ms, p99 {r['call_p99_s'] * 1000:.2f} ms, "
          f"max {r['call_max_s'] * 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
