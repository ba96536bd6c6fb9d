"""The outbox on real SQLite files: seq and envelope, durability of alarms, bounds and eviction,
disk full and unwritable files, housekeeping."""

import json
import os
import re
import sqlite3
import subprocess
import sys

import pytest

from gateway.config.model import Outbox as OutboxLimits
from gateway.errors import OutboxError
from gateway.record import Event, Outbox
from gateway.record.outbox import FAILED
from gateway.record.outbox import Pending

GW = "pd-zhangjiang-001"
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def telemetry(i=0):
    return {"sensor": "water-1", "point": "level", "unit": "cm", "quality": "good", "reason": "period",
            "period_s": 60.0, "count": 60, "bad": 0, "min": i, "max": i, "mean": i, "last": i}


def alarm(level="red"):
    return {"alarm": "water-1.level#1", "rule": "water-1.level", "sensor": "water-1", "point": "level",
            "transition": "raised", "level": level, "previous_level": None, "value": 31.0, "unit": "cm",
            "state": "active"}


def bodies(ob):
    # packed telemetry rows (gateway/record/compact.py) as the envelopes they are published as
    return {r[0]: json.loads(ob.envelope_of(Pending(*r))) for r in ob.db.execute("SELECT seq, priority, type, ts, body FROM events ORDER BY seq")}


def test_envelope_fields_in_order(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW, clock_synced=lambda: True, boot="b-1")
    seq = ob.add("alarm", alarm(), ts=1_750_000_000.1234)
    body = bodies(ob)[seq]
    assert list(body)[:8] == ["v", "id", "seq", "ts", "clock_synced", "boot", "type", "replay"]
    assert body["v"] == 1 and body["id"] == f"{GW}/{seq}" and body["seq"] == seq
    assert body["ts"] == "2025-06-15T15:06:40.123Z" and TS_RE.match(body["ts"])
    assert body["clock_synced"] is True and body["boot"] == "b-1"
    assert body["type"] == "alarm" and body["replay"] is False and body["level"] == "red"


def test_bad_events_are_refused_without_consuming_a_seq(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    with pytest.raises(OutboxError, match="unknown event type"):
        ob.add("gossip", {})
    with pytest.raises(OutboxError, match="collide with the envelope"):
        ob.add("audit", {"action": "x", "seq": 5})
    assert ob.add("audit", {"action": "x"}) == 1


def test_seq_survives_reopen_even_after_delivered_rows_are_deleted(tmp_path):
    path = tmp_path / "o.db"
    ob = Outbox(path, GW)
    seqs = ob.add_many([Event("telemetry", telemetry(i)) for i in range(10)])
    assert seqs == list(range(1, 11))
    assert ob.mark_delivered(seqs) == 10
    assert ob.housekeep(keep_delivered_s=0) == 10
    ob.close()
    ob = Outbox(path, GW)
    assert ob.stats()["rows"] == 0
    assert ob.add("alarm", alarm()) == 11  # never reused, although the table is empty
    ob.close()
    assert Outbox(path, GW).next_seq == 12


def test_alarms_and_faults_commit_with_synchronous_full_telemetry_does_not(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    trace = []
    ob.db.conn.set_trace_callback(trace.append)

    def sync_mode_at_commit():
        mode = "NORMAL"
        for stmt in trace:
            if stmt.startswith("PRAGMA synchronous="):
                mode = stmt.split("=")[1]
            if stmt == "COMMIT":
                return mode
        raise AssertionError(f"no COMMIT in {trace}")

    ob.add("alarm", alarm())
    assert sync_mode_at_commit() == "FULL"
    trace.clear()
    ob.add("fault", {"sensor": "water-1", "point": "level", "state": "fault", "reason": "timeout"})
    assert sync_mode_at_commit() == "FULL"
    trace.clear()
    ob.add_many([Event("telemetry", telemetry(i)) for i in range(5)])
    assert sync_mode_at_commit() == "NORMAL"
    assert ob.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # back to NORMAL afterwards
    assert ob.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_alarm_is_on_disk_when_add_returns_even_if_the_process_dies(tmp_path):
    path = tmp_path / "o.db"
    code = ("import os, sys; from gateway.record import Outbox; "
            f"ob = Outbox({str(path)!r}, {GW!r}); "
            "print(ob.add('alarm', {'sensor': 's', 'point': 'p', 'transition': 'raised', 'level': 'red', "
            "'state': 'active'}), flush=True); os._exit(137)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 137, out.stderr
    seq = int(out.stdout.strip())
    ob = Outbox(path, GW)
    assert bodies(ob)[seq]["level"] == "red"


def test_full_outbox_evicts_oldest_telemetry_declares_a_gap_and_keeps_alarms(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW, OutboxLimits(max_rows=50), evict_fraction=0.1)
    alarm_seqs, tele_seqs = [], []
    for i in range(120):
        if i % 10 == 0:
            alarm_seqs.append(ob.add("alarm", alarm()))
        tele_seqs.append(ob.add("telemetry", telemetry(i)))
    rows = bodies(ob)
    assert len(rows) <= 50
    assert set(alarm_seqs) <= set(rows), "an alarm was evicted"
    gaps = [b for b in rows.values() if b["type"] == "gap"]
    assert gaps and all(g["reason"] == "evicted" for g in gaps)
    evicted = set(range(1, ob.next_seq)) - set(rows)
    # every missing seq is inside a declared range, and the counts add up (earlier undelivered gap
    # notices are merged into the newest one and counted with it)
    for seq in evicted:
        assert any(g["from_seq"] <= seq <= g["to_seq"] for g in gaps), seq
    st = ob.stats()
    assert sum(g["count"] for g in gaps) == len(evicted) == st["evicted"] + st["gaps_merged"]
    # the OLDEST telemetry went: every evicted telemetry seq is older than every kept one
    kept_telemetry = [s for s, b in rows.items() if b["type"] == "telemetry"]
    assert max(set(tele_seqs) - set(kept_telemetry)) < min(kept_telemetry)


def test_delivered_rows_go_before_any_telemetry_is_evicted(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW, OutboxLimits(max_rows=20))
    seqs = ob.add_many([Event("telemetry", telemetry(i)) for i in range(20)])
    ob.mark_delivered(seqs[:10])
    ob.add_many([Event("telemetry", telemetry(i)) for i in range(5)])
    st = ob.stats()
    assert st["evicted"] == 0 and st["pending"] == 15 and st["rows"] == 15


def test_megabyte_bound_evicts_too(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW, OutboxLimits(max_rows=10**6, max_mb=0.25))
    big = telemetry() | {"note": "x" * 1000}
    for _ in range(20):
        ob.add_many([Event("telemetry", big)] * 50)
    assert ob.stats()["evicted"] > 0
    assert ob.used_bytes() <= 0.25 * 1024 * 1024 + 64 * 1024  # the bound plus a page or so of slack


def test_disk_full_raises_a_clear_counted_error_then_recovers(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    pages = ob.db.execute("PRAGMA page_count").fetchone()[0]
    ob.db.execute(f"PRAGMA max_page_count = {pages + 2}")  # what a full SD card looks like to SQLite
    big = telemetry() | {"note": "x" * 4000}
    with pytest.raises(OutboxError, match="is full") as info:
        for _ in range(50):
            ob.add_many([Event("telemetry", big)] * 20)
    assert str(tmp_path) in str(info.value)
    before = ob.next_seq
    with pytest.raises(OutboxError):
        ob.add("alarm", alarm() | {"note": "y" * 20000})
    assert ob.next_seq == before, "a failed write must not consume seqs"
    st = ob.stats()
    assert st["write_errors"] >= 2 and "is full" in st["last_error"]
    ob.db.execute("PRAGMA max_page_count = 1073741823")  # space returns
    assert ob.add("alarm", alarm()) == before
    assert ob.stats()["last_error"] is None


def test_unwritable_location_is_an_outbox_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(OutboxError, match="not writable"):
        Outbox(blocker / "o.db", GW)


def test_uplink_side_queries_priority_order_failed_rows_and_housekeeping(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    ob.add_many([Event("telemetry", telemetry(1)), Event("status", {"uptime_s": 1}),
                 Event("alarm", alarm()), Event("fault", {"component": "x", "state": "fault", "reason": "r"})])
    order = [p.type for p in ob.backlog(ob.next_seq, (-1, 0), 10)]
    assert order == ["alarm", "fault", "status", "telemetry"]
    live_from = ob.next_seq
    ob.add("telemetry", telemetry(2))
    ob.add("alarm", alarm("blue"))
    assert [p.type for p in ob.live(live_from, 10)] == ["alarm", "telemetry"]
    assert ob.mark_failed(1, "too large") == 1
    assert ob.db.execute("SELECT state, reason FROM events WHERE seq = 1").fetchone() == (FAILED, "too large")
    assert ob.mark_delivered([2, 3]) == 2 and ob.mark_delivered([2]) == 0
    assert ob.db.execute("SELECT count(*) FROM delivered").fetchone()[0] == 2  # a mark is not a row rewrite
    st = ob.stats()
    assert st["depth"] == {"alarm": 1, "fault": 1, "audit_status": 0, "telemetry": 1}
    assert st["failed"] == 1 and st["oldest_pending_age_s"] >= 0
    assert ob.housekeep() == 0  # delivered rows are the history for a day
    assert ob.housekeep(keep_delivered_s=0) == 2  # the failed row stays for the technician
    assert ob.stats()["rows"] == 4
