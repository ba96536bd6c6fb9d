"""Review of the wire merge (review-wire): after a connection loss every row of every in-flight
telemetry BATCH becomes a suspect (sender.py session_lost), and suspects are sent one row per
message, one message in flight at a time, before anything else (next_messages: `if self._isolate`).
With the default window (20) of 100-reading batches that is up to 2,000 sequential round trips before
a live alarm recorded after the reconnect is sent: ~200 s at a 4G round trip of 100 ms. Before the
batches, suspects were at most `window` rows. Fails on main bb84831."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.record import Outbox  # noqa: E402
from gateway.sync.pacing import TokenBucket  # noqa: E402
from gateway.sync.sender import Sender  # noqa: E402
from test_uplink import GW, alarm, telemetry  # noqa: E402


def test_a_live_alarm_after_a_reconnect_does_not_wait_behind_every_suspect_reading(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    s = Sender(ob, 20, TokenBucket(10_000, burst=100), 256 * 1024)
    s.start_session(ob.next_seq, None)
    ob.add_many([("telemetry", telemetry(i)) for i in range(2000)])
    mid = 0
    while len(s.inflight) < 20:
        msgs = s.next_messages()
        assert msgs
        for rows, replay in msgs:
            mid += 1
            s.sent(mid, rows, replay)
    in_flight = sum(len(r) for r in s.inflight.values())
    assert in_flight >= 1500  # 20 batches of (nearly) 100 readings in flight
    assert not s.session_lost()  # the link drops (4G): nothing is poison
    s.start_session(ob.next_seq, None)
    a = ob.add("alarm", alarm(1))  # a live alarm, recorded after the reconnect
    before = 0
    while True:
        msgs = s.next_messages()
        assert msgs, "the sender stalled"
        if any(r.seq == a for rows, _ in msgs for r in rows):
            break
        for rows, replay in msgs:
            mid += 1
            s.sent(mid, rows, replay)
            s.puback(mid, None)  # every suspect is delivered at once
            before += 1
    assert before <= 20, f"the live alarm was sent after {before} messages, each waiting for the previous PUBACK"
