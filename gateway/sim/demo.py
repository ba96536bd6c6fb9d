"""`make demo`: a flood in a simulated garage, with no hardware and no broker.

Starts `gateway sim --scenario flood` in a child process, runs the daemon against it here, and
prints the readings, the alarm transitions, the siren relay and each spoken message (clips rendered
by espeak-ng under var/demo/voice/) as they happen, until the water has come and gone (about a
minute at the default speed): siren bursts alternating with the messages, GB 50116-2013 §4.8."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from gateway.config import load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "demo.toml"
SPEED = float(os.environ.get("DEMO_SPEED", "2"))
DURATION_S = 110 / SPEED  # the flood scenario's story takes ~100 s of scenario time


def _wait_listening(cfg, timeout: float = 10.0) -> None:
    """Until the simulator accepts connections on the TCP bus (it starts every bus before that one)."""
    import socket

    bus = next(b for b in cfg.buses.values() if b.type == "tcp")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((bus.host, int(bus.port)), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)


def demo_ports(cfg) -> list[tuple[str, int]]:
    """(bus, TCP port) the simulator will listen on: every TCP bus and every socket:// serial port."""
    out = []
    for b in cfg.buses.values():
        if b.type == "tcp":
            out.append((b.name, int(b.port)))
        elif isinstance(b.port, str) and b.port.startswith("socket://"):
            out.append((b.name, int(b.port.rsplit(":", 1)[1].split("/")[0])))
    return out


def refusal(cfg) -> str | None:
    """Why the demo must not start here, or None. Checked before anything is deleted or started:
    a port somebody else listens on would make the daemon read *their* simulator, and the data
    directory may belong to a daemon that is running."""
    import socket

    from gateway.service.ownership import data_lock_path, describe, holder

    owner = holder(data_lock_path(cfg.gateway.data_dir))
    if owner is not None:
        return (f"{cfg.gateway.data_dir} belongs to a running gateway daemon, {describe(owner)}; "
                f"stop it first (the demo starts from an empty data directory)")
    taken = []
    for bus, port in demo_ports(cfg):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT of a finished demo is no owner
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            taken.append(f"{port} (bus {bus}: {e.strerror})")
        finally:
            s.close()
    if taken:
        return (f"port {', '.join(taken)} already in use on 127.0.0.1: another `gateway sim` or demo is "
                f"running (find it with: ss -ltnp | grep -E ':(" + "|".join(str(p) for _, p in demo_ports(cfg))
                + ")'); stop it first")
    return None
def _print_status(d) -> None:
    st = d.status()
    level = next((s for s in st["sensors"] if s["point"] == "level"), None)
    siren = st["outputs"].get("garage-siren", {})
    alarms = ", ".join(f"{a['id']}={a['level']}" for a in st["alarms"]) or "none"
    if level:
        print(f"  reading: garage water {level['value']} cm ({level['quality']})  "
              f"siren {'ON' if siren.get('on') else 'off'}  alarms: {alarms}", flush=True)


class _Watch:
    """Prints the siren's edges and the voice's messages, with the time since the demo began."""

    def __init__(self, daemon, start: float):
        self.d, self.start = daemon, start
        self.siren_on = False
        self.spoken = 0

    def print_changes(self) -> None:
        on = self.d.safety.status()["outputs"].get("garage-siren", {}).get("on", False)
        if on != self.siren_on:
            self.siren_on = on
            print(f"  +{time.monotonic() - self.start:5.1f} s  siren garage-siren {'ON' if on else 'off'}", flush=True)
        worker = self.d.outlets.get("garage-voice")
        if worker is None:
            return
        if worker.spoken > self.spoken:
            fresh = list(worker.started)[-(worker.spoken - self.spoken):]
            self.spoken = worker.spoken
            for asked, _, text in fresh:
                print(f"  +{asked - self.start:5.1f} s  voice garage-voice: {text}", flush=True)
        if worker.problem and worker.problem != getattr(self, "_problem", None):
            self._problem = worker.problem
            print(f"  voice garage-voice FAULT: {worker.problem}", flush=True)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)-15s %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stdout)
    for noisy in ("pymodbus", "gateway.acquire", "gateway.control", "gateway.service.notify"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    cfg = load_config(os.environ.get("DEMO_CONFIG") or str(CONFIG))
    why = refusal(cfg)
    if why:
        print(f"make demo: {why}", file=sys.stderr)
        return 1
    shutil.rmtree(cfg.gateway.data_dir, ignore_errors=True)  # a fresh community, no old alarms
    sim = subprocess.Popen([sys.executable, "-m", "gateway.cli", "sim", "-c", cfg.path, "--scenario", "flood",
                            "--speed", str(SPEED)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from gateway.service.daemon import Daemon

    print(f"demo: flood scenario at {SPEED:g}x, {DURATION_S:.0f} s; garage-siren is BCM 17 (active-low), "
          f"pin changes recorded to {cfg.gpio.record}; spoken clips in "
          f"{os.path.join(cfg.gateway.data_dir, 'voice')}", flush=True)
    d = None
    try:
        _wait_listening(cfg)
        d = Daemon(cfg).start()
        start = time.monotonic()
        end = start + DURATION_S
        next_status = start + 5
        watch = _Watch(d, start)
        while time.monotonic() < end:
            time.sleep(0.1)
            watch.print_changes()
            if time.monotonic() >= next_status:
                next_status += 5
                _print_status(d)
        _print_status(d)  # how the story ends
    except KeyboardInterrupt:
        pass
    finally:
        if d is not None:
            d.stop()
        sim.terminate()
        sim.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
