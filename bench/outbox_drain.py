"""Outbox and uplink figures (issue 4):

- batched ingest rate into the outbox                     target >= 20,000 events/s
- synchronous=FULL alarm commit, median                   target <= 5 ms
- 100,000 buffered events drained to a local mosquitto    target <= 30 s
- a live alarm added mid-drain reaching the broker         target <= 1 s (end to end, via a subscriber)

Run: .venv/bin/python bench/outbox_drain.py [--events N]   (starts its own mosquitto on a free port)
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from gateway.config.model import Outbox as OutboxLimits  # noqa: E402
from gateway.config.model import Uplink as UplinkConfig  # noqa: E402
from gateway.record import Event, Outbox, Recorder  # noqa: E402
from gateway.sync import Uplink  # noqa: E402
from mosquitto import Mosquitto, wait_for  # noqa: E402

GW = "bench-gw"
TELEMETRY = {"sensor": "water-1", "point": "level", "unit": "cm", "quality": "good", "reason": "period",
             "period_s": 60.0, "count": 60, "bad": 0, "min": 12.1, "max": 12.9, "mean": 12.5, "last": 12.7}
ALARM = {"alarm": "water-1.level#1", "rule": "water-1.level", "sensor": "water-1", "point": "level",
         "transition": "raised", "level": "red", "previous_level": None, "value": 31.5, "unit": "cm",
         "state": "active"}


def ingest(workdir: str, n: int) -> float:
    """Events/s through the Recorder (the daemon's path: queue -> writer thread -> batched commits)."""
    ob = Outbox(os.path.join(workdir, "ingest.db"), GW, OutboxLimits(max_rows=10 * n))
    rec = Recorder(ob, queue_max=n + 1).start()
    t = time.perf_counter()
    for _ in range(n):
        rec.submit("telemetry", TELEMETRY)
    rec.flush(120)
    rate = n / (time.perf_counter() - t)
    rec.stop()
    ob.close()
    return rate


def alarm_commit_ms(workdir: str, n: int = 300) -> float:
    ob = Outbox(os.path.join(workdir, "alarm.db"), GW)
    ob.add_many([Event("telemetry", TELEMETRY)] * 1000)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        ob.add("alarm", ALARM)
        lat.append((time.perf_counter() - t) * 1000)
    ob.close()
    return statistics.median(lat)


def _sample(up, t0: float, samples: list, stop: threading.Event, every_s: float = 0.1) -> None:
    """(seconds since the uplink started, events delivered) every `every_s`, for the drain plot."""
    while not stop.wait(every_s):
        samples.append((time.perf_counter() - t0, up.status()["delivered"]))


def drain(workdir: str, n: int, samples: list | None = None) -> tuple[float, float, dict]:
    broker = Mosquitto(os.path.join(workdir, "broker")).start()
    ob = Outbox(os.path.join(workdir, "drain.db"), GW, OutboxLimits(max_rows=10 * n))
    for i in range(0, n, 5000):
        ob.add_many([Event("telemetry", TELEMETRY)] * min(5000, n - i))
    alarm_seen = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-platform")
    sub.on_message = lambda c, u, m: alarm_seen.set()
    sub.connect(broker.host, broker.port)
    sub.subscribe(f"city/v1/{GW}/event/alarm", qos=1)
    sub.loop_start()
    cfg = UplinkConfig(host=broker.host, port=broker.port, replay_per_s=1e9, inflight_max=20)
    up = Uplink(cfg, ob, GW, {"firmware": "bench", "config_hash": "", "sensors": []})
    sampling = threading.Event()
    try:
        t0 = time.perf_counter()
        up.start()
        if samples is not None:
            threading.Thread(target=_sample, args=(up, t0, samples, sampling), daemon=True).start()
        wait_for(lambda: up.status()["delivered"] >= n // 2, 60, interval=0.005, what="half the backlog")
        t_alarm = time.perf_counter()
        ob.add("alarm", ALARM)
        if not alarm_seen.wait(10):
            raise TimeoutError("the live alarm did not arrive within 10 s")
        alarm_s = time.perf_counter() - t_alarm
        wait_for(lambda: up.status()["delivered"] >= n + 1, 120, interval=0.01, what="the whole backlog")
        drain_s = time.perf_counter() - t0
        status = up.status()
    finally:
        sampling.set()
        up.stop()
        sub.disconnect()
        sub.loop_stop()
        broker.close()
    return drain_s, alarm_s, status


def measure(events: int = 100_000, ingest_n: int = 100_000) -> dict:
    """Ingest rate, FULL alarm commit median, backlog drain with a live alarm mid-drain."""
    logging.basicConfig(level=logging.WARNING)
    samples: list = []
    with tempfile.TemporaryDirectory(prefix="outbox-bench-") as d:
        rate = ingest(d, ingest_n)
        full_ms = alarm_commit_ms(d)
        drain_s, alarm_s, st = drain(d, events, samples)
    return {"events": events, "ingest_n": ingest_n, "ingest_per_s": rate, "alarm_commit_ms": full_ms,
            "drain_s": drain_s, "drain_per_s": events / drain_s, "live_alarm_s": alarm_s,
            "uplink": {k: st[k] for k in ("published", "delivered", "resent")}, "drain_samples": samples}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--ingest", type=int, default=100_000)
    args = p.parse_args()
    r = measure(args.events, args.ingest)
    rate, full_ms, drain_s, alarm_s, st = (r["ingest_per_s"], r["alarm_commit_ms"], r["drain_s"],
                                           r["live_alarm_s"], r["uplink"])
    rows = [
        ("outbox ingest, batched (Recorder)", f"{rate:,.0f} events/s", ">= 20,000", rate >= 20_000),
        ("alarm commit, synchronous=FULL, median", f"{full_ms:.2f} ms", "<= 5 ms", full_ms <= 5),
        (f"drain {args.events:,} buffered events", f"{drain_s:.1f} s ({args.events / drain_s:,.0f}/s)",
         "<= 30 s", drain_s <= 30),
        ("live alarm mid-drain reaches the broker", f"{alarm_s * 1000:.0f} ms", "<= 1 s", alarm_s <= 1),
    ]
    for name, value, target, ok in rows:
        print(f"{name:<42} {value:>24}   target {target:<10} {'ok' if ok else 'MISSED'}")
    print(f"uplink: published {st['published']}, delivered {st['delivered']}, resent {st['resent']}")
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
