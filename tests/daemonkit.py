"""The garage site the daemon tests run: a gateway.toml with a Modbus TCP bus on a SimBus port, the
`garage-b2-water` level sensor (and optionally `hydrant-3`), the sim GPIO with `garage-siren` on pin 17
and a level rule that sounds it; and `gateway run -c FILE` as a child process.

    path = write_config(tmp_path, "test-gw", sim.port, above={"red": 40}, extra=UPLINK)
    proc = run_daemon(path)
    ...
    out = stop_daemon(proc)   # SIGTERM, then kill; returns what the daemon printed

(Not `tests/site.py`: pytest puts tests/ on sys.path, where that name would shadow the stdlib `site`.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

SIREN_PIN = 17


def _inline(table: dict) -> str:
    """{"yellow": 15, "red": 40} -> '{ yellow = 15, red = 40 }' (a TOML inline table)."""
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in table.items()) + " }"


def garage_toml(bus_port: int, *, poll_s: float = 0.1, above: dict | None = None, hysteresis: float | None = None,
                hydrant: bool = False) -> str:
    """[buses.garage] (Modbus TCP to 127.0.0.1:`bus_port`), `garage-b2-water` (unit 1) and with `hydrant`
    `hydrant-3` (unit 2), both polled every `poll_s`, and the rule: level `above` thresholds (default
    red at 40), with `hysteresis` if given, sounds garage-siren."""
    text = f"""
[buses.garage]
type = "tcp"
host = "127.0.0.1"
port = {bus_port}

[[sensors]]
name = "garage-b2-water"
bus = "garage"
unit = 1
profile = "water-level-rs485"
poll_s = {poll_s}
"""
    if hydrant:
        text += f"""
[[sensors]]
name = "hydrant-3"
bus = "garage"
unit = 2
profile = "hydrant-pressure-rs485"
poll_s = {poll_s}
"""
    text += f"""
[[rules]]
sensor = "garage-b2-water"
point = "level"
above = {_inline(above or {"red": 40})}
"""
    if hysteresis is not None:
        text += f"hysteresis = {hysteresis}\n"
    return text + 'sound = ["garage-siren"]\n'


def write_config(tmp_path, gw_id: str, bus_port: int, *, pattern: dict | None = None, extra: str = "",
                 **garage) -> str:
    """tmp_path/gateway.toml: [gateway] `gw_id` (data and control socket in ./var), the sim GPIO recording
    to ./var/pins.jsonl, garage-siren on pin 17 (active-low) with `pattern` (default red steady),
    garage_toml(bus_port, **garage), then `extra` ([uplink], [commands], [outbox] ...). Returns the path."""
    text = textwrap.dedent(f"""
        [gateway]
        id = "{gw_id}"
        data_dir = "./var"
        control_socket = "./var/control.sock"

        [gpio]
        backend = "sim"
        record = "./var/pins.jsonl"

        [outputs.garage-siren]
        pin = {SIREN_PIN}
        active_low = true
        pattern = {_inline(pattern or {"red": "steady"})}
        """) + garage_toml(bus_port, **garage) + textwrap.dedent(extra)
    path = Path(tmp_path) / "gateway.toml"
    path.write_text(text)
    return str(path)


def run_daemon(config_path) -> subprocess.Popen:
    """`gateway run -c CONFIG` as a child process, its output (stdout and stderr) on a pipe."""
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(config_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_daemon(proc: subprocess.Popen, timeout: float = 15.0) -> str:
    """SIGTERM, SIGKILL after `timeout` s; returns what the daemon printed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.stdout.read()


def siren_on(tmp_path) -> bool:
    """garage-siren's last recorded change (./var/pins.jsonl) is ON (0: the relay is active-low)."""
    f = Path(tmp_path) / "var" / "pins.jsonl"
    changes = [json.loads(x) for x in f.read_text().splitlines() if x.strip()] if f.exists() else []
    changes = [c for c in changes if c["pin"] == SIREN_PIN]
    return bool(changes) and changes[-1]["value"] == 0
def cli_json(config_path, *args) -> list[dict]:
    """`gateway ARGS --json -c CONFIG` against the running daemon: its JSON document (status) or
    JSON lines (events), as a list."""
    run = subprocess.run([sys.executable, "-m", "gateway.cli", *args, "--json", "-c", str(config_path)],
                         capture_output=True, text=True, timeout=20)
    try:
        return [json.loads(run.stdout)]
    except json.JSONDecodeError:
        return [json.loads(x) for x in run.stdout.splitlines() if x.startswith("{")]
