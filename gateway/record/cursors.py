"""Delivery cursors: one per extra uplink (GB/T 26875.3, SL 651) over the ONE outbox.

The MQTT uplink keeps its own marks (the outbox's `delivered` table, PUBACK = delivered). Every other
uplink has its own cursor in the same SQLite file, so each is at-least-once on its own and a slow
centre never holds back another:

    deliveries(uplink, seq, state, done_at, reason)   what this uplink has finished with
    cursors(uplink, start_seq, floor)                 where it started; below `floor` all is finished

A row is *pending for an uplink* when its type is one the uplink carries, seq >= the uplink's floor
and it has no `deliveries` row for that uplink. The outbox's housekeeping keeps every non-telemetry row
at or above the lowest floor (`Outbox.holds`), so an alarm the fire centre has not confirmed survives
the MQTT PUBACK; telemetry is never held (a centre that is away for a day must not grow the file past
its bound: telemetry to the centres is best effort, alarms and faults are not). That holds for the
day of delivered history and for a full outbox alike (gateway/record/outbox.py housekeep).

Order is the MQTT one: priority (alarm > fault > audit/status/gap > telemetry), within a priority live
rows (recorded since this session connected) before backlog, then seq; backlog rows other than alarms
are paced by a token bucket. The outbox holds its file exclusively (no second connection, even in
this process), so reads go through `Outbox.query` on the uplink's thread under the outbox lock, and
every write (a delivery mark, the floor, pruning) goes through `Recorder.call`, the one writer of the
file.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from gateway.errors import OutboxError
from gateway.record import envelope
from gateway.record.outbox import Outbox, Pending
from gateway.sync.pacing import TokenBucket

log = logging.getLogger(__name__)

DELIVERED, FAILED, SKIPPED = 1, 2, 3  # SKIPPED: of a carried type, but nothing of it maps to the protocol
ALARM_PRIORITY = envelope.PRIORITY[envelope.ALARM]
SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    uplink TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state INTEGER NOT NULL,     -- 1 delivered (confirmed by the centre), 2 failed (declared), 3 skipped
    done_at REAL NOT NULL,
    reason TEXT,
    PRIMARY KEY (uplink, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursors (
    uplink TEXT PRIMARY KEY,
    start_seq INTEGER NOT NULL, -- the first seq this uplink was configured for: history before it is not sent
    floor INTEGER NOT NULL      -- every carried row below it is finished for this uplink
);
"""
_BATCH = 256  # one refresh sorts the whole pending set (~0.1 s at 100k rows on this VM): take many
_FLOOR_EVERY_S = 5.0


class DeliveryCursor:
    """What one extra uplink still has to send, and its marks. One owner thread (the uplink's)."""

    def __init__(self, outbox: Outbox, name: str, types: Iterable[str], *, writer=None,
                 replay_per_s: float = 50.0, clock=time.monotonic):
        self.outbox = outbox
        self.name = name
        self.types = tuple(types)
        self._writer = writer  # Recorder.call; None: write directly (tests, tools)
        self.bucket = TokenBucket(replay_per_s, clock=clock)
        self._clock = clock
        self._done: dict[int, int] = {}  # marked here, maybe not yet committed by the writer
        self._batch: list[Pending] = []
        self._batch_version = -1
        self.live_from = outbox.next_seq
        self.counts = {"delivered": 0, "failed": 0, "skipped": 0, "replayed": 0}
        self._floor_at = 0.0
        self._attach()

    # -- setup ---------------------------------------------------------------------------------
    def _attach(self) -> None:
        # the tables with every file the outbox opens (a damaged one is replaced by a fresh file)
        try:
            self.outbox.add_schema(SCHEMA)
        except OutboxError as e:
            log.warning("%s cursor: %s", self.name, e)
        self.start_seq = self.floor = self.outbox.next_seq
        self._attached = False
        self._load_row()
        self.outbox.holds.append(self.hold)

    def _load_row(self) -> None:
        """The cursor's row, written once at start; while the outbox is unavailable (it opens later,
        or its file is unwritable) the cursor starts from now and tries again on each refresh."""
        try:
            rows = self.outbox.query("SELECT start_seq, floor FROM cursors WHERE uplink = ?", (self.name,))
            if not rows:
                # a newly configured centre gets events from now on, not the outbox's history
                start = self.outbox.next_seq
                self._write("INSERT OR IGNORE INTO cursors VALUES (?, ?, ?)", (self.name, start, start))
                rows = [(start, start)]
        except OutboxError as e:
            log.warning("%s cursor: %s (tried again)", self.name, e)
            return
        self.start_seq, self.floor = int(rows[0][0]), int(rows[0][1])
        self._attached = True

    def detach(self) -> None:
        if self.hold in self.outbox.holds:
            self.outbox.holds.remove(self.hold)

    def hold(self) -> int:
        """The lowest seq this uplink may still need (the outbox keeps non-telemetry rows from here)."""
        return self.floor

    # -- choosing ------------------------------------------------------------------------------
    def start_session(self) -> None:
        """A new connection: what is recorded from now on is live, the rest is backlog (paced)."""
        self.live_from = self.outbox.next_seq
        self._batch_version = -1

    def next_row(self) -> tuple[Pending, bool] | None:
        """The row to send now and whether it is a replay, or None (nothing, or the pace says wait)."""
        self._refresh()
        token = None
        for row in self._batch:
            if row.seq in self._done:
                continue
            backlog = row.seq < self.live_from
            if backlog and row.priority != ALARM_PRIORITY:
                if token is None:
                    token = self.bucket.take()
                if not token:
                    continue  # no token: backlog waits, a live row further down may still go
            if backlog:
                self.counts["replayed"] += 1
            return row, backlog
        return None

    def _refresh(self) -> None:
        if not self._attached:
            self._load_row()
            if not self._attached:
                self._batch = []
                return
        if self._batch and self._batch_version == self.outbox.version and any(
                r.seq not in self._done for r in self._batch):
            return
        self._batch_version = self.outbox.version
        marks = ",".join("?" * len(self.types))
        rows = self.outbox.query(
            f"SELECT seq, priority, type, ts, body FROM events e WHERE seq >= ? AND type IN ({marks}) "
            f"AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.uplink = ? AND d.seq = e.seq) "
            f"ORDER BY priority, seq < ?, seq LIMIT ?",
            (self.floor, *self.types, self.name, self.live_from, _BATCH + len(self._done)))
        # packed telemetry rows (gateway/record/compact.py) as the envelopes the centres map from
        self._batch = [Pending(*r) for r in rows]
        self._batch = [r._replace(body=self.outbox.envelope_of(r)) for r in self._batch]
        self.maybe_advance()

    def pending(self) -> int:
        """How many rows this uplink still has to send (for status; one indexed count)."""
        marks = ",".join("?" * len(self.types))
        try:
            n = self.outbox.query(
                f"SELECT count(*) FROM events e WHERE seq >= ? AND type IN ({marks}) AND NOT EXISTS "
                f"(SELECT 1 FROM deliveries d WHERE d.uplink = ? AND d.seq = e.seq)",
                (self.floor, *self.types, self.name))[0][0]
        except OutboxError:
            return -1
        return max(0, n - sum(1 for s in self._done if s >= self.floor))

    # -- marks ---------------------------------------------------------------------------------
    def delivered(self, seq: int) -> None:
        self._mark(seq, DELIVERED, None)

    def failed(self, seq: int, reason: str) -> None:
        self._mark(seq, FAILED, reason)

    def skipped(self, seq: int, reason: str) -> None:
        self._mark(seq, SKIPPED, reason)

    def _mark(self, seq: int, state: int, reason: str | None) -> None:
        self._done[seq] = state
        self.counts[{DELIVERED: "delivered", FAILED: "failed", SKIPPED: "skipped"}[state]] += 1
        self._write("INSERT OR REPLACE INTO deliveries VALUES (?, ?, ?, ?, ?)",
                    (self.name, seq, state, time.time(), reason))

    def maybe_advance(self, force: bool = False) -> None:
        """Move the floor up past what is committed as finished; prune marks below it. Every few seconds."""
        now = self._clock()
        if not force and now - self._floor_at < _FLOOR_EVERY_S:
            return
        self._floor_at = now
        marks = ",".join("?" * len(self.types))
        try:
            row = self.outbox.query(
                f"SELECT min(seq) FROM events e WHERE seq >= ? AND type IN ({marks}) AND NOT EXISTS "
                f"(SELECT 1 FROM deliveries d WHERE d.uplink = ? AND d.seq = e.seq)",
                (self.floor, *self.types, self.name))
        except OutboxError as e:
            log.warning("%s cursor: %s", self.name, e)
            return
        floor = row[0][0] if row and row[0][0] is not None else self.outbox.next_seq
        if floor <= self.floor:
            return
        self.floor = floor
        self._done = {s: v for s, v in self._done.items() if s >= floor}
        self._write("UPDATE cursors SET floor = ? WHERE uplink = ? AND floor < ?", (floor, self.name, floor))
        self._write("DELETE FROM deliveries WHERE uplink = ? AND seq < ?", (self.name, floor))

    def _write(self, sql: str, params: tuple) -> None:
        def run(outbox: Outbox) -> None:
            try:
                outbox.execute(sql, params)
            except OutboxError as e:
                # not marked = sent again later: a duplicate the centre sees twice, never a loss
                log.error("%s cursor: %s", self.name, e)
        if self._writer is None:
            run(self.outbox)
        elif not self._writer(run):
            log.warning("%s cursor: the recorder queue is full; a mark is dropped (sent again later)", self.name)

    def stats(self) -> dict:
        return {"floor": self.floor, "start_seq": self.start_seq, **self.counts}


def writer_of(recorder) -> Callable | None:
    """The Recorder's `call` (its writer thread runs the marks), or None without a recorder."""
    return None if recorder is None else recorder.call
