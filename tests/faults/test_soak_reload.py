"""Reloads and kill -9 with a red alarm sounding (issue 11, 8b).

Phase 1: the configuration is reloaded again and again (alternating two valid files, so every reload
really applies something) while a red flood sounds the siren steadily. Make before break: the relay
pin record (the sim GPIO's JSON lines, a logic analyser) shows no OFF edge during the whole phase.
Phase 2: kill -9 of the daemon at random moments, alarms still active; afterwards every event the
outbox ever committed reaches the platform (or is declared evicted).

Default run: 30 reloads, 5 kills. `make soak` (SOAK=1): 1,000 reloads, 200 kills."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from drivers.sim.modbus_device import SimBus
from faultkit import GW, SIREN_PIN, missing_seqs, outbox_max_seq, ranges, report, write_config
from gateway.config import load_config
from gateway.control import call
from tests.daemonkit import garage_toml
from tests.mosquitto import wait_for


def _config_hash(gw) -> str | None:
    st = gw.status(timeout=2.0)
    return st["config_hash"] if st else None


def reload_storm(gw, path: str, texts: list[str], reloads: int) -> float:
    """`reloads` reloads through the control socket, each waited for (the other text's hash running)."""
    t0 = time.monotonic()
    import hashlib

    for i in range(reloads):
        text = texts[(i + 1) % 2]
        Path(path).write_text(text)
        want = hashlib.sha256(text.encode()).hexdigest()
        call(gw.socket, "reload", timeout=10)
        wait_for(lambda: _config_hash(gw) == want, 30, interval=0.01, what=f"reload #{i + 1} applied")
    return time.monotonic() - t0


def drops_in(changes: list[dict], since: float, until: float) -> list[dict]:
    """OFF edges (active-low: value 1) of the siren between `since` and `until` (unix times)."""
    return [p for p in changes if since <= p["t"] <= until and p["value"] == 1]


def reloads_and_kills(tmp_path, broker, rx, gateways, reloads: int, kills: int, seed: int):
    rng = random.Random(seed)
    with SimBus.tcp("127.0.0.1", 0) as sim:
        body = garage_toml(sim.port, above={"yellow": 15, "red": 40}, hysteresis=2)
        path = write_config(tmp_path, body, broker_port=broker.port,
                            outbox="telemetry_period_s = 0.5\nstatus_period_s = 2\ndeadband = 0")
        texts = [Path(path).read_text()]
        texts.append(texts[0].replace("poll_s = 0.1", "poll_s = 0.12"))
        cfg = load_config(path)
        sim.add_device(1, cfg.sensors["garage-b2-water"].profile, {"level": 45.0})  # red from the start
        gw = gateways(path, tmp_path / "daemon.log")
        gw.wait_up(30)
        wait_for(lambda: gw.pins() and gw.pins()[-1]["value"] == 0, 10, what="siren ON for the red flood")
        wait_for(lambda: rx.of_type("alarm"), 30, what="the raise at the platform")
        start = time.time()
        reload_s = reload_storm(gw, path, texts, reloads)
        end = time.time()
        wait_for(lambda: (gw.status() or {}).get("alarms"), 10, what="the alarm still active")
        drops = drops_in(gw.pins(SIREN_PIN), start, end)
        on_at_end = gw.pins(SIREN_PIN)[-1]["value"] == 0
        st = gw.status()
        # Phase 2: kills. The level toggles across red so that alarms are raised and cleared meanwhile.
        high = True
        for _ in range(kills):
            time.sleep(rng.uniform(0.3, 2.0))
            high = not high
            sim.set_value(1, "level", 45.0 if high else 2.0)
            gw.kill9()
            gw.start()
        gw.wait_up(30)
        wait_for(lambda: (gw.status() or {}).get("uplink", {}).get("state") == "online", 60,
                 what="uplink online after the last restart")
        max_seq = outbox_max_seq(gw)  # the running daemon holds its outbox exclusively: ask it
        wait_for(lambda: not missing_seqs(rx, GW, max_seq), 120, what=f"every seq 1..{max_seq} at the platform")
        log = gw.log()
        gw.stop()
    report(f"{reloads} reloads in {reload_s:.1f} s ({1000 * reload_s / max(reloads, 1):.0f} ms each) with a red "
           f"alarm: {len(drops)} relay drops; {kills} kill -9: max seq {max_seq}, duplicates {rx.duplicates}")
    assert drops == [], f"the siren dropped {len(drops)} times across {reloads} reloads: {drops[:5]}"
    assert on_at_end and st["alarms"][0]["level"] == "red"
    assert missing_seqs(rx, GW, max_seq) == [], ranges(missing_seqs(rx, GW, max_seq))
    assert rx.undeclared_gaps(GW) == [] and rx.invalid == []
    assert "Traceback" not in log, log[-4000:]


def test_reloads_with_an_alarm_active_never_drop_the_siren(tmp_path, broker, receiver, gateways):
    reloads_and_kills(tmp_path, broker, receiver, gateways, reloads=30, kills=5, seed=11)


@pytest.mark.soak
def test_soak_1000_reloads_and_200_kills(tmp_path, broker, receiver, gateways):
    reloads_and_kills(tmp_path, broker, receiver, gateways, reloads=1000, kills=200, seed=int(time.time()))
