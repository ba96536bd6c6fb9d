"""The simulated gateways of `gateway-platform fleet-sim` (fleet_sim.py), a process's share of them.

Each SimGateway is the gateway's own record/sync code: an Outbox file, a Recorder thread with the
TelemetryAggregator, an Uplink thread (FleetUplink: the Uplink with two timestamps noted for the
report). One SensorDriver thread reads all of this process's simulated sensors. A Fleet is one
process's gateways; with `--procs` > 1 fleet_sim.py runs one Fleet per child process (`python -m
gateway.platform.fleet_gateways`, driven over stdin/stdout, one JSON line each), so 500 uplink loops
are not all behind one GIL.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.config.model import Outbox as OutboxLimits
from gateway.config.model import Uplink as UplinkConfig
from gateway.reading import GOOD, Reading
from gateway.record import Health, Outbox, Recorder, TelemetryAggregator
from gateway.platform.fleet_sim import _wait
from gateway.sync.uplink import Uplink


class FleetUplink(Uplink):
    """The gateway's Uplink, with two timestamps noted for the report: each time it went online, and
    the first PUBACK after that of a backlog row (one recorded before that session: a replay)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.online_at: list[float] = []
        self.first_replay_ack: list[float] = []
        self._awaiting = False

    def _online(self, client) -> None:
        self.online_at.append(time.time())
        self._awaiting = True
        super()._online(client)

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        if self._awaiting:
            rows = self.sender.inflight.get(mid) or ()  # the rows of that message (a batch: several)
            if any(row.seq < self.sender.live_from for row in rows):
                self._awaiting = False
                self.first_replay_ack.append(time.time())
        super()._on_publish(client, userdata, mid, reason_code, properties)


class SimGateway:
    """One simulated gateway: outbox file, recorder thread, uplink thread, `sensors` water levels."""

    def __init__(self, index: int, data_dir: Path, host: str, port: int, a):
        self.id = f"{a.prefix}-{index:05d}"
        self.dir = data_dir / self.id
        self.dir.mkdir(parents=True, exist_ok=True)
        limits = OutboxLimits(telemetry_period_s=a.period, status_period_s=a.status_s, commit_s=a.commit_s)
        self.sensors = [f"water-{k + 1:02d}" for k in range(a.sensors)]
        self.recorder = Recorder(None, TelemetryAggregator(a.period, limits.deadband),
                                 status_period_s=a.status_s, commit_s=a.commit_s)
        self.outbox = Outbox(self.dir / "outbox.sqlite", self.id, limits)
        self.recorder.attach(self.outbox, Health(self.outbox, str(self.dir), recorder=self.recorder))
        cfg = UplinkConfig(host=host, port=port, client_id=self.id, replay_per_s=a.replay_per_s)
        self.uplink = FleetUplink(cfg, self.outbox, self.id,
                                  {"firmware": "fleet-sim", "config_hash": "", "sensors": self.sensors},
                                  writer=self.recorder)
        self.levels = [random.uniform(20.0, 60.0) for _ in self.sensors]
        self.alarms = 0

    def start(self) -> None:
        self.recorder.start()
        self.uplink.start()

    def read(self, k: int, now: float, mono: float) -> None:
        self.levels[k] = max(0.0, self.levels[k] + random.gauss(0.0, 0.2))
        self.recorder.reading(Reading(self.sensors[k], "level", round(self.levels[k], 2), "cm", GOOD, now, mono))

    def alarm(self) -> None:
        self.alarms += 1
        k = random.randrange(len(self.sensors))
        name = self.sensors[k]
        self.recorder.submit("alarm", {"alarm": f"{name}.level#{self.alarms}", "rule": f"{name}.level",
                                       "sensor": name, "point": "level", "transition": "raised",
                                       "level": "yellow", "previous_level": None,
                                       "value": round(self.levels[k], 2), "unit": "cm", "state": "active"})

    def stop(self) -> None:
        self.uplink.stop()
        self.recorder.stop()
        self.outbox.close()


class SensorDriver(threading.Thread):
    """One thread reads every simulated sensor of the fleet on its cadence (spread over the period so
    the fleet's readings do not come in lock-step) and makes the random alarms."""

    def __init__(self, gateways: list[SimGateway], rate_hz: float, alarm_every_s: float, tick_s: float = 0.1):
        super().__init__(name="fleet-sensors", daemon=True)
        self.gateways, self.rate, self.alarm_every, self.tick = gateways, rate_hz, alarm_every_s, tick_s
        self.stop_event = threading.Event()
        self.readings = 0

    def run(self) -> None:
        period = 1.0 / self.rate
        # (next due, gateway index, sensor index), phases spread over one period
        due = [[time.monotonic() + random.uniform(0, period), g, k]
               for g, gw in enumerate(self.gateways) for k in range(len(gw.sensors))]
        alarm_p = self.tick / self.alarm_every if self.alarm_every > 0 else 0.0
        while not self.stop_event.wait(self.tick):
            mono, now = time.monotonic(), time.time()
            for entry in due:
                if entry[0] <= mono:
                    self.gateways[entry[1]].read(entry[2], now, mono)
                    entry[0] += period
                    self.readings += 1
            if alarm_p:
                for gw in self.gateways:
                    if random.random() < alarm_p:
                        gw.alarm()


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]




class Fleet:
    """This process's gateways: `n` of them, numbered from `first`, against host:port."""

    def __init__(self, a, first: int, n: int, host: str, port: int, work: Path):
        self.a = a
        t = time.monotonic()
        self.gateways = [SimGateway(first + i, work, host, port, a) for i in range(n)]
        self.build_s = time.monotonic() - t
        self.driver = SensorDriver(self.gateways, a.rate, a.alarm_every)
        self.rss_peak = _rss_mb()
        self.probes_down = self.probes_up = 0
        self._cpu0 = _cpu_s()
        self._t0 = time.monotonic()

    def start(self) -> dict:
        for gw in self.gateways:
            gw.start()
        online = _wait(lambda: all(g.uplink.connects >= 1 for g in self.gateways), max(30.0, len(self.gateways) * 0.2))
        return {"online": sum(1 for g in self.gateways if g.uplink.connects), "build_s": round(self.build_s, 2),
                "all_online": online, "rss_mb_built": round(_rss_mb(), 1)}

    def go(self) -> dict:
        self.driver.start()
        return {"ok": True}

    def sample(self) -> dict:
        self.rss_peak = max(self.rss_peak, _rss_mb())
        return {"ok": True}

    def made(self) -> dict:
        return {g.id: g.outbox.next_seq - 1 for g in self.gateways}

    def probes(self) -> int:
        return sum(g.uplink.redial.probes for g in self.gateways)

    def down(self) -> dict:
        """The broker is going away: note the probes so far, make one alarm per gateway."""
        self.probes_down = self.probes()
        for gw in self.gateways:
            gw.alarm()
        return {"ok": True}

    def up(self) -> dict:
        self.probes_up = self.probes()
        return {"ok": True}

    def finish(self, drain_s: float) -> dict:
        """Stop the sensors, wait until what was made is delivered (bounded), report the raw figures."""
        self.driver.stop_event.set()
        self.driver.join(5)
        cpu = _cpu_s() - self._cpu0
        wall = time.monotonic() - self._t0
        self.sample()
        threads = threading.active_count()
        for gw in self.gateways:
            gw.recorder.flush(30)
        made = {g.id: g.outbox.next_seq - 1 for g in self.gateways}
        # status events keep coming while it drains; what the recorders commit at their stop stays in the
        # outboxes for the next start
        drained = _wait(lambda: sum(g.uplink.sender.counts["delivered"] for g in self.gateways)
                        >= sum(made.values()), drain_s, 0.5)
        g = self.gateways
        return {"made": made, "drained": drained, "cpu_s": cpu, "wall_s": wall, "threads": threads,
                "rss_mb_peak": self.rss_peak, "readings": self.driver.readings,
                "delivered": sum(x.uplink.sender.counts["delivered"] for x in g),
                "connects": sum(x.uplink.connects for x in g), "probes": self.probes(),
                "probes_down": self.probes_down, "probes_up": self.probes_up,
                "acks": {x.id: x.uplink.first_replay_ack for x in g}, "online_at": {x.id: x.uplink.online_at for x in g}}

    def stop(self) -> dict:
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda x: x.stop(), self.gateways))
        return {"ok": True}


def _worker(argv: list[str]) -> None:
    """A child process: one Fleet, driven by one command per stdin line, one JSON answer per line."""
    import argparse
    import logging

    from gateway.platform.fleet_sim import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    p.add_argument("--first", type=int, required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("gateway.sync.uplink").setLevel(logging.CRITICAL)
    _raise_fd_limit()
    host, _, port = a.broker.rpartition(":")
    fleet = Fleet(a, a.first, a.gateways, host, int(port), Path(a.data_dir))
    out = sys.stdout
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "finish":
            answer = fleet.finish(float(cmd[1]))
        elif cmd[0] in ("start", "go", "down", "up", "sample", "stop", "made"):
            answer = getattr(fleet, cmd[0])()
        else:
            answer = {"error": f"unknown command {cmd[0]!r}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()
        if cmd[0] == "stop":
            return


if __name__ == "__main__":
    _worker(sys.argv[1:])
