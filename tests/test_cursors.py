"""Per-uplink delivery cursors over the one outbox (gateway/record/cursors.py), on real SQLite files
and through the real Recorder thread: each uplink at-least-once on its own, alarms first, live before
paced backlog, housekeeping keeps what a slow centre still needs, marks survive a restart."""

from __future__ import annotations

from gateway.config.model import Outbox as OutboxLimits
from gateway.record import Outbox, Recorder
from gateway.record.cursors import DeliveryCursor
from tests.ptys import wait_until
from tests.test_outbox import alarm, telemetry

GW = "cursor-gw"
CARRY = ("alarm", "fault", "telemetry")


def fault():
    return {"sensor": "water-1", "point": "level", "state": "fault", "quality": "fault", "reason": "timeout"}


def drain(cur: DeliveryCursor, n: int = 1000) -> list[int]:
    """Send-and-confirm everything the cursor offers now (a centre that confirms at once)."""
    out = []
    for _ in range(n):
        got = cur.next_row()
        if got is None:
            break
        out.append(got[0].seq)
        cur.delivered(got[0].seq)
    return out


def test_two_centres_each_get_everything_and_a_slow_one_holds_back_nobody(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    gb = DeliveryCursor(ob, "gb26875", CARRY, replay_per_s=1e6)
    sl = DeliveryCursor(ob, "sl651", ("alarm",), replay_per_s=1e6)
    seqs = ob.add_many([("telemetry", telemetry(1)), ("alarm", alarm()), ("fault", fault())])
    assert drain(gb) == [seqs[1], seqs[2], seqs[0]]  # alarm, fault, telemetry
    assert gb.next_row() is None
    # the flood office never confirmed: its alarm is still pending, whatever the fire centre did
    got = sl.next_row()
    assert got[0].seq == seqs[1]
    assert sl.next_row()[0].seq == seqs[1]  # not confirmed = offered again (at-least-once)
    sl.delivered(seqs[1])
    assert sl.next_row() is None


def test_alarms_first_live_before_paced_backlog(tmp_path):
    t = [0.0]
    ob = Outbox(tmp_path / "o.db", GW)
    cur = DeliveryCursor(ob, "gb26875", CARRY, replay_per_s=1.0, clock=lambda: t[0])
    backlog = ob.add_many([("telemetry", telemetry(i)) for i in range(3)] + [("fault", fault()), ("alarm", alarm())])
    cur.start_session()  # the centre came back: what is recorded from now on is live
    live_fault = ob.add("fault", fault())
    cur.bucket._tokens = 0  # noqa: SLF001 - start with an empty bucket so the pace is visible
    first = cur.next_row()
    assert first == (first[0], True) and first[0].seq == backlog[4]  # a backlog alarm is never held back
    cur.delivered(first[0].seq)
    row, replay = cur.next_row()
    assert (row.seq, replay) == (live_fault, False)  # no token: the live fault overtakes the backlog fault
    cur.delivered(row.seq)
    assert cur.next_row() is None  # backlog waits for a token
    t[0] += 1.0
    row, replay = cur.next_row()
    assert (row.seq, replay) == (backlog[3], True)


def test_housekeeping_keeps_what_a_centre_still_needs_but_never_holds_telemetry(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    cur = DeliveryCursor(ob, "gb26875", CARRY, replay_per_s=1e6)
    seqs = ob.add_many([("alarm", alarm()), ("telemetry", telemetry(1))])
    ob.mark_delivered(seqs)  # MQTT has both
    ob.housekeep()
    assert ob.query("SELECT count(*) FROM events")[0][0] == 2  # a day of delivered history stays anyway
    ob.housekeep(keep_delivered_s=0)  # past the day (or a full outbox: every delivered row goes)
    left = [r[0] for r in ob.db.execute("SELECT seq FROM events")]
    assert left == [seqs[0]]  # the alarm waits for the fire centre; telemetry went
    cur.delivered(seqs[0])
    cur.maybe_advance(force=True)
    assert cur.floor > seqs[0]
    ob.housekeep(keep_delivered_s=0)
    assert ob.db.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    assert ob.db.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0  # pruned below the floor


def test_a_full_outbox_never_deletes_what_a_centre_holds_unless_telemetry(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW, OutboxLimits(max_rows=20))
    cur = DeliveryCursor(ob, "gb26875", CARRY, replay_per_s=1e6)
    held = ob.add_many([("alarm", alarm()), ("fault", fault())])
    ob.mark_delivered(held)  # MQTT has them; the fire centre has not confirmed them
    tele = ob.add_many([("telemetry", telemetry(i)) for i in range(10)])
    ob.mark_delivered(tele)
    ob.add_many([("telemetry", telemetry(i)) for i in range(30)])  # over the bound: delivered rows go first
    left = {r[0] for r in ob.query("SELECT seq FROM events")}
    assert set(held) <= left  # held by the centre's cursor: kept through the full outbox
    assert not set(tele) & left  # delivered telemetry is never held
    assert ob.stats()["rows"] <= 21  # the bound holds all the same (the gap event on top)
    assert [r.seq for r in (cur.next_row()[0],)] == [held[0]]


def test_marks_go_through_the_recorder_and_survive_a_restart(tmp_path):
    path = tmp_path / "o.db"
    ob = Outbox(path, GW)
    rec = Recorder(ob).start()
    try:
        cur = DeliveryCursor(ob, "sl651", CARRY, writer=rec.call, replay_per_s=1e6)
        seqs = ob.add_many([("alarm", alarm()), ("alarm", alarm("orange"))])
        got = cur.next_row()
        cur.delivered(got[0].seq)
        assert cur.next_row()[0].seq == seqs[1]  # marked here at once, committed by the writer thread
        wait_until(lambda: ob.query("SELECT count(*) FROM deliveries")[0][0] == 1, what="mark committed")
    finally:
        rec.stop()
        ob.close()
    ob = Outbox(path, GW)
    cur = DeliveryCursor(ob, "sl651", CARRY, replay_per_s=1e6)
    assert cur.start_seq == seqs[0]  # where it was first configured, kept across restarts
    assert cur.next_row()[0].seq == seqs[1]  # the confirmed alarm is not sent again
    assert cur.pending() == 1


def test_a_new_centre_starts_from_now_not_from_history(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    ob.add("alarm", alarm())
    cur = DeliveryCursor(ob, "gb26875", CARRY)
    assert cur.next_row() is None
    new = ob.add("alarm", alarm())
    assert cur.next_row()[0].seq == new
