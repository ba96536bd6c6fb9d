"""Issue 14's platform figure: 500 simulated gateways (`gateway-platform fleet-sim`: the gateway's own
outbox, recorder and uplink, each its own MQTT client and SQLite file) at a realistic rate (50 sensors
each, 60 s summaries, status every 60 s, an alarm per gateway every 10 min) into 3 receiver processes
of one MQTT 5 shared-subscription group with persistent sessions, storing into a PostgreSQL database
of the bench's own, for 5 minutes; receiver 2 is killed with -9 and restarted, the broker restarted
once (30 s down). Must hold: every (gateway, seq) stored exactly once (the key), declared gaps only.

    python bench/fleet_pg.py [--quick]"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.fleet import fleet  # noqa: E402

ADMIN = os.environ.get("GATEWAY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(sql)


def measure(gateways: int = 500, duration: float = 300.0, kill_at: float = 100.0, outage_at: float = 200.0,
            outage_s: float = 30.0, receivers: int = 3) -> dict:
    name = f"cgw_bench_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = ADMIN.rpartition("/")[0] + "/" + name
    try:
        rep = fleet(gateways, duration, outage_at, outage_s,
                    ("--receivers", str(receivers), "--store", url, "--kill-receiver-at", str(kill_at),
                     "--drain-s", "600"))
        rep["command"] = rep["command"].replace(url, "postgresql://.../<bench db>")
        return rep
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rows(r: dict) -> list[tuple]:
    """(figure, measured, target, met) for bench/_report.py."""
    s = r.get("store", {})
    n = len(s.get("receiver_cpu_s", [])) or 3
    rate = s.get("stored_per_s") or 0.0
    cpu = sum(s.get("receiver_cpu_s", [])) / max(1.0, r.get("duration_s", 1.0))
    out = [(f"{r['gateways']} gateways -> {n} receivers on PostgreSQL, {r['duration_s'] / 60:.0f} min, one receiver "
            f"kill -9 + restart, broker restarted: events made / missing / duplicates stored / undeclared gaps",
            f"{r.get('events_made', 0):,} / {s.get('missing')} / {s.get('duplicates')} / {s.get('undeclared_gaps')}",
            "0 missing, 0 undeclared", s.get("missing") == 0 and s.get("undeclared_gaps") == 0),
           ("... stored rate; end to end (event ts -> row stored) p50 / p99",
            f"{rate:.0f} events/s; {s.get('e2e_p50_s')} / {s.get('e2e_p99_s')} s", "—", None)]
    if rate:
        out.append(("... receiver CPU per 1,000 events/s (all receivers together)",
                    f"{100 * cpu / (rate / 1000):.0f} % of a core", "—", None))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    kw = dict(gateways=50, duration=60.0, kill_at=20.0, outage_at=35.0, outage_s=10.0) if a.quick else {}
    res = measure(**kw)
    print(json.dumps(res, indent=1, default=str))
    for row in rows(res):
        print(" | ".join(str(x) for x in row))
