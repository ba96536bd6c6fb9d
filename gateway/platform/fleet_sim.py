"""`gateway-platform fleet-sim`: many simulated gateways in one process, each with the gateway's own
outbox, recorder and uplink code (its own SQLite file, its own MQTT client and reconnect schedule), the
sensors simulated in process. The platform path is measured with the real wire behaviour, outages
included.

    gateway-platform fleet-sim --gateways 500 --duration 120 --outage-at 40 --outage-s 30 --json out.json
    gateway-platform fleet-sim --gateways 50 --broker broker.example:1883 --duration 600   # an external broker

The gateways are spread over `--procs` processes (default one per 200: one process's GIL holds about
300 idle uplink loops, see docs/fleet.md). Without --broker it starts its own mosquitto (persistence on) behind a counting TCP proxy
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
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def _receiver_class():
    from gateway.platform.receiver import Receiver

    class FleetReceiver(Receiver):
        """The reference receiver, noting when each gateway's replayed events arrive."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.replay_arrivals: dict[str, list[float]] = {}

        def decode(self, topic, payload):
            out = super().decode(topic, payload)  # on paho's thread, as the message arrives
            now = time.time()
            for event in out.events:
                if event.get("replay"):
                    self.replay_arrivals.setdefault(event["id"].rpartition("/")[0], []).append(now)
            return out

    return FleetReceiver


def FleetReceiver(*a, **kw):  # noqa: N802 - a class made on first use (paho is imported lazily there)
    return _receiver_class()(*a, **kw)


def attempts_profile(accepts: list[tuple[float, str]], since: float, until: float) -> dict:
    """Connection attempts the broker's port accepted in [since, until): per second and the busiest
    100 ms, split into full MQTT connects and probes."""
    window = [(t, k) for t, k in accepts if since <= t < until]
    per_s: dict[int, int] = {}
    per_100ms: dict[int, int] = {}
    for t, _k in window:
        per_s[int(t - since)] = per_s.get(int(t - since), 0) + 1
        per_100ms[int((t - since) * 10)] = per_100ms.get(int((t - since) * 10), 0) + 1
    mqtt_100ms: dict[int, int] = {}
    for t, k in window:
        if k == "mqtt":
            mqtt_100ms[int((t - since) * 10)] = mqtt_100ms.get(int((t - since) * 10), 0) + 1
    return {"total": len(window), "mqtt": sum(1 for _, k in window if k == "mqtt"),
            "max_mqtt_per_100ms": max(mqtt_100ms.values(), default=0),
            "probes": sum(1 for _, k in window if k == "probe"),
            "per_s": [per_s.get(i, 0) for i in range(int(until - since) + 1)],
            "max_per_s": max(per_s.values(), default=0), "max_per_100ms": max(per_100ms.values(), default=0),
            "busiest_100ms_share": round(max(per_100ms.values(), default=0) / len(window), 3) if window else 0}


def _say(what: str) -> None:
    print(f"fleet-sim {time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


class _Child:
    """A child process running one Fleet (fleet_gateways.py), spoken to one JSON line at a time."""

    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.platform.fleet_gateways", *argv],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def send(self, *cmd) -> None:
        self.proc.stdin.write(" ".join(str(c) for c in cmd) + "\n")
        self.proc.stdin.flush()

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fleet-sim worker exited ({self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)


class _Local:
    """The same commands on a Fleet in this process (--procs 1)."""

    def __init__(self, fleet):
        self.fleet = fleet
        self._answer: dict | None = None

    def send(self, *cmd) -> None:
        fn = getattr(self.fleet, cmd[0])
        self._answer = fn(*(float(c) for c in cmd[1:]))

    def read(self) -> dict:
        return self._answer

    def close(self) -> None:
        pass


def _all(parts, *cmd) -> list[dict]:
    for p in parts:
        p.send(*cmd)
    return [p.read() for p in parts]


def run(a) -> dict:
    """The whole run; returns the report."""
    from gateway.platform.fleet_gateways import Fleet, _cpu_s, _raise_fd_limit, _rss_mb

    logging.basicConfig(level=logging.WARNING if not a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not a.verbose:
        # a fleet that loses its broker logs 500 'cannot reach' errors: the report says it better
        logging.getLogger("gateway.sync.uplink").setLevel(logging.CRITICAL)
    if a.outage_at is not None and a.broker:
        raise SystemExit("fleet-sim: --outage-at restarts the broker it owns: not with --broker")
    fd_limit = _raise_fd_limit()
    work = Path(a.data_dir or tempfile.mkdtemp(prefix="fleet-sim-"))
    work.mkdir(parents=True, exist_ok=True)
    procs = max(1, min(a.procs or max(1, -(-a.gateways // 200)), a.gateways))
    broker = proxy = receiver = None
    group: list = []
    killed = None  # (receiver, when) while one of the group is down
    parts: list = []
    report: dict = {"gateways": a.gateways, "procs": procs, "sensors_per_gateway": a.sensors, "rate_hz": a.rate,
                    "period_s": a.period, "duration_s": a.duration, "fd_limit": fd_limit}
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
        if a.receivers:
            if not a.store:
                raise SystemExit("fleet-sim: --receivers needs --store")
            from gateway.platform.spawn import start_receivers

            group = start_receivers(a.receivers, host, rx_port, a.store, group="fleet", log_dir=work)
        t0 = time.monotonic()
        cpu0 = _cpu_s()
        share = [a.gateways // procs + (1 if i < a.gateways % procs else 0) for i in range(procs)]
        first = 1
        for n in share:
            if procs == 1:
                parts.append(_Local(Fleet(a, first, n, host, port, work)))
            else:
                parts.append(_Child(_child_args(a, n, first, f"{host}:{port}", work)))
            first += n
        started = _all(parts, "start")
        report["build_s"] = max(x["build_s"] for x in started)
        report["online_at_start"] = sum(x["online"] for x in started)
        report["all_online_s"] = round(time.monotonic() - t0, 2) if all(x["all_online"] for x in started) else None
        _say(f"online: {report['online_at_start']} of {a.gateways} in {procs} process(es)")
        _all(parts, "go")
        began = time.monotonic()
        outage = None
        while time.monotonic() - began < a.duration:
            if outage is None and a.outage_at is not None and time.monotonic() - began >= a.outage_at:
                if receiver is not None:
                    # the outage starts from a steady state: a receiver still working off the start's
                    # burst (every sensor's first reading at once) would keep the broker busy with its
                    # session's queue while the fleet comes back, and measure that instead
                    caught_up = _wait(lambda: _missing(receiver, {k: v for r in _all(parts, "made")
                                                                  for k, v in r.items()}) == 0, a.drain_s, 1.0)
                    report["receiver_caught_up_before_outage_s"] = (round(time.monotonic() - began - a.outage_at, 1)
                                                                   if caught_up else None)
                _say("broker stopped")
                outage = _outage(a, broker, proxy, parts)
                _say("broker back")
            elapsed = time.monotonic() - began
            if group and a.kill_receiver_at is not None and killed is None and elapsed >= a.kill_receiver_at:
                victim = group[min(1, len(group) - 1)]
                victim.kill9()
                killed = (victim, time.monotonic())
                report["receiver_killed_at_s"] = round(elapsed, 1)
                _say(f"receiver {victim.instance} killed (-9)")
            if killed and killed[0] is not None and time.monotonic() - killed[1] >= 5.0:
                killed[0].start()
                killed = (None, killed[1])
                _say("receiver restarted")
            _all(parts, "sample")
            time.sleep(0.5)
        if a.outage_at is not None and outage is None:
            outage = _outage(a, broker, proxy, parts)
        _say("run over; draining")
        raw = _all(parts, "finish", a.drain_s)
        made = {k: v for r in raw for k, v in r["made"].items()}
        wall = time.monotonic() - t0
        cpu = _cpu_s() - cpu0 + sum(r["cpu_s"] for r in raw if procs > 1)
        report.update({"threads": sum(r["threads"] for r in raw), "rss_mb_peak": round(sum(r["rss_mb_peak"] for r in raw)
                                                                                    + (_rss_mb() if procs > 1 else 0), 1),
                       "cpu_s": round(cpu, 1), "cpu_pct_of_one_core": round(100 * cpu / wall, 1),
                       "readings": sum(r["readings"] for r in raw), "drained": all(r["drained"] for r in raw),
                       "events_made": sum(made.values()), "events_per_s": round(sum(made.values()) / a.duration, 1),
                       "delivered": sum(r["delivered"] for r in raw), "connects": sum(r["connects"] for r in raw),
                       "probes": sum(r["probes"] for r in raw)})
        if outage is not None:
            back = outage["back_at"]
            acks = [min((t for t in ts if t >= back), default=None) for r in raw for ts in r["acks"].values()]
            onl = [min((t for t in ts if t >= back), default=None) for r in raw for ts in r["online_at"].values()]
            outage["first_replay_ack_s"] = percentiles([t - back for t in acks if t is not None])
            outage["online_s"] = percentiles([t - back for t in onl if t is not None])
            outage["gateways_without_replay_ack"] = sum(1 for t in acks if t is None)
            refused = sum(r["probes_up"] - r["probes_down"] for r in raw)
            outage["refused_probes"] = refused  # refused SYNs never reach an accept(): counted at the gateways
            outage["refused_probes_per_s"] = round(refused / max(0.001, back - outage["down_at"]), 1)
            if proxy is not None:
                accepts = proxy.accepts()
                outage["attempts_after_return"] = attempts_profile(accepts, back, back + 10.0)
            report["outage"] = outage
        if receiver is not None:
            report["platform"] = _platform(receiver, made, outage, a.drain_s)
        if group:
            if killed and killed[0] is not None:
                killed[0].start()
            report["store"] = _stored(a.store, made, a.drain_s, group)
        _say("stopping the gateways")
        _all(parts, "stop")
    finally:
        for p in parts:
            p.close()
        if receiver is not None:
            receiver.close()
        if group:
            from gateway.platform.spawn import stop_receivers

            stop_receivers(group)
        if proxy is not None:
            proxy.close()
        if broker is not None:
            broker.stop()
        if not a.keep and not a.data_dir:
            shutil.rmtree(work, ignore_errors=True)
    return report


def _stored(url: str, made: dict, drain_s: float, group) -> dict:
    """Whether every (gateway, seq) the fleet made is in the group's store (the key (gateway, seq)
    makes each one there at most once), and the end-to-end latency (event ts -> row stored)."""
    from gateway.platform.stores import open_store

    store = open_store(url)
    try:
        mark = "%s" if url.startswith("postgres") else "?"

        def missing() -> int:
            n = 0
            for gw, top in made.items():
                stored = store._rows(f"SELECT count(*) FROM events WHERE gateway = {mark} AND seq <= {mark}",
                                     (gw, top))[0][0]
                declared = sum(min(b, top) - a + 1 for a, b in store.declared(gw) if a <= top)
                n += max(0, top - declared - stored)
            return n
        t0 = time.monotonic()
        _wait(lambda: missing() == 0, drain_s, 1.0)
        out = {"missing": missing(), "drain_s": round(time.monotonic() - t0, 1), "duplicates": store.duplicates(),
               "undeclared_gaps": sum(len(store.undeclared(gw)) for gw in made), "invalid": store.invalid_count(),
               "receiver_cpu_s": [round(rx.cpu_s(), 1) for rx in group]}
        if url.startswith("postgres"):  # latency and rate in SQL
            row = store._rows(
                "SELECT count(*), percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP "
                "(ORDER BY extract(epoch FROM stored - ts)), extract(epoch FROM max(stored) - min(stored)) "
                "FROM events WHERE stored IS NOT NULL AND ts IS NOT NULL")[0]
            out.update({"rows": row[0], "e2e_p50_s": round(row[1][0], 3) if row[1] else None,
                        "e2e_p99_s": round(row[1][1], 3) if row[1] else None,
                        "stored_per_s": round(row[0] / float(row[2]), 1) if row[2] else None})
        return out
    finally:
        store.close()


def _child_args(a, n: int, first: int, broker: str, work: Path) -> list[str]:
    args = ["--first", str(first), "--gateways", str(n), "--broker", broker, "--data-dir", str(work)]
    for name in ("sensors", "rate", "period", "status_s", "commit_s", "alarm_every", "replay_per_s",
                 "duration", "drain_s", "prefix"):
        args += [f"--{name.replace('_', '-')}", str(getattr(a, name))]
    return args


def _outage(a, broker, proxy, parts) -> dict:
    """Stop the broker (the proxy's port refuses first), make one alarm per gateway while it is away,
    start it again after `outage_s`."""
    proxy.pause()
    down_at = time.time()
    _all(parts, "down")
    broker.stop()
    _wait(lambda: time.time() - down_at >= a.outage_s, a.outage_s + 5, 0.05)
    broker.start()
    back_at = proxy.resume()
    _all(parts, "up")
    return {"outage_s": round(back_at - down_at, 2), "down_at": down_at, "back_at": back_at}


def _missing(receiver, made: dict) -> int:
    """(gateway, seq) pairs made and neither received nor declared gone."""
    got: dict[str, set] = {}
    with receiver._lock:
        for e in receiver.events:
            got.setdefault(e["id"].rpartition("/")[0], set()).add(e["seq"])
    n = 0
    for gw, top in made.items():
        declared = {s for lo, hi in receiver.declared_gaps(gw) for s in range(lo, hi + 1)}
        n += len(set(range(1, top + 1)) - got.get(gw, set()) - declared)
    return n


def _platform(receiver, made: dict, outage, drain_s: float) -> dict:
    """Whether every (gateway, seq) reached the receiver, and when each gateway's first replay did."""
    _wait(lambda: _missing(receiver, made) == 0, drain_s, 0.5)
    out = {"received": len(receiver.events), "missing": _missing(receiver, made), "duplicates": receiver.duplicates,
           "invalid": len(receiver.invalid), "undeclared_gaps": len(receiver.undeclared_gaps())}
    if outage is not None:
        back = outage["back_at"]
        firsts = [min((t for t in receiver.replay_arrivals.get(gw, ()) if t >= back), default=None) for gw in made]
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
    p.add_argument("--store", metavar="URL", help="with --receivers: where the receivers store (postgresql://... or a "
                                                 "SQLite path); every (gateway, seq) is checked there")
    p.add_argument("--receivers", type=int, default=0, metavar="N",
                   help="N `gateway-platform receive` processes of one shared-subscription group on --store")
    p.add_argument("--kill-receiver-at", type=float, metavar="S",
                   help="kill -9 one of the --receivers S s into the run and start it again 5 s later")
    p.add_argument("--drain-s", type=float, default=60.0, help="at most this long to drain at the end (default 60)")
    p.add_argument("--procs", type=int, default=0, help="processes to spread the gateways over (default: one "
                                                         "per 200 gateways; each has its own GIL)")
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
