"""Helpers for the benchmarks that run `gateway run` as a real process: a configuration of N
QDY30A water-level sensors on simulated Modbus TCP buses (unit ids 1..247 per bus), the daemon
process itself, and /proc readings of its CPU time and resident memory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from drivers.sim import SimBus  # noqa: E402
from ptys import wait_until  # noqa: E402,F401  (the tests' bounded poll, re-exported for the benches)

UNITS_PER_BUS = 247
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def sim_buses(n: int) -> list[SimBus]:
    """Enough simulated Modbus TCP servers for `n` water-level devices (not started)."""
    return [SimBus.tcp("127.0.0.1", 0) for _ in range(-(-n // UNITS_PER_BUS))]


def write_config(workdir: Path, buses: list[SimBus], n: int, *, poll_s: float = 1.0,
                 broker: tuple[str, int] | None = None) -> Path:
    """gateway.toml for `n` sensors spread over the (started) `buses`, each watched by a rule
    that sounds one siren on a simulated relay; returns its path. Adds the devices to the buses."""
    parts = [f"""
        [gateway]
        id = "bench-{n}"
        data_dir = "{workdir / 'var'}"
        control_socket = "{workdir / 'var' / 'control.sock'}"

        [gpio]
        backend = "sim"

        [outputs.siren]
        pin = 17
        active_low = true
        pattern = {{ red = "steady" }}
        max_on_s = 600
    """]
    if broker:
        parts.append(f"""
        [uplink]
        host = "{broker[0]}"
        port = {broker[1]}
        """)
    for b, bus in enumerate(buses):
        parts.append(f"""
        [buses.tcp{b}]
        type = "tcp"
        host = "127.0.0.1"
        port = {bus.port}
        """)
    for i in range(n):
        b, unit = divmod(i, UNITS_PER_BUS)
        parts.append(f"""
        [[sensors]]
        name = "w{i + 1}"
        bus = "tcp{b}"
        unit = {unit + 1}
        profile = "water-level-rs485"
        poll_s = {poll_s}

        [[rules]]
        sensor = "w{i + 1}"
        point = "level"
        above = {{ red = 40 }}
        sound = ["siren"]
        """)
    path = workdir / "gateway.toml"
    path.write_text(textwrap.dedent("".join(textwrap.dedent(p) for p in parts)))
    from gateway.config import load_config

    cfg = load_config(str(path))
    for i in range(n):
        b, unit = divmod(i, UNITS_PER_BUS)
        buses[b].add_device(unit + 1, cfg.sensors[f"w{i + 1}"].profile, {"level": 10.0 + (i % 20)})
    return path


_PYCACHE: str | None = None
WARM_IMPORTS = ("asyncio", "ssl", "logging.handlers", "serial", "pymodbus.client", "paho.mqtt.client",
                "sqlite_utils", "tomllib", "gateway.cli", "gateway.cli.daemon_calls", "gateway.config", "gateway.service.daemon",
                "gateway.acquire", "gateway.act.loop", "gateway.act.safety", "gateway.record",
                "gateway.record.health", "gateway.sync.uplink", "gateway.control", "gateway.control.handlers",
                "gateway.service.notify", "drivers.gpio", "drivers.gpio.sim", "drivers.tcp", "drivers.rtu")


def _bytecode_cache() -> str:
    """A bench-owned bytecode cache (PYTHONPYCACHEPREFIX=bench/out/pycache, kept between runs, not
    committed): the repo's modules start from .pyc as from a pip install on a Pi, and the work tree
    gets no __pycache__. With a prefix Python looks up every module's .pyc there, the standard
    library's and site-packages' too, so it is filled once with the repo (compileall) and with
    everything the daemon and the CLI import, before anything is timed."""
    global _PYCACHE
    if _PYCACHE is None:
        cache = ROOT / "bench" / "out" / "pycache"
        cache.mkdir(parents=True, exist_ok=True)
        e = dict(os.environ, PYTHONPYCACHEPREFIX=str(cache), PYTHONPATH=str(ROOT))
        e.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "gateway"), str(ROOT / "drivers"),
                        str(ROOT / "bench" / "_production.py")], env=e, check=True, stdout=subprocess.DEVNULL)
        warm = ("import sys, importlib; sys.modules['numpy'] = None; sys.modules['pandas'] = None\n"
                f"for m in {WARM_IMPORTS!r}: importlib.import_module(m)")
        subprocess.run([sys.executable, "-c", warm], env=e, check=True)
        subprocess.run([sys.executable, "-c", "import sqlite_utils"], env=e, check=True)  # numpy visible
        _PYCACHE = str(cache)
    return _PYCACHE


def env(cached: bool = True) -> dict:
    """The environment of a measured gateway process. cached=True: the repo's bytecode comes from
    the bench's cache; False: no bytecode written or read for it (PYTHONDONTWRITEBYTECODE=1, every
    start compiles the gateway's modules from source, as in this workplace's shells)."""
    e = dict(os.environ)
    if cached:
        e.pop("PYTHONDONTWRITEBYTECODE", None)
        e["PYTHONPYCACHEPREFIX"] = _bytecode_cache()
    else:
        e["PYTHONDONTWRITEBYTECODE"] = "1"
        e.pop("PYTHONPYCACHEPREFIX", None)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("NOTIFY_SOCKET", None)
    e.pop("DEBUG", None)
    e["BENCH_THREAD_NAMES"] = "1"  # read by bench/_production.py only
    return e


def gateway_argv(*args: str, production: bool = True, python_flags: tuple[str, ...] = ()) -> list[str]:
    """The command line of `gateway ARGS...`: through bench/_production.py (numpy hidden, as on a
    Pi) or, with production=False, plain `python -m gateway.cli` in this venv."""
    launcher = [str(ROOT / "bench" / "_production.py")] if production else ["-m", "gateway.cli"]
    return [sys.executable, *python_flags, *launcher, *args]


def start_daemon(config: Path, log: Path, *, production: bool = True, cached: bool = True,
                 python_flags: tuple[str, ...] = ()) -> subprocess.Popen:
    """`gateway run -c CONFIG` as a process, stdout/stderr to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(gateway_argv("run", "-c", str(config), production=production,
                                             python_flags=python_flags),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=str(config.parent), env=env(cached))


def stop_daemon(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def cpu_s(pid: int) -> float:
    """utime + stime of the process (all its threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def status_kb(pid: int, key: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def threads(pid: int) -> int:
    return status_kb(pid, "Threads")


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (kernel thread name, utime + stime seconds), for every thread of `pid`."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, tail = f.read().rsplit(")", 1)
            fields = tail.split()
            out[int(tid)] = (head.split("(", 1)[1], (int(fields[11]) + int(fields[12])) / CLK_TCK)
        except (FileNotFoundError, ProcessLookupError):
            pass  # the thread ended meanwhile
    return out
