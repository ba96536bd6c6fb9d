"""The platform side on PostgreSQL: 3 receivers of one shared-subscription group (processes, as
`gateway-platform receive --share G --instance N --store postgresql://...`) behind a real mosquitto.

    python bench/platform_store.py                       # 1,000 events/s for 30 s, then a 20,000 burst
    python bench/platform_store.py --rate 2000 --seconds 60 --receivers 3

Figures:
- sustained: events published at `rate` (QoS 1, `gateways` gateways, seq per gateway) for `seconds`,
  receiver 2 killed with -9 halfway and restarted: end-to-end latency p50/p99 from the event's `ts`
  to `events.stored` (clock_timestamp() at the INSERT; the commit follows in the same batch), CPU of
  each receiver (utime+stime from /proc) and of their PostgreSQL backends, per 1,000 events/s;
  every (gateway, seq) stored exactly once.
- burst: `burst` events published as fast as one paho client can: events/s stored (first to last
  `stored` of the burst).
The publisher is a plain paho client (not the gateway's outbox) so the receivers, not the gateways,
are what is measured; `gateway-platform fleet-sim` measures the whole path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "tests")]

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from gateway.platform.spawn import start_receivers, stop_receivers  # noqa: E402
from mosquitto import Mosquitto, wait_for  # noqa: E402

SERVER = os.environ.get("PLATFORM_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _event(gw: str, seq: int) -> bytes:
    now = datetime.now(timezone.utc)
    return json.dumps({
        "v": 1, "id": f"{gw}/{seq}", "seq": seq, "ts": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "clock_synced": True, "boot": "bench", "type": "telemetry", "replay": False, "sensor": "water-1",
        "point": "level", "unit": "cm", "quality": "good", "reason": "period", "period_s": 60.0, "count": 60,
        "bad": 0, "min": 1, "max": 2, "mean": 1.5, "last": 2}, separators=(",", ":")).encode()


class Publisher:
    """One paho client publishing QoS 1 events for `gateways` gateways, seq per gateway."""

    def __init__(self, broker, gateways: int):
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.max_inflight_messages_set(1000)
        self.c.max_queued_messages_set(0)
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        self.gws = [f"bench-{i:03d}" for i in range(gateways)]
        self.seq = {gw: 0 for gw in self.gws}
        self.sent = 0
        self.infos = []
        self.sent_in_phase = 0

    def one(self) -> None:
        gw = self.gws[self.sent % len(self.gws)]
        self.seq[gw] += 1
        self.infos.append(self.c.publish(f"city/v1/{gw}/event/telemetry", _event(gw, self.seq[gw]), qos=1))
        self.sent += 1

    def paced(self, rate: float, seconds: float, at=None) -> None:
        """`rate` events/s for `seconds`; at(fraction) is called as time goes (the kill)."""
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < seconds:
            due = int(elapsed * rate)
            while self.sent_in_phase < due:
                self.one()
                self.sent_in_phase += 1
            if at:
                at(elapsed / seconds)
            time.sleep(0.002)

    def acked(self) -> bool:
        return all(i.is_published() for i in self.infos)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _backend_cpu(pg) -> float:
    pids = [r[0] for r in pg.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'gateway-platform'")]
    total = 0.0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass  # not this machine's server, or gone
    return total


def measure(receivers: int = 3, gateways: int = 50, rate: float = 1000.0, seconds: float = 30.0,
            burst: int = 20_000, batch: int = 500, kill: bool = True, linger_s: float = 0.05) -> dict:
    import psycopg

    name = f"cgw_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{SERVER.rpartition('/')[0]}/{name}"
    work = tempfile.mkdtemp(prefix="bench-platform-")
    broker = Mosquitto(os.path.join(work, "broker"), persistence=True).start()
    rxs = []
    pub = None
    try:
        rxs = start_receivers(receivers, broker.host, broker.port, url, group="bench", batch=batch, linger_s=linger_s,
                               log_dir=work)
        pg = psycopg.connect(url, autocommit=True)
        count = lambda: pg.execute("SELECT count(*) FROM events").fetchone()[0]  # noqa: E731
        pub = Publisher(broker, gateways)

        # -- sustained, with a kill -9 halfway -------------------------------------------------
        killed = {"at": None, "back": None}

        def at(frac):
            if kill and killed["at"] is None and frac >= 0.4:
                rxs[1].kill9()
                killed["at"], killed["at_wall"] = time.monotonic(), time.time()
            if kill and killed["at"] and killed["back"] is None and frac >= 0.5:
                rxs[1].start()
                killed["back"], killed["back_wall"] = time.monotonic(), time.time()

        cpu0 = [rx.cpu_s() for rx in rxs]
        be0 = _backend_cpu(pg)
        t0 = time.monotonic()
        pub.sent_in_phase = 0
        pub.paced(rate, seconds, at)
        sustained_n = pub.sent
        wait_for(lambda: count() >= sustained_n, 120, interval=0.1, what=f"{sustained_n} events stored")
        window = time.monotonic() - t0
        cpu = [rx.cpu_s() - c for rx, c in zip(rxs, cpu0)]
        be = _backend_cpu(pg) - be0  # the killed receiver's old backend is not counted (gone)
        lat = pg.execute("SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY "
                         "extract(epoch FROM stored - ts)), max(extract(epoch FROM stored - ts)) FROM events"
                         ).fetchone()
        quiet = (None, None)
        if killed["at"] and killed["back"]:
            # the events made while receiver 2 was dead (+1 s before, +3 s after) wait in its session:
            # the latency of the others is the steady state
            quiet = pg.execute("SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY "
                               "extract(epoch FROM stored - ts)) FROM events WHERE ts < to_timestamp(%s) "
                               "OR ts > to_timestamp(%s)",
                               (killed["at_wall"] - 1, killed["back_wall"] + 3)).fetchone()[0]
        per_s = sustained_n / window
        # -- burst --------------------------------------------------------------------------------
        b0 = count()
        tb = time.monotonic()
        for _ in range(burst):
            pub.one()
        publish_s = time.monotonic() - tb
        wait_for(lambda: count() >= b0 + burst, 180, interval=0.1, what="the burst stored")
        span = pg.execute("SELECT extract(epoch FROM max(stored) - min(stored)) FROM (SELECT stored FROM events "
                          "ORDER BY stored DESC LIMIT %s) AS b", (burst,)).fetchone()[0]
        wait_for(pub.acked, 30, what="every PUBACK")
        total = pub.sent
        rows = pg.execute("SELECT count(*), count(DISTINCT (gateway, seq)) FROM events").fetchone()
        expected = sum(pub.seq.values())
        dup = pg.execute("SELECT coalesce(sum(duplicates), 0) FROM counters").fetchone()[0]
        pg.close()
        return {
            "receivers": receivers, "gateways": gateways, "rate": rate, "seconds": seconds, "batch": batch, "linger_s": linger_s,
            "sustained_events": sustained_n, "sustained_per_s": round(per_s, 1),
            "e2e_p50_ms": round(float(lat[0][0]) * 1000, 1), "e2e_p99_ms": round(float(lat[0][1]) * 1000, 1),
            "e2e_max_ms": round(float(lat[1]) * 1000, 1),
            "e2e_p50_ms_outside_kill": round(float(quiet[0]) * 1000, 1) if quiet[0] is not None else None,
            "e2e_p99_ms_outside_kill": round(float(quiet[1]) * 1000, 1) if quiet[1] is not None else None,
            "cpu_pct_per_receiver": [round(100 * c / window, 1) for c in cpu],
            # receiver CPU (% of one core) per 1,000 events/s stored, whichever receiver stored them:
            # the cost of an event is the same in each member, the group splits the events
            "receiver_cpu_pct_per_1k": round(100 * sum(cpu) / window / (per_s / 1000), 2),
            "pg_backends_cpu_pct_per_1k": round(100 * be / window / (per_s / 1000), 2),
            "killed_receiver_s": round(killed["back"] - killed["at"], 2) if killed["at"] and killed["back"] else None,
            "burst": burst, "burst_publish_per_s": round(burst / publish_s), "burst_stored_per_s": round(burst / float(span)),
            "stored": rows[0], "distinct": rows[1], "expected": expected, "total_published": total,
            "duplicates_dropped": int(dup), "exactly_once": rows[0] == rows[1] == expected,
        }
    finally:
        if pub:
            pub.close()
        stop_receivers(rxs)
        broker.close()
        with psycopg.connect(SERVER, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--receivers", type=int, default=3)
    ap.add_argument("--gateways", type=int, default=50)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--burst", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--linger", type=float, default=0.05)
    ap.add_argument("--no-kill", action="store_true")
    a = ap.parse_args(argv)
    r = measure(a.receivers, a.gateways, a.rate, a.seconds, a.burst, a.batch, not a.no_kill, a.linger)
    print(json.dumps(r, indent=1))
    return 0 if r["exactly_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
