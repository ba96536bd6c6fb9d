"""The embedded engine: one SQLite file (WAL), for a bench, a technician's laptop, one receiver."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import sqlite_utils

from gateway.platform.stores.base import SCHEMA_VERSION, Batch, Store, StoreError, body, gap_rows, gateway_of

# Version 1 is what every receiver file made before schema_version existed holds.
V1 = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, gateway TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,
    ts TEXT, replay INTEGER, received REAL NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_gw_seq ON events(gateway, seq);
CREATE TABLE IF NOT EXISTS gaps (
    gateway TEXT NOT NULL, from_seq INTEGER NOT NULL, to_seq INTEGER NOT NULL, count INTEGER,
    declared_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS presence (gateway TEXT PRIMARY KEY, state TEXT, received REAL, body TEXT);
CREATE TABLE IF NOT EXISTS invalid (received REAL, topic TEXT, error TEXT, body TEXT);
CREATE TABLE IF NOT EXISTS counters (gateway TEXT PRIMARY KEY, duplicates INTEGER NOT NULL DEFAULT 0);
"""
MIGRATIONS = {
    1: V1,
    # (gateway, seq) is the key the contract promises; a v1 file can only hold one row per id, and
    # id = "<gateway>/<seq>", so the unique index cannot fail on old rows.
    2: """
DROP INDEX IF EXISTS events_gw_seq;
CREATE UNIQUE INDEX IF NOT EXISTS events_gateway_seq ON events(gateway, seq);
ALTER TABLE events ADD COLUMN stored REAL;
""",
}


# What one row (not the database) can raise: a value sqlite3 cannot bind (OverflowError: an integer
# past 64 bits; ValueError/UnicodeEncodeError: a lone surrogate), or a constraint or type of that row.
# sqlite3.OperationalError (locked, disk I/O, full) is the database's: StoreError, retried.
ROW_ERRORS = (OverflowError, ValueError, sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError,
              sqlite3.ProgrammingError)


def _safe(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


class SqliteStore(Store):
    """Thread-safe (one lock): the receiver's writer thread writes, the test or CLI thread reads."""

    def __init__(self, path: str = ":memory:", *, upto: int = SCHEMA_VERSION):
        self.url = path
        try:
            self.db = sqlite_utils.Database(sqlite3.connect(path, check_same_thread=False, timeout=30))
            if path != ":memory:":
                self.db.enable_wal()
            self._migrate(upto)
        except sqlite3.Error as e:
            raise StoreError(f"platform store {path}: {e}") from e
        self._lock = threading.Lock()

    def _migrate(self, upto: int) -> None:
        conn = self.db.conn
        # BEGIN IMMEDIATE: a second receiver opening the same file waits for the first one's migration
        conn.isolation_level = None
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied REAL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            have = row[0]
            if have is None:
                old = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone()
                have = 1 if old else 0  # a file from before schema_version is version 1
                if have:
                    conn.execute("INSERT INTO schema_version VALUES (1, ?)", (time.time(),))
            if have > SCHEMA_VERSION:
                raise StoreError(f"platform store {self.url} has schema version {have}; this receiver knows "
                                 f"up to {SCHEMA_VERSION}: upgrade the receiver")
            for v in range(have + 1, upto + 1):
                for stmt in filter(str.strip, MIGRATIONS[v].split(";")):
                    conn.execute(stmt)
                conn.execute("INSERT INTO schema_version VALUES (?, ?)", (v, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.isolation_level = ""

    # -- writing -------------------------------------------------------------------------------
    def write(self, batch: Batch) -> list[bool]:
        with self._lock:
            try:
                try:
                    with self.db.atomic():
                        return self._write(batch, time.time(), each=False)
                except ROW_ERRORS:
                    # one row SQLite cannot take (a seq past 2**63 - 1 is an OverflowError, a lone
                    # surrogate in a string a UnicodeEncodeError) must not block the batch, nor be
                    # retried for ever: write again row by row, the refused ones kept in `invalid`,
                    # as the PostgreSQL store does
                    with self.db.atomic():
                        return self._write(batch, time.time(), each=True)
            except sqlite3.Error as e:
                raise StoreError(f"platform store {self.url}: {e}") from e

    def _write(self, batch: Batch, now: float, *, each: bool) -> list[bool]:
        new: list[bool] = []
        for i, event in enumerate(batch.events):
            if not each:
                new.append(self._event(event, batch.received_at(i, now)))
                continue
            try:
                with self.db.atomic():  # a savepoint: a refused row leaves nothing behind
                    new.append(self._event(event, batch.received_at(i, now)))
            except ROW_ERRORS as e:
                self._invalid(now, f"(stored as) {event.get('id')}", f"refused by SQLite: {type(e).__name__}: {e}",
                              json.dumps(event, ensure_ascii=True))
                new.append(False)
        for gw, payload in batch.presence:
            if not each:
                self._presence(gw, payload, now)
                continue
            try:
                with self.db.atomic():
                    self._presence(gw, payload, now)
            except ROW_ERRORS as e:
                self._invalid(now, f"(stored as) presence of {gw}", f"refused by SQLite: {type(e).__name__}: {e}",
                              json.dumps(payload, ensure_ascii=True))
        for topic, error, raw in batch.invalid:
            self._invalid(now, topic, error, raw.decode("utf-8", "replace"))
        return new

    def _event(self, event: dict, received: float) -> bool:
        gw = gateway_of(event)
        cur = self.db.execute(
            "INSERT INTO events (id, gateway, seq, type, ts, replay, received, body, stored) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (event["id"], gw, event["seq"], event["type"], event.get("ts"),
             int(bool(event.get("replay"))), received, body(event), time.time()))
        if cur.rowcount == 0:
            self.db.execute("INSERT INTO counters VALUES (?, 1) ON CONFLICT(gateway) "
                            "DO UPDATE SET duplicates = duplicates + 1", (gw,))
            return False
        for row in gap_rows(event):
            self.db.execute("INSERT INTO gaps VALUES (?, ?, ?, ?, ?)", row)
        return True

    def _presence(self, gw: str, payload: dict, now: float) -> None:
        self.db.execute("INSERT OR REPLACE INTO presence VALUES (?, ?, ?, ?)",
                        (gw, payload.get("state"), now, body(payload)))

    def _invalid(self, now: float, topic: str, error: str, raw: str) -> None:
        # an error message may quote the payload (a lone surrogate): text SQLite can always take
        self.db.execute("INSERT INTO invalid VALUES (?, ?, ?, ?)", (now, _safe(topic), _safe(error), _safe(raw)))

    # -- reading -------------------------------------------------------------------------------
    def _rows(self, sql: str, args=()) -> list[tuple]:
        with self._lock:
            return [tuple(r) for r in self.db.execute(sql, args)]

    def gateways(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT DISTINCT gateway FROM events ORDER BY gateway")]

    def counts(self, gateway: str):
        return self._rows("SELECT count(*), min(seq), max(seq) FROM events WHERE gateway = ?", (gateway,))[0]

    def missing(self, gateway: str) -> list[tuple[int, int]]:
        return self._rows(
            "SELECT seq + 1, nxt - 1 FROM (SELECT seq, LEAD(seq) OVER (ORDER BY seq) AS nxt "
            "FROM events WHERE gateway = ?) WHERE nxt > seq + 1", (gateway,))

    def declared(self, gateway: str) -> list[tuple[int, int]]:
        return self._rows("SELECT from_seq, to_seq FROM gaps WHERE gateway = ? ORDER BY from_seq", (gateway,))

    def duplicates(self) -> int:
        return self._rows("SELECT coalesce(sum(duplicates), 0) FROM counters")[0][0]

    def presence(self, gateway: str) -> dict | None:
        import json

        rows = self._rows("SELECT body FROM presence WHERE gateway = ?", (gateway,))
        return json.loads(rows[0][0]) if rows else None

    def invalid_count(self) -> int:
        return self._rows("SELECT count(*) FROM invalid")[0][0]

    def schema_version(self) -> int:
        return self._rows("SELECT max(version) FROM schema_version")[0][0]

    def close(self) -> None:
        with self._lock:
            self.db.close()
