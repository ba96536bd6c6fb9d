"""Issue 11, SD write volume: telemetry is stored packed (its fields, not the envelope), new files use 1 KB
pages, and a 50-sensor site's group commit costs a bounded number of WAL bytes. Every reader still gets
the envelope the platform gets (history, the centres' cursors), and alarms are committed one by one."""

import json
import struct

import pytest

from gateway.record import Event, Outbox, compact, envelope
from gateway.record.cursors import DeliveryCursor
from gateway.record.outbox import Pending

GW = "pd-zhangjiang-001"
BOOT = "6f1c0d1e-8a43-4c1b-9f8e-2d1b5c7a9e10"


def still(i=0, v=21.4):
    return {"sensor": f"water-{i + 1}", "point": "level", "unit": "cm", "quality": "good", "reason": "period",
            "period_s": 60.001, "count": 60, "bad": 0, "min": v, "max": v, "mean": v, "last": v}


def moving(i=0):
    return {"sensor": f"water-{i + 1}", "point": "level", "unit": "cm", "quality": "good", "reason": "deadband",
            "period_s": 10.002, "count": 10, "bad": 0, "min": 21.0, "max": 26.3, "mean": 32.0 / 3, "last": 26.3}


def faulty():
    return {"sensor": "smoke-1", "point": "density", "unit": "%", "quality": "fault", "reason": "quality",
            "period_s": 3.0, "count": 0, "bad": 3, "min": None, "max": None, "mean": None, "last": None,
            "fault": "timeout"}


def alarm():
    return {"alarm": "water-1.level#1", "rule": "water-1.level", "sensor": "water-1", "point": "level",
            "transition": "raised", "level": "red", "previous_level": None, "value": 31.0, "unit": "cm",
            "state": "active"}


def rows(ob):
    return [Pending(*r) for r in ob.db.execute("SELECT seq, priority, type, ts, body FROM events ORDER BY seq")]


@pytest.mark.parametrize("fields", [still(), moving(), faulty(), still(v=0), still(v=-3) | {"min": -4}],
                         ids=["still", "moving", "fault", "zero", "negative"])
def test_a_packed_row_reads_back_as_the_envelope_it_replaced(tmp_path, fields):
    ob = Outbox(tmp_path / "o.db", GW, clock_synced=lambda: True, boot=BOOT)
    seq = ob.add("telemetry", fields, ts=1_750_000_000.1234)
    (row,) = rows(ob)
    assert compact.is_packed(row.body)
    assert ob.envelope_of(row) == envelope.build(GW, seq, 1_750_000_000.1234, True, BOOT, "telemetry", fields)
    assert ob.history(n=5)[0] == json.loads(envelope.build(GW, seq, 1_750_000_000.1234, True, BOOT, "telemetry",
                                                           fields)) | {"delivered": False}


def test_a_telemetry_row_stores_its_fields_not_the_envelope(tmp_path):
    """~330 bytes of envelope JSON per row before: the SD card's bytes follow the row size."""
    ob = Outbox(tmp_path / "o.db", GW, boot=BOOT)
    ob.add_many([Event("telemetry", still(i)) for i in range(50)] + [Event("telemetry", moving(i)) for i in range(10)])
    sizes = [len(r.body) for r in rows(ob)]
    assert max(sizes[:50]) <= 50, sizes[:3]
    assert max(sizes[50:]) <= 80, sizes[50:53]


def test_other_shapes_and_other_types_keep_the_full_envelope(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW, boot=BOOT)
    ob.add_many([Event("telemetry", {"i": 1}), Event("telemetry", still() | {"extra": 1}), Event("alarm", alarm()),
                 Event("telemetry", still() | {"count": True})])
    assert [compact.is_packed(r.body) for r in rows(ob)] == [False, False, False, False]
    assert [json.loads(r.body)["seq"] for r in rows(ob)] == [1, 2, 3, 4]


def test_the_context_follows_boot_clock_and_gateway_id_across_reopen(tmp_path):
    synced = [False]
    ob = Outbox(tmp_path / "o.db", GW, clock_synced=lambda: synced[0], boot="boot-a")
    ob.add("telemetry", still())
    synced[0] = True
    ob.add("telemetry", still())
    ob.close()
    ob = Outbox(tmp_path / "o.db", "renamed-gw", clock_synced=lambda: True, boot="boot-b")
    ob.add("telemetry", still())
    got = [json.loads(ob.envelope_of(r)) for r in rows(ob)]
    assert [(e["id"], e["boot"], e["clock_synced"]) for e in got] == [
        (f"{GW}/1", "boot-a", False), (f"{GW}/2", "boot-a", True), ("renamed-gw/3", "boot-b", True)]
    assert ob.db.execute("SELECT count(*) FROM contexts").fetchone()[0] == 3


def test_a_new_outbox_file_has_1_kb_pages(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    assert ob.db.execute("PRAGMA page_size").fetchone()[0] == 1024


def test_an_existing_file_keeps_its_page_size_and_its_envelope_rows(tmp_path):
    import sqlite3

    con = sqlite3.connect(tmp_path / "o.db")
    con.execute("PRAGMA page_size=4096")
    con.execute("CREATE TABLE t (x)")  # the page size is fixed from here on
    con.commit()
    con.close()
    ob = Outbox(tmp_path / "o.db", GW)
    assert ob.db.execute("PRAGMA page_size").fetchone()[0] == 4096
    seq = ob.add("telemetry", still())
    assert ob.history(n=1)[0]["seq"] == seq


def _wal_frames(path):
    """Frames in the WAL file of the current generation (its salt), by page number."""
    with open(f"{path}-wal", "rb") as f:
        data = f.read()
    if len(data) < 32:
        return []
    page = struct.unpack(">I", data[8:12])[0]
    salt, out, off = data[16:24], [], 32
    while off + 24 + page <= len(data) and data[off + 8:off + 16] == salt:
        out.append(struct.unpack(">I", data[off:off + 4])[0])
        off += 24 + page
    return out


def test_a_sites_group_commit_writes_a_bounded_number_of_wal_bytes(tmp_path):
    """50 sensors, 10 moving every 10 s, a status event a minute, the uplink's marks of the last commit,
    one commit every 30 s (the defaults): ~73 KB of WAL per commit before (18 frames of 4 KB), which
    was 213 MB/day. Budget: 32 KB a commit (92 MB/day)."""
    ob = Outbox(tmp_path / "o.db", GW, boot=BOOT)
    ob.db.execute("PRAGMA wal_autocheckpoint=0")  # count every frame of the run
    status = {"uptime_s": 1.0, "outbox": {"pending": 0, "depth": {"alarm": 0}}, "pad": "x" * 600}
    marks, per_commit = [], []
    for k in range(40):
        evs = [Event("telemetry", moving(i), 1_750_000_000 + 30 * k + j * 10) for j in range(3) for i in range(10)]
        if k % 2 == 0:
            evs += [Event("telemetry", still(i), 1_750_000_000 + 30 * k) for i in range(50)]
            evs.append(Event("status", status, 1_750_000_000 + 30 * k))
        before = len(_wal_frames(tmp_path / "o.db"))
        marks = ob.commit(evs, marks)
        per_commit.append((len(_wal_frames(tmp_path / "o.db")) - before) * (ob._page_size + 24))
    steady = per_commit[10:]
    assert sum(steady) / len(steady) <= 32_000, per_commit


def test_alarms_are_still_committed_one_by_one_with_synchronous_full(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    seen = []
    ob.db.conn.set_trace_callback(seen.append)
    ob.add_many([Event("telemetry", still(i)) for i in range(5)])
    ob.add("alarm", alarm())
    ob.db.conn.set_trace_callback(None)
    assert seen.count("PRAGMA synchronous=FULL") == 1
    assert seen.index("PRAGMA synchronous=FULL") > seen.index("COMMIT")  # the telemetry commit came before


def test_the_centres_cursor_reads_packed_telemetry_as_envelopes(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW, boot=BOOT)
    cursor = DeliveryCursor(ob, "gb26875", ("alarm", "fault", "telemetry"))
    ob.add_many([Event("telemetry", still()), Event("alarm", alarm())])
    got = []
    while (nxt := cursor.next_row()) is not None:
        row, _ = nxt
        got.append(json.loads(row.body))
        cursor.delivered(row.seq)
    assert [(e["type"], e["sensor"], e["id"]) for e in got] == [("alarm", "water-1", f"{GW}/2"),
                                                                ("telemetry", "water-1", f"{GW}/1")]
    assert got[1]["last"] == 21.4 and got[1]["boot"] == BOOT
