"""`gateway-platform fleet-sim`: many simulated gateways in one process, each with the gateway's own
outbox, recorder and uplink code (its own SQLite file, its own MQTT client and reconnect schedule), the
sensors simulated in process. The platform path is measured with the real wire behaviour, outages
included.

    gateway-platform fleet-sim --gateways 500 --duration 120 --outage-at 40 --outage-s 30 --json out.json
    gateway-platform fleet-sim --gateways 50 --broker broker.example:1883 --duration 600   # an external broker

Without --broker it starts its own mosquitto (persistence on) behind a counting TCP proxy
(fleet_proxy.py): the gateways connect to the proxy, which records every TCP connection the broker's
port accepted; --outage-at restarts that broker (the proxy's port refuses meanwhile, as the broker's
would). With --receiver the reference receiver runs in process on a persistent session and the report
says whether every (gateway, seq) arrived.

Per gateway: `--sensors` sensors read `--rate` times a second each, folded into summaries every
`--period` s (with the 5 % deadband) by the gateway's TelemetryAggregator; a status event every
`--status-s`; an alarm every `--alarm-every` s on average, and one alarm per gateway made while the
broker is away (so every gateway has a backlog to replay).

The report (JSON): events made and delivered, threads, RSS and CPU of this process, and for the outage
the time from the broker's return to each gateway's first replayed event acknowledged by the broker
(PUBACK) and to its first arrival at the receiver (p50/p99/max), with the connection attempts per
second and per 100 ms the broker's port saw.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.config.model import Outbox as OutboxLimits
from gateway.config.model import Uplink as UplinkConfig
from gateway.reading import GOOD, Reading
from gateway.record import Health, Outbox, Recorder, TelemetryAggregator
from gateway.sync.uplink import Uplink

log = logging.getLogger(__name__)
MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = sorted(values)
    pick = lambda q: v[min(len(v) - 1, int(q * len(v)))]  # noqa: E731 - nearest rank
    return {"n": len(v), "p50": round(statistics.median(v), 3), "p99": round(pick(0.99), 3),
            "max": round(v[-1], 3), "min": round(v[0], 3)}


class Broker:
    """A mosquitto this process owns (persistence on, so the receiver's session outlives a restart)."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host, self.port = "127.0.0.1", port or _free_port()
        self.proc: subprocess.Popen | None = None
        conf = ["user root" if os.geteuid() == 0 else "", "allow_anonymous true", "max_queued_messages 0",
                "max_connections -1", "persistence true", f"persistence_location {self.dir}/",
                "log_type error", "log_type warning", "log_type notice",
                f"log_dest file {self.dir}/mosquitto.log", f"listener {self.port} {self.host}"]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(c for c in conf if c) + "\n")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def start(self) -> "Broker":
        if not os.path.exists(MOSQUITTO):
            raise RuntimeError(f"{MOSQUITTO} not installed (apt-get install mosquitto)")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        if not _wait(self._accepts, 10, 0.02):
            raise RuntimeError(f"mosquitto did not listen on {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        _wait(lambda: not self._accepts(), 10)


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
            row = self.sender.inflight.get(mid)
            if row is not None and row.seq < self.sender.live_from:
                self._awaiting = False
                self.first_replay_ack.append(time.time())
        super()._on_publish(client, userdata, mid, reason_code, properties)


def _receiver_class():
    from gateway.platform.receiver import Receiver

    class FleetReceiver(Receiver):
        """The reference receiver, noting when each gateway's replayed events arrive."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.replay_arrivals: dict[str, list[float]] = {}

        def _on_event(self, msg, gw, type_, event):
            if isinstance(event, dict) and event.get("replay"):
                self.replay_arrivals.setdefault(gw, []).append(time.time())
            super()._on_event(msg, gw, type_, event)

    return FleetReceiver


def FleetReceiver(*a, **kw):  # noqa: N802 - a class made on first use (paho is imported lazily there)
    return _receiver_class()(*a, **kw)


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


def attempts_profile(accepts: list[tuple[float, str]], since: float, until: float) -> dict:
    """Connection attempts the broker's port accepted in [since, until): per second and the busiest
    100 ms, split into full MQTT connects and probes."""
    window = [(t, k) for t, k in accepts if since <= t < until]
    per_s: dict[int, int] = {}
    per_100ms: dict[int, int] = {}
    for t, _k in window:
        per_s[int(t - since)] = per_s.get(int(t - since), 0) + 1
        per_100ms[int((t - since) * 10)] = per_100ms.get(int((t - since) * 10), 0) + 1
    return {"total": len(window), "mqtt": sum(1 for _, k in window if k == "mqtt"),
            "probes": sum(1 for _, k in window if k == "probe"),
            "per_s": [per_s.get(i, 0) for i in range(int(until - since) + 1)],
            "max_per_s": max(per_s.values(), default=0), "max_per_100ms": max(per_100ms.values(), default=0),
            "busiest_100ms_share": round(max(per_100ms.values(), default=0) / len(window), 3) if window else 0}


def run(a) -> dict:
    """The whole run; returns the report."""
    logging.basicConfig(level=logging.WARNING if not a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not a.verbose:
        # a fleet that loses its broker logs 500 'cannot reach' errors: the report says it better
        logging.getLogger("gateway.sync.uplink").setLevel(logging.CRITICAL)
    fd_limit = _raise_fd_limit()
    work = Path(a.data_dir or tempfile.mkdtemp(prefix="fleet-sim-"))
    work.mkdir(parents=True, exist_ok=True)
    broker = proxy = receiver = None
    report: dict = {"gateways": a.gateways, "sensors_per_gateway": a.sensors, "rate_hz": a.rate,
                    "period_s": a.period, "duration_s": a.duration, "fd_limit": fd_limit,
                    "rss_mb_before": round(_rss_mb(), 1), "threads_before": threading.active_count()}
    if a.outage_at is not None and a.broker:
        raise SystemExit("fleet-sim: --outage-at restarts the broker it owns: not with --broker")
    try:
        if a.broker:
            host, _, port = a.broker.rpartition(":")
            host, port, rx_port = host or "127.0.0.1", int(port), int(port)
        else:
            from gateway.platform.fleet_proxy import CountingProxy

            broker = Broker(work / "broker").start()
            proxy = CountingProxy(_free_port(), broker.host, broker.port).start()
            host, port, rx_port = proxy.host, proxy.port, broker.port
        if a.receiver:
            receiver = FleetReceiver(host, rx_port, db=str(work / "platform.sqlite"),
                                session=f"fleet-sim-{os.getpid()}").start(timeout=30)
        t0 = time.monotonic()
        cpu0 = _cpu_s()
        gateways = [SimGateway(i + 1, work, host, port, a) for i in range(a.gateways)]
        report["build_s"] = round(time.monotonic() - t0, 2)
        report["rss_mb_built"] = round(_rss_mb(), 1)
        for gw in gateways:
            gw.start()
        online = _wait(lambda: all(g.uplink.connects >= 1 for g in gateways), max(30.0, a.gateways * 0.1))
        report["all_online_s"] = round(time.monotonic() - t0, 2) if online else None
        driver = SensorDriver(gateways, a.rate, a.alarm_every)
        driver.start()
        started = time.monotonic()
        rss_peak = _rss_mb()
        outage = None
        while time.monotonic() - started < a.duration:
            elapsed = time.monotonic() - started
            if outage is None and a.outage_at is not None and elapsed >= a.outage_at:
                outage = _outage(a, broker, proxy, gateways)
            rss_peak = max(rss_peak, _rss_mb())
            time.sleep(0.2)
        if a.outage_at is not None and outage is None:
            outage = _outage(a, broker, proxy, gateways)
        driver.stop_event.set()
        driver.join(5)
        cpu_run = _cpu_s() - cpu0
        wall_run = time.monotonic() - t0
        report.update({"threads_running": threading.active_count(), "rss_mb_peak": round(rss_peak, 1),
                       "cpu_s": round(cpu_run, 1), "cpu_pct_of_one_core": round(100 * cpu_run / wall_run, 1),
                       "readings": driver.readings})
        for gw in gateways:
            gw.recorder.flush(30)
        # what was made up to now must reach the broker; status events keep coming while it drains,
        # and what the recorders commit at their stop stays in the outboxes for the next start
        made = {g.id: g.outbox.next_seq - 1 for g in gateways}
        report["drained"] = _wait(lambda: sum(g.uplink.sender.counts["delivered"] for g in gateways)
                                  >= sum(made.values()), a.drain_s, 0.5)
        if receiver is not None:
            report["platform"] = _platform(receiver, gateways, made, outage, a.drain_s)
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda g: g.stop(), gateways))
        report["events_made"] = sum(made.values())
        report["events_per_s"] = round(report["events_made"] / a.duration, 1)
        report["delivered"] = sum(g.uplink.sender.counts["delivered"] for g in gateways)
        report["connects"] = sum(g.uplink.connects for g in gateways)
        report["probes"] = sum(g.uplink.redial.probes for g in gateways)
        if outage is not None:
            back = outage["back_at"]
            acks = [min((t for t in g.uplink.first_replay_ack if t >= back), default=None) for g in gateways]
            onl = [min((t for t in g.uplink.online_at if t >= back), default=None) for g in gateways]
            outage["first_replay_ack_s"] = percentiles([t - back for t in acks if t is not None])
            outage["online_s"] = percentiles([t - back for t in onl if t is not None])
            outage["gateways_without_replay_ack"] = sum(1 for t in acks if t is None)
            if proxy is not None:
                accepts = proxy.accepts()
                outage["attempts_during_outage"] = attempts_profile(accepts, outage["down_at"], back)
                outage["attempts_after_return"] = attempts_profile(accepts, back, back + 10.0)
            report["outage"] = outage
    finally:
        if receiver is not None:
            receiver.close()
        if proxy is not None:
            proxy.close()
        if broker is not None:
            broker.stop()
        if not a.keep and not a.data_dir:
            shutil.rmtree(work, ignore_errors=True)
    return report


def _outage(a, broker, proxy, gateways) -> dict:
    """Stop the broker (the proxy's port refuses first), make one alarm per gateway while it is away,
    start it again after `outage_s`."""
    proxy.pause()
    down_at = time.time()
    probes = sum(g.uplink.redial.probes for g in gateways)
    broker.stop()
    for gw in gateways:
        gw.alarm()  # made offline: every gateway has a backlog to replay
    _wait(lambda: time.time() - down_at >= a.outage_s, a.outage_s + 5, 0.05)
    broker.start()
    # refused probes never reach an accept(): counted at the gateways
    probes = sum(g.uplink.redial.probes for g in gateways) - probes
    back_at = proxy.resume()
    return {"outage_s": round(back_at - down_at, 2), "down_at": down_at, "back_at": back_at,
            "refused_probes": probes, "refused_probes_per_s": round(probes / (back_at - down_at), 1)}


def _platform(receiver, gateways, made: dict, outage, drain_s: float) -> dict:
    """Whether every (gateway, seq) reached the receiver, and when the first replayed one did."""
    def missing() -> int:
        got: dict[str, set] = {}
        with receiver._lock:
            for e in receiver.events:
                got.setdefault(e["id"].rpartition("/")[0], set()).add(e["seq"])
        n = 0
        for gw, top in made.items():
            declared = {s for lo, hi in receiver.declared_gaps(gw) for s in range(lo, hi + 1)}
            n += len(set(range(1, top + 1)) - got.get(gw, set()) - declared)
        return n
    _wait(lambda: missing() == 0, drain_s, 0.5)
    out = {"received": len(receiver.events), "missing": missing(), "duplicates": receiver.duplicates,
           "invalid": len(receiver.invalid), "undeclared_gaps": len(receiver.undeclared_gaps())}
    if outage is not None:
        back = outage["back_at"]
        firsts = [min((t for t in receiver.replay_arrivals.get(g.id, ()) if t >= back), default=None)
                  for g in gateways]
        # includes the receiver's own reconnect after the restart (paho's 0.1..2 s delay)
        out["first_replay_arrival_s"] = percentiles([t - back for t in firsts if t is not None])
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gateways", type=int, default=100, help="simulated gateways (default 100)")
    p.add_argument("--sensors", type=int, default=50, help="sensors per gateway (default 50)")
    p.add_argument("--rate", type=float, default=0.2, help="readings per second per sensor (default 0.2)")
    p.add_argument("--period", type=float, default=60.0, help="telemetry summary period, s (default 60)")
    p.add_argument("--status-s", type=float, default=60.0, help="status event period, s (default 60)")
    p.add_argument("--commit-s", type=float, default=5.0, help="outbox group-commit period, s (default 5)")
    p.add_argument("--alarm-every", type=float, default=600.0, metavar="S",
                   help="mean seconds between alarms per gateway (0: none; default 600)")
    p.add_argument("--replay-per-s", type=float, default=200.0, help="each uplink's replay rate (default 200)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of simulated operation (default 60)")
    p.add_argument("--broker", metavar="HOST:PORT", help="an external broker (default: start own mosquitto)")
    p.add_argument("--outage-at", type=float, metavar="S", help="restart the own broker S s into the run")
    p.add_argument("--outage-s", type=float, default=30.0, help="how long the broker stays down (default 30)")
    p.add_argument("--receiver", action="store_true", help="run the reference receiver and check every (gateway, seq)")
    p.add_argument("--drain-s", type=float, default=60.0, help="at most this long to drain at the end (default 60)")
    p.add_argument("--prefix", default="fleet", help="gateway id prefix (default fleet)")
    p.add_argument("--data-dir", help="keep the outboxes here (default: a temp dir, removed)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    p.add_argument("--json", metavar="FILE", help="write the report here (default: stdout)")
    p.add_argument("--verbose", action="store_true")


def main(a) -> int:
    report = run(a)
    text = json.dumps(report, indent=1)
    if a.json:
        Path(a.json).write_text(text + "\n")
    else:
        print(text)
    lost = report.get("platform", {}).get("missing", 0)
    return 1 if lost else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="fleet-sim")
    add_arguments(ap)
    sys.exit(main(ap.parse_args()))
