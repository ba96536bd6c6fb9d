"""Fleet figures (issue 14 item 5):

- one gateway, broker down 30 s: first replayed event acknowledged by the broker after its return,
  p50 over 10 outages                                                        target <= 2 s
- 500 simulated gateways (gateway-platform fleet-sim: the gateway's own outbox, recorder and uplink
  code, 50 sensors each), broker restarted after 30 s down: time to each gateway's first replayed
  event (PUBACK, and arrival at the reference receiver) p50/p99/max; the connection attempts per
  second the broker's port accepted (a counting TCP proxy in front of mosquitto) and the refused
  probes per second while it was down; threads, RSS and CPU of the fleet process.

Run: .venv/bin/python bench/fleet.py [--quick]     (starts its own mosquitto on a free port)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from gateway.config.model import Uplink as UplinkConfig  # noqa: E402
from gateway.platform.fleet_gateways import FleetUplink  # noqa: E402
from gateway.platform.fleet_sim import percentiles  # noqa: E402
from gateway.record import Outbox  # noqa: E402
from mosquitto import Mosquitto, wait_for  # noqa: E402

GW = "bench-one"
ALARM = {"alarm": "water-1.level#1", "rule": "water-1.level", "sensor": "water-1", "point": "level",
         "transition": "raised", "level": "red", "previous_level": None, "value": 31.5, "unit": "cm",
         "state": "active"}


def one_gateway(runs: int, outage_s: float) -> dict:
    """`runs` outages of one broker under one gateway (production reconnect defaults): seconds from
    the broker listening again to the PUBACK of the first replayed event."""
    logging.getLogger("gateway.sync.uplink").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as d:
        broker = Mosquitto(os.path.join(d, "broker")).start()
        ob = Outbox(os.path.join(d, "o.db"), GW)
        up = FleetUplink(UplinkConfig(host=broker.host, port=broker.port), ob, GW,
                         {"firmware": "bench", "config_hash": "", "sensors": ["water-1"]}).start()
        took = []
        try:
            wait_for(lambda: up.connects >= 1, 20, what="online")
            for _ in range(runs):
                broker.stop()
                down = time.monotonic()
                ob.add("alarm", ALARM)
                wait_for(lambda: time.monotonic() - down >= outage_s, outage_s + 5, 0.05, what="the outage")
                n = len(up.first_replay_ack)
                broker.start()
                back = time.time()
                wait_for(lambda: len(up.first_replay_ack) > n, 120, 0.01, what="the replayed alarm acked")
                took.append(up.first_replay_ack[-1] - back)
        finally:
            up.stop()
            ob.close()
            broker.close()
    return {"runs": runs, "outage_s": outage_s, "took_s": [round(t, 3) for t in took],
            **{k: v for k, v in percentiles(took).items() if k != "n"}, "median_s": statistics.median(took)}


def fleet(gateways: int, duration: float, outage_at: float, outage_s: float,
          platform: tuple = ("--receiver", "--drain-s", "420")) -> dict:
    """One `gateway-platform fleet-sim` run (its own broker restarted at `outage_at`); its JSON report.
    `platform`: what receives (default the reference receiver in process)."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "fleet.json")
        cmd = [sys.executable, "-m", "gateway.platform.cli", "fleet-sim", "--gateways", str(gateways),
               "--duration", str(duration), "--outage-at", str(outage_at), "--outage-s", str(outage_s),
               *platform, "--json", out]
        t = time.monotonic()
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=duration + outage_s + 600)
        if not os.path.exists(out):
            raise RuntimeError(f"fleet-sim failed ({r.returncode}): {r.stderr[-2000:]}")
        rep = json.load(open(out))
        rep["took_s"] = round(time.monotonic() - t, 1)
        rep["command"] = " ".join(cmd[2:-2])
        return rep


def measure(runs: int = 10, outage_s: float = 30.0, gateways: int = 500, duration: float = 120.0,
            outage_at: float = 40.0) -> dict:
    return {"one": one_gateway(runs, outage_s), "fleet": fleet(gateways, duration, outage_at, outage_s)}


def rows(r: dict) -> list[tuple]:
    """(figure, measured, target, met) for bench/_report.py."""
    one, fl = r["one"], r["fleet"]
    out = [(f"one gateway, broker down {one['outage_s']:g} s: first replayed event acked after its return "
            f"(p50 of {one['runs']})", f"{one['median_s']:.2f} s (max {one['max']:.2f})", "<= 2 s",
            one["median_s"] <= 2.0)]
    o = fl.get("outage", {})
    ack, arr = o.get("first_replay_ack_s", {}), fl.get("platform", {}).get("first_replay_arrival_s", {})
    if ack.get("n"):
        out.append((f"{fl['gateways']} gateways, broker down {o['outage_s']:.0f} s: first replayed event acked, "
                    "p50 / p99 / max", f"{ack['p50']:.2f} / {ack['p99']:.2f} / {ack['max']:.2f} s "
                    f"({ack['n']} of {fl['gateways']})", "p50 <= 2 s, all back", ack["p50"] <= 2.0
                    and ack["n"] == fl["gateways"]))
    if arr.get("n"):
        out.append(("... at the reference receiver (behind its own backlog: ~300 events/s here), p50 / p99 / max",
                    f"{arr['p50']:.2f} / {arr['p99']:.2f} / {arr['max']:.2f} s", "—", None))
    after = o.get("attempts_after_return")
    if after:
        out.append(("connections the broker's port accepted after its return: busiest second / 100 ms "
                    "(MQTT connects in the busiest 100 ms)",
                    f"{after['max_per_s']} / {after['max_per_100ms']} ({after['max_mqtt_per_100ms']} of "
                    f"{after['mqtt']})", "spread: < 1/3 in one 100 ms",
                    after["max_mqtt_per_100ms"] < after["mqtt"] / 3))
        out.append(("refused probes while the broker was down", f"{o['refused_probes_per_s']:.0f}/s "
                    f"({o['refused_probes_per_s'] / fl['gateways']:.2f} per gateway per s)", "—", None))
    p = fl.get("platform", {})
    out.append((f"fleet run: events made / missing at the receiver / duplicates",
                f"{fl.get('events_made', 0):,} ({fl.get('events_per_s', 0):.0f}/s) / {p.get('missing')} / "
                f"{p.get('duplicates')}", "0 missing", p.get("missing") == 0))
    out.append((f"fleet process with {fl['gateways']} gateways: threads / RSS peak / CPU",
                f"{fl.get('threads')} / {fl.get('rss_mb_peak'):.0f} MB / "
                f"{fl.get('cpu_pct_of_one_core'):.0f} % of a core", "—", None))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    kw = dict(runs=3, outage_s=5.0, gateways=50, duration=30.0, outage_at=10.0) if a.quick else {}
    res = measure(**kw)
    print(json.dumps(res, indent=1, default=str))
    for row in rows(res):
        print(" | ".join(str(x) for x in row))
