"""Every file the daemon reads at start can be wrong without stopping it (issue 11 item 1): the alarm
state (malformed, on a full disk), the outbox (deleted, truncated, corrupt, read-only, deleted while
open) and the seq high-water mark beside them. Real files, real SQLite, real tmpfs mounts (root)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import time

import pytest

from gateway.act.alarm_state import AlarmStateFile
from gateway.config.model import Outbox as OutboxLimits
from gateway.record import Event, Outbox, Recorder
from gateway.record.outbox import Pending
from gateway.record.history import select_history
from tests.ptys import wait_until

GW = "gw-files"
ALARM = {"id": "w.level#3", "rule": "w.level", "level": "red", "peak": "red", "value": 45.0, "unit": "cm",
         "raised_ts": 1_750_000_000.0, "silenced": False, "acknowledged": False}


def alarm_fields(level="red"):
    return {"alarm": "w.level#1", "rule": "w.level", "sensor": "w", "point": "level", "transition": "raised",
            "level": level, "previous_level": None, "value": 31.0, "unit": "cm", "state": "active"}


def tele(i):
    return {"sensor": "w", "point": "level", "unit": "cm", "quality": "good", "reason": "period", "last": i}


def SeqMark(*a, **kw):  # noqa: N802  (imported late: each test fails on its own before the fix)
    from gateway.record.seqmark import SeqMark
    return SeqMark(*a, **kw)


def bodies(ob):
    return [json.loads(ob.envelope_of(Pending(*r))) for r in ob.db.execute("SELECT seq, priority, type, ts, body FROM events ORDER BY seq")]


def aside(directory, name):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(name + ".corrupt-"))


@pytest.fixture
def tmpfs(tmp_path):
    """A 4 MB tmpfs at tmp_path/fs (root and mount needed, else skipped with the reason)."""
    d = tmp_path / "fs"
    d.mkdir()
    why = None if os.geteuid() == 0 and shutil.which("mount") else "needs root and mount for a tmpfs"
    if why is None:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(d)], capture_output=True, text=True)
        why = None if r.returncode == 0 else f"mounting a tmpfs failed: {r.stderr.strip()}"
    if why:
        pytest.skip(why)
    try:
        yield d
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(d)], capture_output=True)
        if subprocess.run(["umount", str(d)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(d)], capture_output=True)


def fill(directory) -> None:
    """A filler file until the filesystem refuses another byte."""
    with open(os.path.join(directory, "filler"), "wb", buffering=0) as f:
        for size in (1 << 16, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise


# -- the alarm state ---------------------------------------------------------------------------
@pytest.mark.parametrize("text", ['["not", "a", "dict"]',
                                  json.dumps({"v": 1, "alarms": [{k: v for k, v in ALARM.items() if k != "id"}]}),
                                  json.dumps({"v": 1, "counters": {"w.level": "3x"}, "alarms": []}),
                                  '{"v": 1, "alarms": "nope"}', "\x00\x01garbage{"])
def test_a_malformed_alarm_state_is_moved_aside_and_reported_never_a_crash(tmp_path, text):
    (tmp_path / "alarms.json").write_text(text)  # the file of earlier firmware
    state = AlarmStateFile(str(tmp_path))
    snap = state.load()
    assert snap is None or (isinstance(snap, dict) and all(isinstance(a["id"], str) for a in snap["alarms"])
                            and all(isinstance(n, int) for n in snap["counters"].values()))
    assert aside(tmp_path, "alarms.json"), "the bad file is kept for the technician, moved aside"
    st = state.stats()
    assert st["problems"] and st["moved_aside"].startswith(str(tmp_path / "alarms.json.corrupt-"))
    fault = state.fault_event()
    assert fault["component"] == "alarm_state" and fault["state"] == "fault" and fault["reason"] == "corrupt"


def test_good_alarms_of_a_partly_bad_state_are_kept(tmp_path):
    bad = dict(ALARM, id=7)
    (tmp_path / "alarms.json").write_text(json.dumps({"v": 1, "counters": {"w.level": 3}, "alarms": [ALARM, bad]}))
    snap = AlarmStateFile(str(tmp_path)).load()
    assert [a["id"] for a in snap["alarms"]] == ["w.level#3"] and snap["counters"] == {"w.level": 3}


def test_the_state_round_trips_and_a_torn_slot_falls_back_to_the_other(tmp_path):
    state = AlarmStateFile(str(tmp_path))
    state.save({"v": 1, "counters": {"w.level": 3}, "alarms": [ALARM]})
    state.save({"v": 1, "counters": {"w.level": 4}, "alarms": [dict(ALARM, id="w.level#4")]})
    assert AlarmStateFile(str(tmp_path)).load()["alarms"][0]["id"] == "w.level#4"
    # a power cut in the middle of the next write tears the newest slot: the older one is used
    raw = bytearray(state.path.read_bytes())
    newest = raw.find(b"w.level#4")
    raw[newest:newest + 9] = b"XXXXXXXXX"
    state.path.write_bytes(bytes(raw))
    assert AlarmStateFile(str(tmp_path)).load()["alarms"][0]["id"] == "w.level#3"


def test_a_latched_alarm_survives_a_full_disk_and_kill_9(tmp_path, tmpfs):
    state = AlarmStateFile(str(tmpfs))
    state.save({"v": 1, "counters": {}, "alarms": []})  # the daemon starts: nothing active
    fill(tmpfs)
    state.save({"v": 1, "counters": {"w.level": 3}, "alarms": [ALARM]})  # the smoke alarm latches
    assert state.stats()["save_errors"] == 0
    # kill -9: nothing but what is on disk counts
    assert [a["id"] for a in AlarmStateFile(str(tmpfs)).load()["alarms"]] == ["w.level#3"]


# -- seq never goes back ---------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["deleted", "truncated"])
def test_a_lost_outbox_continues_above_the_high_water_mark_and_declares_the_gap(tmp_path, how):
    path = tmp_path / "outbox.sqlite"
    ob = Outbox(path, GW, mark=SeqMark(str(tmp_path)), recover=True)
    ob.add_many([Event("telemetry", tele(i)) for i in range(10)])
    ob.add("alarm", alarm_fields())
    ob.close()
    for suffix in ("", "-wal", "-shm"):
        p = tmp_path / f"outbox.sqlite{suffix}"
        if p.exists():
            p.unlink() if how == "deleted" else open(p, "w").close()
    ob = Outbox(path, GW, mark=SeqMark(str(tmp_path)), recover=True)
    seq = ob.add("alarm", alarm_fields())
    assert seq > 11, "a new event must never reuse an id the platform may already have"
    rows = bodies(ob)
    gap = rows[0]
    assert gap["type"] == "gap" and gap["reason"] == "outbox_lost" and gap["from_seq"] <= 1
    assert gap["to_seq"] >= 11 and gap["seq"] > gap["to_seq"] and rows[-1]["seq"] == seq
    assert ob.stats()["lost"]["reason"] == "outbox_lost"


def test_the_mark_is_written_ahead_in_blocks_not_per_event(tmp_path):
    mark = SeqMark(str(tmp_path), block=1000)
    ob = Outbox(tmp_path / "outbox.sqlite", GW, mark=mark)
    for i in range(2500):
        ob.add("telemetry", tele(i))
    assert mark.writes <= 4
    ob.close()
    assert SeqMark(str(tmp_path)).hwm >= 2500


def test_an_intact_outbox_keeps_its_seq_without_a_gap(tmp_path):
    ob = Outbox(tmp_path / "outbox.sqlite", GW, mark=SeqMark(str(tmp_path)), recover=True)
    ob.add_many([Event("telemetry", tele(i)) for i in range(5)])
    ob.close()
    ob = Outbox(tmp_path / "outbox.sqlite", GW, mark=SeqMark(str(tmp_path)), recover=True)
    assert ob.add("alarm", alarm_fields()) == 6 and "gap" not in [b["type"] for b in bodies(ob)]


# -- a damaged outbox ------------------------------------------------------------------------
def test_random_bytes_in_the_middle_of_the_outbox_move_it_aside_and_a_fresh_one_runs(tmp_path):
    path = tmp_path / "outbox.sqlite"
    ob = Outbox(path, GW, mark=SeqMark(str(tmp_path)))
    for i in range(40):
        ob.add_many([Event("telemetry", tele(i) | {"pad": "x" * 2000})] * 5)
    ob.close()
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(4096))
    ob = Outbox(path, GW, mark=SeqMark(str(tmp_path)), recover=True)
    assert aside(tmp_path, "outbox.sqlite")
    seq = ob.add("alarm", alarm_fields())
    assert seq > 200 and ob.stats()["lost"]["reason"] == "outbox_corrupt"
    assert [b["type"] for b in bodies(ob)] == ["gap", "alarm"] and bodies(ob)[0]["reason"] == "outbox_corrupt"


def test_no_shared_memory_file_is_mapped(tmp_path):
    """A -shm file mapped while its disk goes away kills the process with SIGBUS: the wal-index lives
    in heap memory (locking_mode=EXCLUSIVE before WAL), and WAL stays on."""
    ob = Outbox(tmp_path / "outbox.sqlite", GW)
    ob.add("alarm", alarm_fields())
    assert ob.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert not (tmp_path / "outbox.sqlite-shm").exists()
    with open("/proc/self/maps") as f:
        assert "outbox.sqlite-shm" not in f.read()


def test_an_outbox_read_only_at_start_is_reopened_once_writable(tmp_path, tmpfs):
    path = tmpfs / "outbox.sqlite"
    ob = Outbox(path, GW)
    ob.add("alarm", alarm_fields())
    ob.close()
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    ob = Outbox(path, GW, mark=SeqMark(str(tmp_path)), recover=True)  # must not raise
    rec = Recorder(ob, retry_s=0.05).start()
    try:
        rec.submit("alarm", alarm_fields("orange"))
        wait_until(lambda: rec.stats()["held"] >= 1, timeout=5, what="alarm held while read-only")
        assert not rec.stats()["writable"] and ob.stats()["state"] != "ok"
        subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=True)
        wait_until(lambda: rec.stats()["writable"], timeout=10, what="outbox writable again")
        assert rec.flush(5)
    finally:
        rec.stop()
    levels = [b.get("level") for b in bodies(ob) if b["type"] == "alarm"]
    assert levels == ["red", "orange"]
    ob.close()


def test_an_outbox_deleted_while_open_is_recreated_and_seq_continues(tmp_path):
    path = tmp_path / "outbox.sqlite"
    ob = Outbox(path, GW, mark=SeqMark(str(tmp_path)), recover=True)
    rec = Recorder(ob, retry_s=0.05, check_file_s=0.05).start()
    try:
        for i in range(5):
            rec.submit("alarm", alarm_fields())
        assert rec.flush(5)
        for suffix in ("", "-wal"):
            (tmp_path / f"outbox.sqlite{suffix}").unlink()
        wait_until(lambda: path.exists(), timeout=5, what="outbox recreated")
        rec.submit("alarm", alarm_fields("orange"))
        assert rec.flush(5)
    finally:
        rec.stop()
        ob.close()  # the daemon holds the file exclusively while it runs
    con = sqlite3.connect(path)
    rows = [{k: v for k, v in e.items() if k != "delivered"} for e in select_history(con, n=10**9)]
    assert [r["type"] for r in rows][-2:] == ["gap", "alarm"] and rows[-1]["seq"] > 5
    assert rows[-2]["reason"] == "outbox_lost"


# -- bounds -------------------------------------------------------------------------------------
def test_gap_notices_are_merged_so_max_rows_is_a_bound(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW, OutboxLimits(max_rows=40))
    for i in range(3000):  # a long outage: nothing is delivered
        ob.add("telemetry", tele(i))
    ob.add("alarm", alarm_fields())
    rows = bodies(ob)
    gaps = [r for r in rows if r["type"] == "gap"]
    assert len(rows) <= 41 and len(gaps) <= 2, (len(rows), len(gaps))
    # every seq is still accounted for: received (here: present) or inside a declared gap
    present = {r["seq"] for r in rows}
    declared = set()
    for g in gaps:
        declared |= set(range(g["from_seq"], g["to_seq"] + 1))
    assert set(range(1, ob.next_seq)) <= present | declared
    assert sum(g["count"] for g in gaps) + len(present) >= ob.next_seq - 1


def test_eviction_counters_are_restored_when_the_gap_insert_fails(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW, OutboxLimits(max_rows=20))
    for i in range(20):
        ob.add("telemetry", tele(i))
    ob.db.execute("CREATE TRIGGER no_gap BEFORE INSERT ON events WHEN NEW.type = 'gap' "
                  "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    before = ob.stats()
    ob.add("telemetry", tele(99))  # over the bound: the eviction fails and rolls back
    after = ob.stats()
    assert after["evicted"] == before["evicted"] == 0
    assert after["rows"] == 21 == ob.db.execute("SELECT count(*) FROM events").fetchone()[0]
    assert after["depth"]["telemetry"] == 21


def test_status_does_not_wait_behind_a_stalled_commit(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    ob.add("alarm", alarm_fields())
    import threading
    stalled = threading.Event()
    release = threading.Event()
    real = ob._commit_rows

    def slow_commit(*a, **kw):  # an SD card that takes seconds over one fsync
        stalled.set()
        release.wait(10)
        return real(*a, **kw)

    ob._commit_rows = slow_commit
    t = threading.Thread(target=ob.add, args=("alarm", alarm_fields("orange")))
    t.start()
    try:
        assert stalled.wait(5)
        t0 = time.monotonic()
        st = ob.stats()
        assert time.monotonic() - t0 < 0.5 and st["depth"]["alarm"] >= 1
    finally:
        release.set()
        t.join(10)
