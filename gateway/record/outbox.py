"""The outbox: every event the gateway produces, in one SQLite file, until the broker has PUBACKed it.

paho-mqtt keeps unsent messages only in memory, so this file is the source of truth for what the
platform has and has not received. Alarms and faults are committed with synchronous=FULL (durable
across a power cut) before add() returns; telemetry and status are committed in batches with
synchronous=NORMAL (WAL: survives a crash of the process, may lose the last batch on power loss).

A row is `pending` until its PUBACK, then `delivered` until housekeeping deletes it; a message the
broker will never accept (too large) is `failed` and kept for the technician. The file is bounded by
rows and megabytes: when full, delivered rows go first, then the OLDEST pending telemetry, and a `gap`
event names the evicted seq range. Alarms, faults, audit and status are never evicted.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from typing import Iterable, NamedTuple

import sqlite_utils

from gateway.config.model import Outbox as OutboxLimits
from gateway.errors import OutboxError
from gateway.record import envelope
from gateway.record.clock import SyncState, boot_id

log = logging.getLogger(__name__)

PENDING, DELIVERED, FAILED = 0, 1, 2
TELEMETRY_PRIORITY = envelope.PRIORITY[envelope.TELEMETRY]
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: never reused, even after deletes
    priority INTEGER NOT NULL,              -- 0 alarm, 1 fault, 2 audit/status/gap, 3 telemetry
    type TEXT NOT NULL,
    ts REAL NOT NULL,                       -- wall clock of the event (unix seconds)
    state INTEGER NOT NULL DEFAULT 0,       -- 0 pending, 1 delivered (PUBACK), 2 failed
    done_at REAL,                           -- when it was delivered or failed
    reason TEXT,                            -- why it failed
    body TEXT NOT NULL                      -- the envelope as published (replay flag flipped on send)
);
CREATE INDEX IF NOT EXISTS events_pending ON events(priority, seq) WHERE state = 0;
CREATE INDEX IF NOT EXISTS events_done ON events(seq) WHERE state != 0;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""
# SQLite result codes that mean "no room" or "cannot write here"
_NO_ROOM = {"SQLITE_FULL"}
_UNWRITABLE = {"SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_PERM"}


class Event(NamedTuple):
    """An event before it has a seq: what the Recorder queues."""
    type: str
    fields: dict
    ts: float | None = None


class Pending(NamedTuple):
    """A row the uplink may publish."""
    seq: int
    priority: int
    type: str
    ts: float
    body: str


class Outbox:
    """The durable queue of events waiting for the platform (one SQLite file, one writer process)."""

    def __init__(self, path: str | os.PathLike, gateway_id: str, limits: OutboxLimits | None = None, *,
                 clock_synced=None, boot: str | None = None, evict_fraction: float = 0.01):
        self.path = str(path)
        self.gateway_id = gateway_id
        self.limits = limits or OutboxLimits()
        self.max_rows = int(self.limits.max_rows)
        self.max_bytes = int(self.limits.max_mb * 1024 * 1024)
        # Evict in chunks so a full outbox emits one gap event per chunk, not one per insert.
        self._evict_chunk = max(1, int(self.max_rows * evict_fraction))
        self._clock_synced = clock_synced or SyncState()
        self.boot = boot or boot_id()
        self._lock = threading.RLock()
        self.write_errors = 0
        self.last_error: str | None = None
        self.evicted = 0
        self.failed = 0
        self.version = 0  # bumped on every commit of new events: the uplink polls it
        self._warned_unevictable = False
        # Other uplinks' delivery cursors (gateway/record/cursors.py): callables returning the lowest
        # seq each may still need; housekeeping keeps non-telemetry rows from the lowest of them.
        self.holds: list = []
        try:
            self.db = sqlite_utils.Database(sqlite3.connect(self.path, check_same_thread=False, timeout=10))
            self.db.enable_wal()
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA journal_size_limit=16777216")  # truncate the WAL back to 16 MB
            self.db.conn.executescript(SCHEMA)
            self._page_size = self.db.execute("PRAGMA page_size").fetchone()[0]
            self._next_seq = self._load_next_seq()
            self._rows = self.db.execute("SELECT count(*) FROM events").fetchone()[0]
            self._depth = dict.fromkeys(envelope.PRIORITY_NAMES, 0)
            for prio, n in self.db.execute(
                    "SELECT priority, count(*) FROM events WHERE state = 0 GROUP BY priority"):
                self._depth[prio] = n
            self._check_gateway_id()
        except sqlite3.Error as e:
            raise self._error("open", e) from e

    # -- writing -------------------------------------------------------------------------------
    def add(self, type_: str, fields: dict, ts: float | None = None) -> int:
        """Store one event and return its seq. Alarms and faults are on disk (FULL) on return."""
        return self.add_many([Event(type_, fields, ts)])[0]

    def add_many(self, events: Iterable[Event | tuple]) -> list[int]:
        """Store events in one transaction, in order; FULL when any of them is an alarm or fault.
        On OutboxError nothing was stored and no seq was consumed."""
        events = [e if isinstance(e, Event) else Event(*e) for e in events]
        if not events:
            return []
        now = time.time()
        synced = self._clock_synced()
        with self._lock:
            seq = self._next_seq
            rows, durable = [], False
            for ev in events:
                ts = now if ev.ts is None else ev.ts
                body = envelope.build(self.gateway_id, seq, ts, synced, self.boot, ev.type, ev.fields)
                rows.append((seq, envelope.PRIORITY[ev.type], ev.type, ts, body))
                durable = durable or ev.type in envelope.DURABLE_TYPES
                seq += 1
            self._commit_rows(rows, durable)
            self._next_seq = seq
            self._rows += len(rows)
            for row in rows:
                self._depth[row[1]] += 1
            self.version += 1
            try:
                self._enforce_limits()
            except OutboxError as e:
                # the events are stored; only the bound could not be kept this time
                log.error("%s", e)
        return [row[0] for row in rows]

    def _commit_rows(self, rows: list[tuple], durable: bool) -> None:
        try:
            if durable:
                # synchronous can only change outside a transaction; FULL fsyncs the WAL on COMMIT
                self.db.execute("PRAGMA synchronous=FULL")
            try:
                with self.db.atomic():
                    self.db["events"].insert_all(
                        ({"seq": r[0], "priority": r[1], "type": r[2], "ts": r[3], "state": PENDING,
                          "body": r[4]} for r in rows), batch_size=150)
            finally:
                if durable:
                    self.db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as e:
            raise self._error("store", e) from e
        self.last_error = None

    # -- the uplink's side ---------------------------------------------------------------------
    @property
    def next_seq(self) -> int:
        return self._next_seq

    def live(self, from_seq: int, limit: int) -> list[Pending]:
        """Pending events with seq >= from_seq (recorded since the uplink connected), by priority."""
        # NOT INDEXED: a rowid range scan of the few live rows beats walking the pending index
        # past a long backlog.
        return self._select("SELECT seq, priority, type, ts, body FROM events NOT INDEXED "
                            "WHERE seq >= ? AND state = 0 ORDER BY priority, seq LIMIT ?",
                            (from_seq, limit))

    def backlog(self, below_seq: int, after: tuple[int, int], limit: int) -> list[Pending]:
        """Pending events with seq < below_seq in (priority, seq) order, strictly after `after`."""
        return self._select("SELECT seq, priority, type, ts, body FROM events "
                            "WHERE state = 0 AND (priority, seq) > (?, ?) AND seq < ? "
                            "ORDER BY priority, seq LIMIT ?", (*after, below_seq, limit))

    def _select(self, sql: str, params: tuple) -> list[Pending]:
        with self._lock:
            try:
                return [Pending(*r) for r in self.db.execute(sql, params)]
            except sqlite3.Error as e:
                raise self._error("read", e) from e

    def mark_delivered(self, seqs: Iterable[int]) -> int:
        """PUBACK received for these seqs. Returns how many were still pending."""
        return self._finish(list(seqs), DELIVERED, None)

    def mark_failed(self, seq: int, reason: str) -> int:
        """The broker will never take this message (e.g. over its size limit): stop sending it."""
        n = self._finish([seq], FAILED, reason)
        self.failed += n
        return n

    def _finish(self, seqs: list[int], state: int, reason: str | None) -> int:
        done = 0
        now = time.time()
        with self._lock:
            try:
                with self.db.atomic():
                    for i in range(0, len(seqs), 500):
                        chunk = seqs[i:i + 500]
                        marks = ",".join("?" * len(chunk))
                        for (prio,) in self.db.execute(
                                f"UPDATE events SET state = ?, done_at = ?, reason = ? "
                                f"WHERE seq IN ({marks}) AND state = 0 RETURNING priority",
                                (state, now, reason, *chunk)).fetchall():
                            self._depth[prio] -= 1
                            done += 1
            except sqlite3.Error as e:
                raise self._error("update", e) from e
        return done

    def housekeep(self, keep_failed_s: float = 7 * 86400) -> int:
        """Delete delivered rows (and failed rows older than keep_failed_s). Returns rows deleted."""
        floor = min((hold() for hold in list(self.holds)), default=None)
        held, args = ("", ()) if floor is None else (" AND (priority = ? OR seq < ?)", (TELEMETRY_PRIORITY, floor))
        with self._lock:
            try:
                with self.db.atomic():
                    n = self.db.execute("DELETE FROM events WHERE state != 0 AND "
                                        "(state = 1 OR done_at < ?)" + held,
                                        (time.time() - keep_failed_s, *args)).rowcount
            except sqlite3.Error as e:
                raise self._error("housekeep", e) from e
            self._rows -= n
            return n

    # -- other uplinks' delivery cursors (gateway/record/cursors.py) --------------------------------
    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of a read-only statement, under the outbox lock."""
        with self._lock:
            try:
                return self.db.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise self._error("read", e) from e

    def execute(self, sql: str, params: tuple = (), script: bool = False) -> None:
        """One write statement (or a DDL script) in its own transaction. Called by the Recorder's
        thread for delivery marks (Recorder.call), directly only for the DDL at start."""
        with self._lock:
            try:
                if script:
                    self.db.conn.executescript(sql)
                else:
                    with self.db.atomic():
                        self.db.execute(sql, params)
            except sqlite3.Error as e:
                raise self._error("update", e) from e

    # -- bounds --------------------------------------------------------------------------------
    def used_bytes(self) -> int:
        pages, free = (self.db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count"))
        return (pages - free) * self._page_size

    def _over(self) -> int:
        """How many rows over the bound we are (0: within)."""
        over_rows = self._rows - self.max_rows
        used = self.used_bytes()
        over_bytes = 0
        if used > self.max_bytes and self._rows:
            over_bytes = int((used - self.max_bytes) / (used / self._rows)) + 1
        return max(over_rows, over_bytes, 0)

    def _enforce_limits(self) -> None:
        if not self._over():
            return
        if self.housekeep() and not self._over():
            return
        need = max(self._over() + 1, self._evict_chunk)  # +1: room for the gap event itself
        try:
            with self.db.atomic():
                gone = [r[0] for r in self.db.execute(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE state = 0 AND priority = ? "
                    "ORDER BY seq LIMIT ?) RETURNING seq", (TELEMETRY_PRIORITY, need)).fetchall()]
                if gone:
                    self._rows -= len(gone)
                    self._depth[TELEMETRY_PRIORITY] -= len(gone)
                    self.evicted += len(gone)
                    fields = {"from_seq": min(gone), "to_seq": max(gone), "count": len(gone),
                              "reason": "evicted"}
                    seq = self._next_seq
                    body = envelope.build(self.gateway_id, seq, time.time(), self._clock_synced(), self.boot,
                                          envelope.GAP, fields)
                    self.db.execute("INSERT INTO events (seq, priority, type, ts, state, body) "
                                    "VALUES (?, ?, ?, ?, 0, ?)",
                                    (seq, envelope.PRIORITY[envelope.GAP], envelope.GAP, time.time(), body))
        except sqlite3.Error as e:
            raise self._error("evict", e) from e
        if gone:
            self._next_seq += 1
            self._rows += 1
            self._depth[envelope.PRIORITY[envelope.GAP]] += 1
            self.version += 1
            log.warning("outbox full (%d rows, %.1f MB): evicted %d oldest telemetry events, seq %d..%d",
                        self._rows, self.used_bytes() / 1e6, len(gone), min(gone), max(gone))
        elif not self._warned_unevictable:
            self._warned_unevictable = True
            log.error("outbox over its bound (%d rows, %.1f MB) with no telemetry left to evict: "
                      "alarms and faults are kept anyway", self._rows, self.used_bytes() / 1e6)

    # -- reporting -----------------------------------------------------------------------------
    def stats(self) -> dict:
        """Depth per priority, age of the oldest pending event, counters. Cheap: indexed lookups."""
        with self._lock:
            oldest = None
            try:
                for prio in envelope.PRIORITY_NAMES:
                    row = self.db.execute("SELECT ts FROM events WHERE state = 0 AND priority = ? "
                                          "ORDER BY seq LIMIT 1", (prio,)).fetchone()
                    if row and (oldest is None or row[0] < oldest):
                        oldest = row[0]
                used = self.used_bytes()
            except sqlite3.Error as e:
                raise self._error("read", e) from e
            return {
                "depth": {envelope.PRIORITY_NAMES[p]: n for p, n in self._depth.items()},
                "pending": sum(self._depth.values()),
                "rows": self._rows,
                "mb": round(used / 1e6, 3),
                "oldest_pending_age_s": None if oldest is None else round(max(0.0, time.time() - oldest), 3),
                "next_seq": self._next_seq,
                "evicted": self.evicted,
                "failed": self.failed,
                "write_errors": self.write_errors,
                "last_error": self.last_error,
            }

    def close(self) -> None:
        with self._lock:
            try:
                self.db.close()
            except sqlite3.Error as e:
                log.warning("closing outbox %s: %s", self.path, e)

    # -- internals -----------------------------------------------------------------------------
    def _load_next_seq(self) -> int:
        last = self.db.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return max(last, row[0] if row else 0) + 1

    def _check_gateway_id(self) -> None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'gateway_id'").fetchone()
        if row is None:
            with self.db.atomic():
                self.db.execute("INSERT INTO meta VALUES ('gateway_id', ?)", (self.gateway_id,))
        elif row[0] != self.gateway_id:
            log.warning("outbox %s was written by gateway %r, now %r: its pending events keep their ids",
                        self.path, row[0], self.gateway_id)

    def _error(self, doing: str, e: sqlite3.Error) -> OutboxError:
        self.write_errors += doing != "read"
        code = getattr(e, "sqlite_errorname", "")
        if code in _NO_ROOM or "full" in str(e):
            msg = (f"outbox {self.path} is full (disk or page limit): cannot {doing} events; "
                   f"free space on {os.path.dirname(os.path.abspath(self.path))} ({e})")
        elif code in _UNWRITABLE or "readonly" in str(e) or "unable to open" in str(e):
            msg = f"outbox {self.path} is not writable: cannot {doing} events; check the file and directory ({e})"
        else:
            msg = f"outbox {self.path}: cannot {doing} events: {e}"
        self.last_error = msg
        return OutboxError(msg)
