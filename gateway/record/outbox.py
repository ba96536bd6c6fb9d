"""The outbox: every event the gateway produces, in one SQLite file, until the broker has PUBACKed it.

paho-mqtt keeps unsent messages only in memory, so this file is the source of truth for what the
platform has and has not received. Alarms and faults are committed with synchronous=FULL (durable
across a power cut) before commit() returns; telemetry and status are committed in groups with
synchronous=NORMAL (WAL: survives a crash of the process, may lose the last group on power loss).
One writer (the Recorder's thread) owns it; the uplink only reads.

A row is `pending` until its PUBACK, then `delivered` until housekeeping deletes it; a message the
broker will never accept (too large) is `failed` and kept for the technician. The file is bounded by
rows and megabytes: when full, delivered rows go first, then the OLDEST pending telemetry, and a `gap`
event names the evicted seq range (earlier pending gap notices are merged into it, so gap notices
cannot fill the bound themselves). Alarms, faults, audit and status are never evicted.

Seq never goes back: with a SeqMark (gateway/record/seqmark.py) a lost, truncated, corrupt or
replaced file continues above the mark and its first event is a gap declaring what may be lost.
With recover=True nothing about the file stops the daemon (outbox_file.py): corrupt files are moved
aside, an unwritable one leaves the outbox `unavailable` until reopen() succeeds.

Telemetry is stored packed (compact.py), not as its envelope: the SD card's bytes follow the rows.
Here: opening and writing; reading and the figures in outbox_reads.py, the bounds in bounds.py.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from typing import Iterable, NamedTuple

from gateway.config.model import Outbox as OutboxLimits
from gateway.errors import OutboxError
from gateway.record import compact, envelope
from gateway.record import outbox_file as files
from gateway.record.bounds import GAP_PRIORITY, TELEMETRY_PRIORITY, Bounds
from gateway.record.clock import SyncState, boot_id
from gateway.record.outbox_reads import Pending, Reads

log = logging.getLogger(__name__)

PENDING, DELIVERED, FAILED = 0, 1, 2  # DELIVERED: in the `delivered` table, not a state value
_PENDING = files.PENDING_ROW
SCHEMA = files.SCHEMA
# Delivered rows stay this long (by event time) as the history `gateway events` reads (bounded by
# max_rows/max_mb all the same: a full outbox deletes every delivered row before it evicts anything).
KEEP_DELIVERED_S = 86400.0


class BadEvent(OutboxError):
    """Events that can never be stored (not serialisable, unknown type): `bad` lists (index, why).
    Nothing was written; the others may be retried without them."""

    def __init__(self, bad: list[tuple[int, str]]):
        self.bad = bad
        super().__init__("; ".join(why for _, why in bad))


class Event(NamedTuple):
    """An event before it has a seq: what the Recorder queues."""
    type: str
    fields: dict
    ts: float | None = None


class Outbox(Reads, Bounds, files.FileLife):
    """The durable queue of events waiting for the platform (one SQLite file, one writer thread)."""

    def __init__(self, path: str | os.PathLike, gateway_id: str, limits: OutboxLimits | None = None, *,
                 clock_synced=None, boot: str | None = None, evict_fraction: float = 0.01, mark=None,
                 recover: bool = False):
        self.path = str(path)
        self.gateway_id = gateway_id
        self.limits = limits or OutboxLimits()
        self.max_rows = int(self.limits.max_rows)
        self.max_bytes = int(self.limits.max_mb * 1024 * 1024)
        # Evict in chunks so a full outbox emits one gap event per chunk, not one per insert.
        self._evict_chunk = max(1, int(self.max_rows * evict_fraction))
        self._clock_synced = clock_synced or SyncState()
        self.boot = boot or boot_id()
        self.mark = mark
        self.recover = recover
        self._lock = threading.RLock()
        self.write_errors = 0
        self.last_error: str | None = None
        self.evicted = 0
        self.failed = 0
        self.gaps_merged = 0
        self.version = 0  # bumped on every commit of new events: the uplink polls it
        self.state = "unavailable"
        self.needs_reopen = False  # the Recorder reopens after an unwritable or corrupt error
        self.lost: dict | None = None  # what happened to the previous file, when it was lost
        self.moved_aside: list[str] = []
        self._warned_unevictable = False
        # Other uplinks' delivery cursors (gateway/record/cursors.py): `holds` are callables returning
        # the lowest seq each may still need (housekeeping keeps non-telemetry rows from the lowest of
        # them on); `schemas` are their tables, created with every file this outbox opens.
        self.holds: list = []
        self.schemas: list[str] = []
        self.db = None
        self._next_seq = 1
        self._rows = 0
        self._depth = dict.fromkeys(envelope.PRIORITY_NAMES, 0)
        self._lost_gap: dict | None = None  # to be stored as the first event of a fresh file
        self._oldest: float | None = None
        self._oldest_by_class: dict[str, float | None] = {}
        self.last_delivered_ts: float | None = None  # wall clock of the last delivery mark committed
        self._used = 0
        # (gateway id, boot, clock_synced) <-> n of the `contexts` table, for packed telemetry rows
        self._contexts: dict[int, tuple[str, str, bool]] = {}
        self._context_n: dict[tuple[str, str, bool], int] = {}
        self._open()

    # -- opening -------------------------------------------------------------------------------
    def _open(self) -> None:
        try:
            self._connect()
        except sqlite3.Error as e:
            err = self._error("open", e)
            if not self.recover:
                raise err from e
            log.error("OUTBOX UNAVAILABLE (%s): events wait in memory, retried", err)
            self.needs_reopen = True
            return

    def _connect(self) -> None:
        db = None
        try:
            db = files.connect(self.path)
            problem = files.check(db) if self.recover else None
        except sqlite3.DatabaseError as e:
            if not (self.recover and files.is_corrupt(e)):
                raise
            problem = str(e)
        if problem:
            if db is not None:
                db.close()
            self._lost("outbox_corrupt", files.move_aside(self.path), problem)
            db = files.connect(self.path)
        try:
            for script in self.schemas:
                db.conn.executescript(script)
            self.outbox_id = files.claim(db)
            self._page_size = db.execute("PRAGMA page_size").fetchone()[0]
            self._inode = files.inode(self.path)
            next_seq = self._load_next_seq(db)
            rows = db.execute("SELECT count(*) FROM events").fetchone()[0]
            depth = dict.fromkeys(envelope.PRIORITY_NAMES, 0)
            for prio, n in db.execute(f"SELECT priority, count(*) FROM events WHERE {_PENDING} GROUP BY priority"):
                depth[prio] = n
            self._check_gateway_id(db)
            contexts = {n: (gw, boot, bool(synced)) for n, gw, boot, synced in
                        db.execute("SELECT n, gateway, boot, clock_synced FROM contexts")}
        except BaseException:
            db.close()
            raise
        self.db, self._rows, self._depth, self._next_seq = db, rows, depth, next_seq
        self._contexts, self._context_n = contexts, {v: n for n, v in contexts.items()}
        self.state, self.needs_reopen, self.last_error = "ok", False, None
        self._continue_above_the_mark()
        self._refresh()

    # -- writing -------------------------------------------------------------------------------
    def add(self, type_: str, fields: dict, ts: float | None = None) -> int:
        """Store one event and return its seq. Alarms and faults are on disk (FULL) on return."""
        return self.add_many([Event(type_, fields, ts)])[0]

    def add_many(self, events: Iterable[Event | tuple]) -> list[int]:
        """Store events in one transaction, in order; FULL when any of them is an alarm or fault.
        On OutboxError nothing was stored and no seq was consumed."""
        return self.commit(events)

    def commit(self, events: Iterable[Event | tuple] = (), delivered: Iterable[int] = (),
               failed: Iterable[tuple[int, str]] = ()) -> list[int]:
        """One transaction: new events (their seqs returned), delivery marks and failed marks.
        Raises BadEvent (nothing written) for events that can never be stored, OutboxError otherwise."""
        events = [e if isinstance(e, Event) else Event(*e) for e in events]
        delivered, failed = list(delivered), list(failed)
        now = time.time()
        synced = self._clock_synced()
        with self._lock:
            if self.db is None:
                raise OutboxError(self.last_error or f"outbox {self.path} is not open")
            seq = self._next_seq
            rows, bad, durable, new_ctx = [], [], False, None
            first = 0 if self._lost_gap is None else 1  # the lost-file gap is not the caller's event
            if self._lost_gap is not None:
                rows.append((seq, GAP_PRIORITY, envelope.GAP, now,
                             envelope.build(self.gateway_id, seq, now, synced, self.boot, envelope.GAP,
                                            self._lost_gap)))
                seq, durable = seq + 1, True
            for i, ev in enumerate(events):
                ts = now if ev.ts is None else ev.ts
                try:
                    if ev.type == envelope.TELEMETRY and compact.packable(ev.fields):
                        ctx, new_ctx = self._context(synced, new_ctx)
                        body = compact.pack(ctx, ev.fields)
                    else:
                        body = envelope.build(self.gateway_id, seq, ts, synced, self.boot, ev.type, ev.fields)
                except (OutboxError, TypeError, ValueError) as e:
                    bad.append((i, str(e)))
                    continue
                rows.append((seq, envelope.PRIORITY[ev.type], ev.type, ts, body))
                durable = durable or ev.type in envelope.DURABLE_TYPES
                seq += 1
            if bad:
                raise BadEvent(bad)
            if not rows and not delivered and not failed:
                return []
            if self.mark is not None and seq - 1 > self.mark.hwm:
                self.mark.reserve(seq - 1, self._lowest_pending(), self.outbox_id)
            done = self._commit_rows(rows, durable, delivered, failed, now, new_ctx)
            if new_ctx is not None:
                self._contexts[new_ctx[0]] = new_ctx[1:]
                self._context_n[new_ctx[1:]] = new_ctx[0]
            self._next_seq = seq
            self._lost_gap = None
            self._rows += len(rows)
            for row in rows:
                self._depth[row[1]] += 1
            for prio, state in done:
                self._depth[prio] -= 1
                self.failed += state == FAILED
            self._marked = len(done)
            if any(state == DELIVERED for _, state in done):
                self.last_delivered_ts = now or time.time()
            if rows:
                self.version += 1
                try:
                    self._enforce_limits()
                except OutboxError as e:
                    log.error("%s", e)  # the events are stored; only the bound could not be kept this time
            self._refresh()
        return [row[0] for row in rows[first:]]

    def _context(self, synced, new_ctx) -> tuple[int, tuple | None]:
        """The contexts number of this gateway id, boot and sync state (a new one is inserted with the rows)."""
        key = (self.gateway_id, self.boot, bool(synced))
        if key in self._context_n:
            return self._context_n[key], new_ctx
        if new_ctx is None:  # one per commit at most: gateway id, boot and sync state are the commit's
            n = max(self._contexts, default=0) + 1
            new_ctx = (n, *key)
        return new_ctx[0], new_ctx

    def _commit_rows(self, rows: list[tuple], durable: bool, delivered=(), failed=(), now=0.0,
                     new_ctx: tuple | None = None) -> list:
        done = []
        try:
            if durable:
                # synchronous can only change outside a transaction; FULL fsyncs the WAL on COMMIT
                self.db.execute("PRAGMA synchronous=FULL")
            try:
                with self.db.atomic():
                    if new_ctx is not None:
                        self.db.execute("INSERT INTO contexts VALUES (?, ?, ?, ?)",
                                        (*new_ctx[:3], int(new_ctx[3])))
                    if rows:
                        self.db.conn.executemany(
                            "INSERT INTO events (seq, priority, type, ts, state, body) VALUES (?, ?, ?, ?, 0, ?)",
                            rows)
                    for i in range(0, len(delivered), 500):
                        chunk = delivered[i:i + 500]
                        found = self.db.execute(f"SELECT seq, priority FROM events WHERE seq IN "
                                                f"({','.join('?' * len(chunk))}) AND {_PENDING}", chunk).fetchall()
                        self.db.conn.executemany("INSERT INTO delivered VALUES (?)", [(r[0],) for r in found])
                        done += [(r[1], DELIVERED) for r in found]
                    for seq, reason in failed:
                        done += self.db.execute(
                            f"UPDATE events SET state = {FAILED}, done_at = ?, reason = ? WHERE seq = ? "
                            f"AND {_PENDING} RETURNING priority, state", (now, reason, seq)).fetchall()
            finally:
                if durable:
                    self.db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as e:
            raise self._error("store", e) from e
        self.last_error = None
        return done

    # -- the uplink's side ---------------------------------------------------------------------
    @property
    def next_seq(self) -> int:
        return self._next_seq

    def mark_delivered(self, seqs: Iterable[int]) -> int:
        """PUBACK received for these seqs. Returns how many were still pending."""
        self.commit(delivered=seqs)
        return self._marked

    def mark_failed(self, seq: int, reason: str) -> int:
        """The broker will never take this message (e.g. over its size limit): stop sending it."""
        self.commit(failed=[(seq, reason)])
        return self._marked

    def housekeep(self, keep_failed_s: float = 7 * 86400, keep_delivered_s: float = KEEP_DELIVERED_S) -> int:
        """Delete delivered rows older than keep_delivered_s (they are `gateway events`' history until
        then; a full outbox drops them all first) and failed rows older than keep_failed_s. An alarm or
        fault another uplink still holds (seq at or above its cursor's floor) stays; nothing else is held
        (the centres carry no status, audit or gap, and telemetry may go): a centre away for weeks must
        not grow the file past its bound."""
        now = time.time()
        floor = min((hold() for hold in list(self.holds)), default=None)
        held, args = ("", ()) if floor is None else (" AND (type NOT IN (?, ?) OR seq < ?)",
                                                      (envelope.ALARM, envelope.FAULT, floor))
        with self._lock:
            if self.db is None:
                return 0
            try:
                with self.db.atomic():
                    # delivered rows go mostly in seq order: whole pages are freed, not rewritten
                    n = self.db.execute("DELETE FROM events WHERE ((seq IN (SELECT seq FROM delivered) AND ts < ?) "
                                        "OR (state = 2 AND done_at < ?))" + held,
                                        (now - keep_delivered_s, now - keep_failed_s, *args)).rowcount
                    if n:
                        self.db.execute("DELETE FROM delivered WHERE seq NOT IN (SELECT seq FROM events)")
            except sqlite3.Error as e:
                raise self._error("housekeep", e) from e
            self._rows -= n
            self._refresh()
            return n

    # -- other uplinks' delivery cursors (gateway/record/cursors.py) ----------------------------
    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of a read-only statement, through this (the only) connection, under the outbox lock."""
        with self._lock:
            if self.db is None:
                raise OutboxError(self.last_error or f"outbox {self.path} is {self.state}")
            try:
                return self.db.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise self._error("read", e) from e

    def execute(self, sql: str, params: tuple = ()) -> None:
        """One write statement in its own transaction: by the Recorder's thread (Recorder.call), the
        one writer of the file; directly only at start, before the uplinks run."""
        with self._lock:
            if self.db is None:
                raise OutboxError(self.last_error or f"outbox {self.path} is {self.state}")
            try:
                with self.db.atomic():
                    self.db.execute(sql, params)
            except sqlite3.Error as e:
                raise self._error("update", e) from e

    def add_schema(self, script: str) -> None:
        """Tables of another uplink: created now (when open) and in every file opened from now on."""
        with self._lock:
            if script not in self.schemas:
                self.schemas.append(script)
            if self.db is not None:
                try:
                    self.db.conn.executescript(script)
                except sqlite3.Error as e:
                    raise self._error("update", e) from e

    def close(self) -> None:
        with self._lock:
            if self.db is None:
                return
            try:
                self.db.close()
            except sqlite3.Error as e:
                log.warning("closing outbox %s: %s", self.path, e)
            self.db = None
            self.state = "closed"

    # -- internals -----------------------------------------------------------------------------
    def _lowest_pending(self) -> int:
        try:
            rows = [self.db.execute(f"SELECT seq FROM events WHERE {_PENDING} AND priority = ? ORDER BY seq "
                                    "LIMIT 1", (p,)).fetchone() for p in envelope.PRIORITY_NAMES]
            rows = [r[0] for r in rows if r]
        except sqlite3.Error:
            return 1
        return min(rows or [self._next_seq])

    @staticmethod
    def _load_next_seq(db) -> int:
        last = db.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return max(last, row[0] if row else 0) + 1

    def _check_gateway_id(self, db) -> None:
        row = db.execute("SELECT value FROM meta WHERE key = 'gateway_id'").fetchone()
        if row is None:
            with db.atomic():
                db.execute("INSERT INTO meta VALUES ('gateway_id', ?)", (self.gateway_id,))
        elif row[0] != self.gateway_id:
            log.warning("outbox %s was written by gateway %r, now %r: its pending events keep their ids",
                        self.path, row[0], self.gateway_id)

    def _error(self, doing: str, e: sqlite3.Error) -> OutboxError:
        self.write_errors += doing != "read"
        code = getattr(e, "sqlite_errorname", "")
        if files.is_corrupt(e):
            msg = f"outbox {self.path} is damaged: cannot {doing} events ({e}); it is moved aside and started afresh"
            self.needs_reopen = True
        elif code in files.NO_ROOM or "full" in str(e):
            msg = (f"outbox {self.path} is full (disk or page limit): cannot {doing} events; "
                   f"free space on {os.path.dirname(os.path.abspath(self.path))} ({e})")
        elif code in files.UNWRITABLE or "readonly" in str(e) or "unable to open" in str(e):
            msg = f"outbox {self.path} is not writable: cannot {doing} events; check the file and directory ({e})"
            self.needs_reopen = True  # a read-only connection stays read-only: only a new one can write
        else:
            msg = f"outbox {self.path}: cannot {doing} events: {e}"
        self.last_error = msg
        return OutboxError(msg)
