"""Opening the outbox's SQLite file whatever state it is in.

- WAL with `PRAGMA locking_mode=EXCLUSIVE` set before the first access: SQLite then keeps the
  wal-index in heap memory and never creates or maps a `-shm` file (sqlite.org/wal.html §8, "Use of
  WAL Without Shared-Memory", requirement R-31969-57825). A mapped -shm whose disk goes away kills
  the process with SIGBUS, sirens with it. The price: no other process may open the file while the
  daemon runs (`gateway status` / `gateway events` show it instead).
- A file that is not a database, or fails `PRAGMA quick_check`, is moved aside with its WAL as
  `outbox.sqlite.corrupt-<time>` and a fresh one is created (the seq mark continues above it).
- A file that cannot be written (read-only file or filesystem, no space to create it) is not an
  error that stops the daemon: `open_db` reports it and the Recorder tries again later.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import uuid

import sqlite_utils

from gateway.errors import OutboxError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: never reused, even after deletes
    priority INTEGER NOT NULL,              -- 0 alarm, 1 fault, 2 audit/status/gap, 3 telemetry
    type TEXT NOT NULL,
    ts REAL NOT NULL,                       -- wall clock of the event (unix seconds)
    state INTEGER NOT NULL DEFAULT 0,       -- 0 pending (unless in `delivered`), 2 failed
    done_at REAL,                           -- when it was delivered or failed
    reason TEXT,                            -- why it failed
    body TEXT NOT NULL                      -- the envelope as published (replay flag flipped on send), or
                                            -- for telemetry its packed fields: [ctx, ...] (compact.py)
);
CREATE INDEX IF NOT EXISTS events_pending ON events(priority, seq) WHERE state = 0;
CREATE INDEX IF NOT EXISTS events_done ON events(seq) WHERE state != 0;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
-- what a packed telemetry row (gateway/record/compact.py) was recorded under: its envelope's gateway
-- id, boot and clock_synced, numbered once instead of repeated in every row
CREATE TABLE IF NOT EXISTS contexts (
    n INTEGER PRIMARY KEY, gateway TEXT NOT NULL, boot TEXT NOT NULL, clock_synced INTEGER NOT NULL,
    UNIQUE (gateway, boot, clock_synced));
-- PUBACKed seqs until housekeeping deletes them with their events. A delivery mark is a few bytes in
-- this table's last page, not a rewrite of the event's row and of two indexes (the SD card's bytes).
CREATE TABLE IF NOT EXISTS delivered (seq INTEGER PRIMARY KEY);
"""
# an event row that is still to be sent (state 0 and not in `delivered`)
PENDING_ROW = "state = 0 AND NOT EXISTS (SELECT 1 FROM delivered d WHERE d.seq = events.seq)"
PAGE_SIZE = 1024
CORRUPT = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}
NO_ROOM = {"SQLITE_FULL"}
UNWRITABLE = {"SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_PERM"}


def is_corrupt(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorname", "") or ""
    return code.split("_")[:2] == ["SQLITE", "CORRUPT"] or code in CORRUPT or "malformed" in str(e) \
        or "not a database" in str(e)


def connect(path: str) -> sqlite_utils.Database:
    conn = sqlite3.connect(path, check_same_thread=False, timeout=10)
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")  # before WAL: no -shm, no mmap (see above)
        # A new file only (an existing one keeps its size): every group commit rewrites a few pages
        # that are never full (the last leaf of each table and index, their parents, page 1,
        # sqlite_sequence) and the WAL gets each whole; 1 KB pages instead of 4 KB make that a quarter
        # (measured: bench/write_volume.py --offline, docs/outbox.md "SD card").
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        db = sqlite_utils.Database(conn)
        db.enable_wal()
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA journal_size_limit=16777216")  # truncate the WAL back to 16 MB
        db.conn.executescript(SCHEMA)
        return db
    except BaseException:
        conn.close()
        raise


def check(db: sqlite_utils.Database) -> str | None:
    """None when the file reads whole, else what quick_check (or reading it) found."""
    try:
        rows = [r[0] for r in db.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as e:
        return str(e)
    return None if rows == ["ok"] else "; ".join(rows)[:300]


def claim(db: sqlite_utils.Database) -> str:
    """The file's own id (created with it) after one real write: a read-only file fails here, at
    open, not at the first alarm."""
    row = db.execute("SELECT value FROM meta WHERE key = 'outbox_id'").fetchone()
    outbox_id = row[0] if row else uuid.uuid4().hex
    with db.atomic():
        db.execute("INSERT OR REPLACE INTO meta VALUES ('outbox_id', ?)", (outbox_id,))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('opened_at', ?)", (str(time.time()),))
        db.execute("DELETE FROM events WHERE state = 1")  # delivered rows of a file from earlier firmware
    return outbox_id


def move_aside(path: str) -> str:
    """outbox.sqlite (and its -wal) -> outbox.sqlite.corrupt-<time>[-wal]. Returns the new name."""
    target = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, target + suffix)
    return target


def inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class FileLife:
    """Mixed into Outbox: what happens when its file is lost, replaced or must be opened again."""

    def _lost(self, reason: str, moved_to: str | None, detail: str) -> None:
        self.lost = {"reason": reason, "moved_to": moved_to, "detail": detail[:300], "at": time.time()}
        if moved_to:
            self.moved_aside.append(moved_to)
        log.error("OUTBOX %s: %s%s; a fresh one is started", reason.replace("_", " ").upper(), detail,
                  f", moved aside to {moved_to}" if moved_to else "")

    def _continue_above_the_mark(self) -> None:
        m = self.mark
        if m is None or m.hwm <= 0:
            return
        if m.outbox_id == self.outbox_id and self._next_seq >= m.pending_from:
            return  # the same file the mark was written for, not older than it
        if self._next_seq > m.hwm:
            return
        if self.lost is None:
            self._lost("outbox_lost", None, f"{self.path} is not the file seq {m.hwm} was reserved in "
                                            f"(deleted, truncated or replaced)")
        lo = max(1, min(m.pending_from, self._next_seq))
        # at most this many: seqs of [lo, hwm] that were delivered, or never handed out, are not lost
        self._lost_gap = {"from_seq": lo, "to_seq": m.hwm, "count": m.hwm - lo + 1, "reason": self.lost["reason"]}
        self._next_seq = m.hwm + 1
        try:
            self.commit([])  # the gap goes in now: it is the first event of the new file
        except OutboxError as e:
            log.error("declaring the lost seqs: %s (retried with the next event)", e)

    def reopen(self) -> bool:
        """Close and open the file again (after it was unwritable, corrupt or replaced). True if usable."""
        with self._lock:
            if self.db is not None:
                try:
                    self.db.close()
                except sqlite3.Error:
                    pass
                self.db = None
            self.state = "unavailable"
            try:
                self._connect()
            except sqlite3.Error as e:
                if is_corrupt(e):
                    self._lost("outbox_corrupt", move_aside(self.path), str(e))
                    return self.reopen()
                self._error("open", e)
                self.needs_reopen = True
                return False
        log.warning("outbox %s open again (seq continues at %d)", self.path, self._next_seq)
        return True

    def file_replaced(self) -> bool:
        """The file at `path` is not the one open (deleted, moved or replaced underneath)."""
        return self.db is not None and inode(self.path) != self._inode
