"""Relay drops across reloads with an alarm active (issue 11): `gateway run` with the sim GPIO
recording every pin change (a logic analyser), one water-level sensor at red so the siren sounds
steadily, then `reloads` reloads through the control socket, alternating two valid configs (poll_s
0.5 / 0.6) so each really applies something, each waited for. Counted: OFF edges of the siren pin
between the first reload and the last (target 0), and the time per reload."""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path

from _daemon import sim_buses, start_daemon, stop_daemon, wait_until, write_config

PIN = 17


def _pins(path: Path) -> list[dict]:
    out = []
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue  # the last line, half written
        if e["pin"] == PIN:
            out.append(e)
    return out


def measure(reloads: int = 1000) -> dict:
    from gateway.control import call

    with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
        work = Path(tmp)
        buses = sim_buses(1)
        for b in buses:
            b.start()
        try:
            cfg = write_config(work, buses, 1, poll_s=0.5)
            buses[0].set_value(1, "level", 45.0)  # red: the siren sounds steadily
            texts = [cfg.read_text().replace('backend = "sim"', f'backend = "sim"\nrecord = "{work}/pins.jsonl"')]
            texts.append(texts[0].replace("poll_s = 0.5", "poll_s = 0.6"))
            cfg.write_text(texts[0])
            sock = str(work / "var" / "control.sock")
            proc = start_daemon(cfg, work / "daemon.log")
            try:
                wait_until(lambda: (p := _pins(work / "pins.jsonl")) and p[-1]["value"] == 0, timeout=30,
                           what="siren ON")
                start = time.time()
                t0 = time.monotonic()
                for i in range(reloads):
                    text = texts[(i + 1) % 2]
                    cfg.write_text(text)
                    want = hashlib.sha256(text.encode()).hexdigest()
                    call(sock, "reload", timeout=10)

                    def applied():
                        try:
                            return call(sock, "status", timeout=2)["config_hash"] == want
                        except Exception:  # noqa: BLE001 - the socket is down mid-reload
                            return False

                    wait_until(applied, timeout=30, interval=0.005, what=f"reload {i + 1}")
                took = time.monotonic() - t0
                end = time.time()
                alarms = call(sock, "status", timeout=5)["alarms"]
            finally:
                stop_daemon(proc)
        finally:
            for b in buses:
                b.stop()
        pins = _pins(work / "pins.jsonl")
    drops = [e for e in pins if start <= e["t"] <= end and e["value"] == 1]
    return {"reloads": reloads, "drops": len(drops), "reload_ms": 1000 * took / reloads,
            "alarm_after": [a["level"] for a in alarms]}
