"""Nothing is dropped silently, alarms never (issue 11 item 2); bounded by construction (item 3) for the
Recorder, the Sender and the uplink's outbox writes; group commits (the write volume of 8(d))."""

from __future__ import annotations

import json
import threading
import time

from gateway.record import Health, Outbox, Recorder, TelemetryAggregator
from gateway.record.outbox import PENDING, Pending
from gateway.sync.pacing import TokenBucket
from gateway.sync.sender import Sender
from gateway.record.outbox import Pending
from tests.ptys import wait_until

GW = "gw-lanes"


def alarm(level="red"):
    return {"alarm": "w.level#1", "rule": "w.level", "sensor": "w", "point": "level", "transition": "raised",
            "level": level, "previous_level": None, "value": 31.0, "unit": "cm", "state": "active"}


def rows(ob):
    return [json.loads(ob.envelope_of(Pending(*r))) for r in ob.db.execute("SELECT seq, priority, type, ts, body FROM events ORDER BY seq")]


def stuck(ob):
    """A hung disk: every write waits for the returned gate."""
    gate = threading.Event()
    real = ob.commit

    def slow(*a, **kw):
        gate.wait(20)
        return real(*a, **kw)
    ob.commit = slow
    return gate


def test_alarms_are_never_crowded_out_by_telemetry_while_the_writer_is_stuck(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    gate = stuck(ob)
    rec = Recorder(ob, queue_max=100).start()
    try:
        t = time.perf_counter()
        tele = [rec.submit("telemetry", {"sensor": "s", "point": "p", "i": i}) for i in range(300)]
        alarms = [rec.submit("alarm", alarm()) for _ in range(300)]
        assert time.perf_counter() - t < 0.5, "submit never blocks"
        assert all(alarms), "an alarm is never refused because telemetry filled a queue"
        st = rec.stats()
        assert tele.count(False) >= 100 and st["shed_telemetry"] == tele.count(False)
    finally:
        gate.set()
        assert rec.flush(10)
        rec.stop()
    types = [r["type"] for r in rows(ob)]
    assert types.count("alarm") == 300
    shed = [r for r in rows(ob) if r["type"] == "fault" and r.get("reason") == "telemetry_shed"]
    assert shed and shed[-1]["dropped"] == tele.count(False), "shedding is declared to the platform"


def test_the_urgent_lane_has_its_own_bound_and_counts_what_it_cannot_hold(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    gate = stuck(ob)
    rec = Recorder(ob, urgent_max=50).start()
    try:
        accepted = [rec.submit("fault", {"component": "x", "state": "fault", "reason": "r"}) for _ in range(80)]
        assert accepted.count(False) >= 29 and rec.stats()["dropped_urgent"] == accepted.count(False)
    finally:
        gate.set()
        rec.stop()


def test_one_unserialisable_event_is_dropped_and_declared_the_rest_is_stored(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    rec = Recorder(ob, retry_s=0.05).start()
    try:
        rec.submit("audit", {"action": "x", "bad": {1, 2}})  # a set: not JSON
        rec.submit("alarm", alarm())
        assert rec.flush(5)
        wait_until(lambda: "alarm" in [r["type"] for r in rows(ob)], timeout=5, what="the alarm stored")
        st = rec.stats()
        assert st["writable"] and st["held"] == 0 and st["dropped_invalid"] == 1
    finally:
        rec.stop()
    bad = [r for r in rows(ob) if r["type"] == "fault" and r.get("reason") == "invalid_event"]
    assert bad and "audit" in bad[0]["detail"]


def test_telemetry_is_group_committed_alarms_one_by_one(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    commits = []
    ob.db.conn.set_trace_callback(lambda s: commits.append(s) if s == "COMMIT" else None)
    rec = Recorder(ob, commit_s=0.5).start()
    try:
        for i in range(200):
            rec.submit("telemetry", {"sensor": "s", "point": "p", "i": i})
            time.sleep(0.002)
        assert rec.flush(5)
        n_tele = len(commits)
        assert n_tele <= 3, f"{n_tele} commits for 200 telemetry events"
        before = len(commits)
        for _ in range(3):
            rec.submit("alarm", alarm())
            assert rec.flush(5)  # flush returns only once the alarm is committed
        assert len(commits) - before == 3
    finally:
        rec.stop()


def test_delivery_marks_are_batched_and_committed_by_the_writer(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    seqs = ob.add_many([("telemetry", {"i": i}) for i in range(100)])
    rec = Recorder(ob, commit_s=0.3).start()
    done = []
    try:
        for s in seqs:
            rec.delivered([s], on_marked=done.extend)
        wait_until(lambda: len(done) == 100, timeout=5, what="marks committed")
        assert ob.stats()["pending"] == 0
    finally:
        rec.stop()


def test_health_reports_every_drop_counter_in_the_status_event(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    rec = Recorder(ob)
    fields = Health(ob, recorder=rec)()
    for key in ("shed_telemetry", "dropped_urgent", "dropped_unwritable", "dropped_invalid"):
        assert key in fields["recorder"]
    assert "evicted" in fields["outbox"]


def test_before_the_outbox_opens_events_wait_in_the_recorder(tmp_path):
    rec = Recorder(None, TelemetryAggregator(60, 0.05))
    assert rec.submit("alarm", alarm())
    ob = Outbox(tmp_path / "o.db", GW)
    rec.attach(ob).start()
    try:
        assert rec.flush(5)
    finally:
        rec.stop()
    assert [r["type"] for r in rows(ob)] == ["alarm"]


# -- the Sender ---------------------------------------------------------------------------------
def test_the_sender_forgets_what_the_outbox_has_marked(tmp_path):
    """65-75 bytes per delivered event for as long as the link stays up (issue 11): `_sent` must hold
    only what is in flight or acked-but-not-yet-marked."""
    ob = Outbox(tmp_path / "o.db", GW)
    sender = Sender(ob, 20, TokenBucket(1e9), 1 << 20)
    sender.start_session(ob.next_seq, None)
    mid = 0
    for round_ in range(100):
        ob.add_many([("telemetry", {"i": i}) for i in range(50)])
        while True:
            out = sender.next_messages()
            if not out:
                break
            for rows, _replay in out:
                mid += 1
                sender.sent(mid, rows, False)
                sender.puback(mid, None)
            acked = sender.take_acked()
            ob.mark_delivered(acked)
            sender.marked(acked)
    assert sender.counts["delivered"] == 5000
    assert len(sender._sent) <= 40 and len(sender._unacked_ever) <= 40
    assert ob.stats()["pending"] == 0


def test_every_lane_and_map_is_driven_past_its_bound(tmp_path, monkeypatch):
    """Bounded by construction: the held alarms while the disk is gone, the delivery marks, the Sender's
    sent/unacked maps. Past each bound the excess is counted, never kept."""
    from gateway.record import intake
    from gateway.sync import sender as sender_mod

    ob = Outbox(tmp_path / "o.db", GW)
    ob.db.execute(f"PRAGMA max_page_count = {ob.db.execute('PRAGMA page_count').fetchone()[0]}")  # disk full
    rec = Recorder(ob, held_max=30, retry_s=60).start()
    try:
        for _ in range(50):
            rec.submit("alarm", alarm() | {"pad": "x" * 3000})
        assert rec.flush(5)
        st = rec.stats()
        assert st["held"] == 30 and st["dropped_unwritable"] >= 20
    finally:
        rec.stop()
    monkeypatch.setattr(intake, "MARKS_MAX", 100)
    lanes = intake.Intake(10, 10)
    lanes.mark([(i, None) for i in range(150)])
    assert lanes.dropped_marks == 50 and len(lanes.take().marks) == 100
    monkeypatch.setattr(sender_mod, "SENT_MAX", 10)
    s = Sender(Outbox(tmp_path / "p.db", GW), 1000, TokenBucket(1e9), 1 << 20)
    for i in range(1, 30):
        s.sent(i, Pending(i, 3, "telemetry", 0.0, "{}"), False)
    assert len(s._sent) == 10 and len(s._unacked_ever) == 10


def test_the_uplinks_writes_go_through_the_recorder(tmp_path):
    """One writer: a refused message is marked failed and its fault recorded by the Recorder, with the
    daemon's record callback (so it also reaches `gateway events`), never by the uplink thread."""
    from gateway.config.model import Uplink as UplinkConfig
    from gateway.sync import Uplink

    ob = Outbox(tmp_path / "o.db", GW)
    seq = ob.add("telemetry", {"i": 1})
    recorded = []
    rec = Recorder(ob, commit_s=0.1).start()
    up = Uplink(UplinkConfig(host="127.0.0.1", port=1), ob, GW, {}, writer=rec,
                record=lambda t, f, ts: (recorded.append((t, f)), rec.submit(t, f, ts)))
    writes = []
    ob.add = ob.add_many = lambda *a, **kw: writes.append(a)  # the uplink must not call these
    try:
        up._poison(Pending(seq, 3, "telemetry", 0.0, "{}"), "too large")
        wait_until(lambda: ob.db.execute("SELECT state FROM events WHERE seq = ?", (seq,)).fetchone()[0] == 2,
                   timeout=5, what="marked failed by the writer")
        assert rec.flush(5)
    finally:
        rec.stop()
    assert not writes and recorded[0][1]["failed_seq"] == seq
    assert any(r["type"] == "fault" and r.get("failed_seq") == seq for r in rows(ob))


def test_calls_run_on_the_writer_thread_bounded_by_the_urgent_lane_and_force_no_early_commit(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    rec = Recorder(ob, urgent_max=5, commit_s=30)  # not started yet: the lane fills
    ran = []
    accepted = [rec.call(lambda o: ran.append((threading.current_thread().name, o))) for _ in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    assert rec.counters()["dropped_calls"] == 3 and rec.counters()["dropped_urgent"] == 0  # not an alarm lost
    rec.start()
    try:
        wait_until(lambda: len(ran) == 5, timeout=5, what="the queued calls ran")
        assert {name for name, _ in ran} == {"recorder"} and all(o is ob for _, o in ran)
        rec.submit("telemetry", {"sensor": "s", "point": "p", "i": 1})
        rec.call(lambda o: ran.append(("mark", o.query("SELECT count(*) FROM events")[0][0])))
        wait_until(lambda: len(ran) == 6, timeout=5, what="a call after telemetry")
        assert ran[-1] == ("mark", 0)  # the telemetry waits for its group commit, the call did not force it
        assert rec.flush(5) and ob.query("SELECT count(*) FROM events")[0][0] == 1
        assert not [e for e in rows(ob) if e.get("reason") == "urgent_dropped"]  # dropped calls are no fault event
    finally:
        rec.stop()
