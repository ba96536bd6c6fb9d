"""Review of the wire merge (review-wire): a packed telemetry row the Sender still holds in memory
as a *suspect* (it was in flight when a session died) refers to its context by number (`ctx`,
compact.py). When the outbox file is then replaced (corrupt on the SD card: moved aside, a fresh
file; Outbox(recover=True).reopen()), the new file's `contexts` table does not have that number:
batch.build(rows, outbox.context) raises KeyError in Uplink._pump, the session ends as "ours"
(uplink.py _session), the row stays a suspect (sender.py: suspects are only dropped on a PUBACK) and
is first in line again in the next session: the uplink is wedged (backing off, up to 60 s a try) and
no alarm goes until a packed telemetry row is committed to the fresh file and creates a context with
that number (a site whose file gets no telemetry: never). Then the old reading is silently stamped
with the NEW file's gateway id/boot/clock_synced. Fails on main bb84831 (KeyError(1) each session)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.record import Outbox, batch, envelope  # noqa: E402
from gateway.record.seqmark import SeqMark  # noqa: E402
from gateway.sync.pacing import TokenBucket  # noqa: E402
from gateway.sync.sender import Sender  # noqa: E402
from test_uplink import GW, alarm, telemetry  # noqa: E402


ERRORS: list[str] = []


def _session(s, ob, mid):
    """What Uplink._session/_pump do with the messages of one pump; a build error ends the session
    as our own (strike=False), as uplink.py does. Returns (the seqs published, next mid)."""
    s.start_session(ob.next_seq, None)
    published = []
    try:
        for _ in range(5):
            for rows, replay in s.next_messages():
                row = rows[0]
                if batch.batchable(row):
                    batch.build(rows, ob.context, replay)
                else:
                    envelope.as_replay(row.body)
                mid += 1
                s.sent(mid, rows, replay)
                s.puback(mid, None)
                published += [r.seq for r in rows]
    except Exception as e:  # noqa: BLE001 - as Uplink._session: the session ends, the thread retries
        ERRORS.append(repr(e))
        s.session_lost(strike=False)
    return published, mid


def test_a_suspect_packed_row_from_a_replaced_outbox_file_does_not_wedge_the_uplink(tmp_path):
    path = tmp_path / "o.db"
    ob = Outbox(path, GW, recover=True, mark=SeqMark(str(tmp_path)))
    s = Sender(ob, 20, TokenBucket(10_000, burst=100), 256 * 1024)
    s.start_session(ob.next_seq, None)
    ob.add_many([("telemetry", telemetry(i)) for i in range(5)])
    for rows, replay in s.next_messages():
        s.sent(1, rows, replay)
    assert not s.session_lost()  # the link drops with the batch in flight: 5 suspects
    # the SD card corrupts the file: the recorder reopens it, a fresh file continues the seq
    ob.db.close()
    ob.db = None
    for p in (path, Path(f"{path}-wal")):
        if p.exists():
            os.unlink(p)
    path.write_bytes(b"not a database" * 100)
    assert ob.reopen()
    a = ob.add("alarm", alarm(1))
    mid, sent = 10, []
    for _ in range(3):  # three sessions
        got, mid = _session(s, ob, mid)
        sent += got
    assert a in sent, f"{ERRORS}: the live alarm of the fresh file was never published: a suspect's build fails each session"
