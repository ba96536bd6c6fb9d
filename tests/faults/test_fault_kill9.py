"""kill -9 of the daemon at random moments (during start-up, mid-commit, mid-publish) while the water
level crosses the alarm thresholds and telemetry flows. Afterwards the platform holds every event the
outbox ever committed: each seq 1..max is received or declared evicted, no undeclared gap; the
duplicates that at-least-once delivery makes are counted and reported."""

from __future__ import annotations

import random
import threading
import time

import pytest

from drivers.sim.modbus_device import SimBus
from faultkit import GW, missing_seqs, outbox_max_seq, ranges, report, write_config
from gateway.config import load_config
from tests.daemonkit import garage_toml
from tests.mosquitto import wait_for


class Flood(threading.Thread):
    """The water level toggles across the red threshold; the hydrant pressure wanders (telemetry)."""

    def __init__(self, sim: SimBus, period_s: float = 0.6):
        super().__init__(daemon=True, name="flood")
        self.sim, self.period_s = sim, period_s
        self.stop_ = threading.Event()
        self.toggles = 0

    def run(self):
        high = False
        while not self.stop_.wait(self.period_s):
            high = not high
            self.sim.set_value(1, "level", 45.0 if high else 2.0)
            self.sim.set_value(2, "pressure", 0.30 + 0.01 * (self.toggles % 5))
            self.toggles += 1


def kill9_storm(tmp_path, broker, receiver, gateways, kills: int, seed: int):
    rx = receiver
    with SimBus.tcp("127.0.0.1", 0) as sim:
        body = garage_toml(sim.port, above={"yellow": 15, "red": 40}, hysteresis=2, hydrant=True)
        path = write_config(tmp_path, body, broker_port=broker.port,
                            outbox="telemetry_period_s = 0.5\nstatus_period_s = 2\ndeadband = 0")
        cfg = load_config(path)
        sim.add_device(1, cfg.sensors["garage-b2-water"].profile, {"level": 2.0})
        sim.add_device(2, cfg.sensors["hydrant-3"].profile, {"pressure": 0.3})
        flood = Flood(sim)
        flood.start()
        rng = random.Random(seed)
        t0 = time.monotonic()
        gw = gateways(path, tmp_path / "daemon.log")
        try:
            for i in range(kills):
                # random moments: some kills land during start-up, most while events flow
                time.sleep(rng.uniform(0.3, 3.5))
                gw.kill9()
                gw.start()
            storm_s = time.monotonic() - t0
            gw.wait_up(30)
            wait_for(lambda: (gw.status() or {}).get("uplink", {}).get("state") == "online", 60,
                     what="uplink online after the last restart")
            max_seq = outbox_max_seq(gw)  # asked over the control socket while it runs
            t1 = time.monotonic()
            wait_for(lambda: not missing_seqs(rx, GW, max_seq), 90,
                     what=f"every seq 1..{max_seq} received or declared")
            drain_s = time.monotonic() - t1
        finally:
            flood.stop_.set()
            flood.join(5)
            gw.stop()
    missing = missing_seqs(rx, GW, max_seq)
    alarms = [e for e in rx.of_type("alarm") if e["seq"] <= max_seq]
    report(f"kill -9 x{kills} (seed {seed}) over {storm_s:.1f} s: outbox max seq {max_seq}, "
           f"received {len(rx.seqs(GW))} unique events ({len(alarms)} alarm), duplicates {rx.duplicates}, "
           f"declared gaps {rx.declared_gaps(GW)}, last backlog drained in {drain_s:.1f} s, "
           f"level toggles {flood.toggles}")
    assert missing == [], f"committed but never received: {ranges(missing)}"
    assert rx.undeclared_gaps(GW) == []
    assert rx.invalid == [], rx.invalid[:3]
    # the storm really made events across the restarts, alarms among them
    assert max_seq >= kills and sum(e["transition"] == "raised" for e in alarms) >= kills // 3, \
        (max_seq, len(alarms))
    assert "Traceback" not in gw.log(), gw.log_tail(80)


def test_kill9_at_random_moments_loses_no_committed_event(tmp_path, broker, receiver, gateways):
    kill9_storm(tmp_path, broker, receiver, gateways, kills=30, seed=20240607)


@pytest.mark.soak
def test_kill9_soak_100_kills(tmp_path, broker, receiver, gateways):
    kill9_storm(tmp_path, broker, receiver, gateways, kills=100, seed=int(time.time()))
