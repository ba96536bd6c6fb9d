"""The Recorder (writer thread), telemetry aggregation, health fields and the clock facts."""

import json
import re
import threading
import time

from gateway.reading import Reading
from gateway.record import Health, Outbox, Recorder, TelemetryAggregator
from gateway.record.clock import SyncState, boot_id, clock_synced
from gateway.record.outbox import Pending

GW = "gw-rec"


def reading(value, quality="good", ts=None, sensor="water-1", point="level", fault=None):
    return Reading(sensor, point, value, "cm", quality, ts or time.time(), time.monotonic(), fault)


def types(ob):
    return [r[2] for r in ob.db.execute("SELECT seq, priority, type, ts, body FROM events ORDER BY seq")]


def test_submit_never_blocks_even_when_the_writer_is_stuck(tmp_path):
    """A hung disk: submit returns at once, telemetry is shed (counted), and no alarm is refused
    (issue 11: this test used to assert that alarms were dropped when the writer was stuck)."""
    ob = Outbox(tmp_path / "o.db", GW)
    gate = threading.Event()
    real_commit = ob.commit
    ob.commit = lambda *a, **kw: (gate.wait(10), real_commit(*a, **kw))[1]
    rec = Recorder(ob, queue_max=100).start()
    try:
        t = time.perf_counter()
        tele = [rec.submit("telemetry", {"sensor": "s", "point": "p", "i": i}) for i in range(300)]
        accepted = [rec.submit("alarm", {"sensor": "s", "point": "p", "transition": "raised", "level": "red",
                                         "state": "active"}) for _ in range(300)]
        assert time.perf_counter() - t < 0.5
        assert all(accepted) and tele.count(False) >= 100
        assert rec.stats()["shed_telemetry"] == tele.count(False)
    finally:
        gate.set()
        rec.stop()
    assert types(ob).count("alarm") == 300


def test_batches_are_committed_and_seq_follows_submission_order(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    rec = Recorder(ob).start()
    for i in range(500):
        rec.submit("telemetry", {"sensor": "s", "point": "p", "i": i})
    assert rec.flush(10)
    rec.stop()
    rows = [json.loads(ob.envelope_of(Pending(*r))) for r in ob.db.execute("SELECT seq, priority, type, ts, body FROM events ORDER BY seq")]
    assert [r["i"] for r in rows] == list(range(500))


def test_readings_become_telemetry_and_open_windows_are_flushed_at_stop(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    rec = Recorder(ob, TelemetryAggregator(period_s=3600, deadband=0.05)).start()
    for v in (10.0, 10.1, 10.2, 20.0, 20.1):
        rec.reading(reading(v))
    rec.stop()
    rows = [json.loads(ob.envelope_of(Pending(*r))) for r in ob.db.execute("SELECT seq, priority, type, ts, body FROM events ORDER BY seq")]
    assert [(r["reason"], r["count"], r["last"]) for r in rows] == [
        ("deadband", 1, 10.0), ("deadband", 3, 20.0), ("period", 1, 20.1)]


def test_unwritable_outbox_holds_alarms_drops_telemetry_and_reports_faults(tmp_path, caplog):
    ob = Outbox(tmp_path / "o.db", GW)
    pages = ob.db.execute("PRAGMA page_count").fetchone()[0]
    ob.db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
    errors = []
    rec = Recorder(ob, retry_s=0.05, on_error=errors.append).start()
    try:
        rec.submit("alarm", {"sensor": "s", "point": "p", "transition": "raised", "level": "red",
                             "state": "active", "pad": "x" * 5000})
        for i in range(20):
            rec.submit("telemetry", {"i": i, "pad": "x" * 5000})
        assert rec.flush(10)
        st = rec.stats()
        assert not st["writable"] and "is full" in st["error"] and st["held"] >= 2  # fault + alarm
        assert st["dropped_unwritable"] == 20
        assert len(errors) == 1 and "OUTBOX NOT WRITABLE" in caplog.text
        assert rec.alive()  # the gateway keeps running
        ob.db.execute("PRAGMA max_page_count = 1073741823")  # space returns
        deadline = time.monotonic() + 10
        while not rec.stats()["writable"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rec.stats()["writable"]
    finally:
        rec.stop()
    rows = [json.loads(ob.envelope_of(Pending(*r))) for r in ob.db.execute("SELECT seq, priority, type, ts, body FROM events ORDER BY seq")]
    assert [r["type"] for r in rows] == ["fault", "alarm", "fault"]
    assert rows[0]["state"] == "fault" and rows[0]["component"] == "outbox"
    assert rows[2]["state"] == "recovered" and rows[2]["dropped"] == 20


def test_status_events_from_health(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    rec = Recorder(ob, health=Health(ob), status_period_s=0.05).start()
    deadline = time.monotonic() + 5
    while "status" not in types(ob) and time.monotonic() < deadline:
        time.sleep(0.02)
    rec.stop()
    status = next(json.loads(b) for (b,) in ob.db.execute("SELECT body FROM events WHERE type = 'status'"))
    assert status["uptime_s"] >= 0 and status["disk_free_mb"] > 0 and "pending" in status["outbox"]


# -- telemetry ---------------------------------------------------------------------------------
def test_period_summary_min_max_mean_last_count():
    agg = TelemetryAggregator(period_s=60, deadband=0.5)
    assert agg.feed(reading(10.0), now=0)[0]["reason"] == "deadband"  # the first value is news
    for t, v in ((10, 11.0), (20, 9.0), (30, 12.0)):
        assert agg.feed(reading(v), now=t) == []
    assert agg.due(now=59) == []
    (rep,) = agg.due(now=61)
    assert (rep["min"], rep["max"], rep["mean"], rep["last"], rep["count"]) == (9.0, 12.0, 10.66667, 12.0, 3)
    assert rep["reason"] == "period" and rep["period_s"] == 61 and rep["quality"] == "good"
    assert agg.due(now=200) == []  # an empty window says nothing


def test_deadband_is_relative_to_the_last_reported_value():
    agg = TelemetryAggregator(period_s=60, deadband=0.05)
    agg.feed(reading(100.0), now=0)
    assert agg.feed(reading(104.9), now=1) == []
    (early,) = agg.feed(reading(106.0), now=2)
    assert early["reason"] == "deadband" and early["count"] == 2 and early["last"] == 106.0
    assert agg.feed(reading(110.0), now=3) == []  # 110 is within 5 % of 106


def test_quality_changes_are_reported_at_once_and_never_as_values():
    agg = TelemetryAggregator(period_s=60, deadband=0.05)
    agg.feed(reading(1.0), now=0)
    (bad,) = agg.feed(reading(None, "fault", fault="timeout"), now=1)
    assert bad["reason"] == "quality" and bad["quality"] == "fault" and bad["bad"] == 1
    assert bad["count"] == 0 and bad["last"] is None and bad["mean"] is None and bad["fault"] == "timeout"
    (back,) = agg.feed(reading(1.0), now=2)
    assert back["reason"] == "quality" and back["quality"] == "good" and back["last"] == 1.0


def test_points_are_aggregated_separately():
    agg = TelemetryAggregator(period_s=10, deadband=1.0)
    agg.feed(reading(1.0, point="a"), now=0)
    agg.feed(reading(2.0, point="b"), now=0)
    agg.feed(reading(1.5, point="a"), now=1)
    reps = {r["point"]: r for r in agg.due(now=11)}
    assert reps["a"]["count"] == 1 and reps["a"]["last"] == 1.5 and "b" not in reps


# -- clock -------------------------------------------------------------------------------------
def test_boot_id_and_clock_synced():
    assert re.match(r"^[0-9a-f-]{36}$", boot_id())
    assert isinstance(clock_synced(), bool)


def test_sync_state_caches_the_probe():
    calls = []
    state = SyncState(ttl_s=60, probe=lambda: calls.append(1) or True)
    assert state() and state() and len(calls) == 1
