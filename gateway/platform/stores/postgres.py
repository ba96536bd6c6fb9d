"""PostgreSQL through psycopg 3, for a city: several receivers write one database.

Migrations run in one transaction under a transaction-level advisory lock
(`pg_advisory_xact_lock`, PostgreSQL 15 docs §9.27.10), so receivers started together apply each
step once and the others wait, then find the schema current. A batch is one INSERT over `unnest()`
arrays with `ON CONFLICT (gateway, seq) DO NOTHING RETURNING` (docs §INSERT): the rows returned are
the new events, the rest are duplicates. Rows are sorted by key inside a batch so that two receivers
that meet on the same keys (a gateway re-sending after a reconnect) lock them in the same order.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

try:
    import psycopg
    from psycopg import errors as pg_errors
except ImportError as e:  # pragma: no cover - the message is the point
    raise ImportError("--store postgresql://... needs psycopg 3: pip install 'community-gateway[platform]'") from e

from gateway.platform.stores.base import SCHEMA_VERSION, Batch, Store, StoreError, body, gap_rows, gateway_of

# What one row (not the server) can raise: a value the server refuses (DataError: a \\u0000 in jsonb,
# a bigint out of range), or one psycopg cannot send (UnicodeEncodeError, a ValueError: a lone
# surrogate; OverflowError). The rest (connection lost, ...) is a StoreError, retried.
ROW_ERRORS = (pg_errors.DataError, ValueError, OverflowError)

LOCK_KEY = 0x6377_706C_6174  # "cwplat": the advisory lock the receivers' migrations take

MIGRATIONS = {
    1: """
CREATE TABLE IF NOT EXISTS events (
    id text PRIMARY KEY, gateway text NOT NULL, seq bigint NOT NULL, type text NOT NULL,
    ts timestamptz, replay boolean, received timestamptz NOT NULL, body jsonb NOT NULL);
CREATE INDEX IF NOT EXISTS events_gw_seq ON events (gateway, seq);
CREATE TABLE IF NOT EXISTS gaps (
    gateway text NOT NULL, from_seq bigint NOT NULL, to_seq bigint NOT NULL, count integer,
    declared_by text NOT NULL);
CREATE INDEX IF NOT EXISTS gaps_gateway ON gaps (gateway);
CREATE TABLE IF NOT EXISTS presence (gateway text PRIMARY KEY, state text, received timestamptz, body jsonb);
CREATE TABLE IF NOT EXISTS invalid (received timestamptz, topic text, error text, body text);
CREATE TABLE IF NOT EXISTS counters (gateway text PRIMARY KEY, duplicates bigint NOT NULL DEFAULT 0);
""",
    # the contract's key; id = "<gateway>/<seq>" so v1 rows cannot collide on it
    2: """
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_pkey;
ALTER TABLE events ADD PRIMARY KEY (gateway, seq);
DROP INDEX IF EXISTS events_gw_seq;
ALTER TABLE events ADD COLUMN IF NOT EXISTS stored timestamptz;
""",
}

INSERT_EVENTS = """
INSERT INTO events (id, gateway, seq, type, ts, replay, received, body, stored)
SELECT u.*, clock_timestamp()
FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[], %b::timestamptz[], %b::boolean[],
            %b::timestamptz[], %b::jsonb[]) AS u
ON CONFLICT (gateway, seq) DO NOTHING
RETURNING gateway, seq
"""


def _utc(ts) -> datetime | None:
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts)
    except ValueError:
        return None


def _text(s: str) -> str:
    """Text PostgreSQL and psycopg always take: NUL escaped, a lone surrogate replaced."""
    return s.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\\u0000")


def _epoch(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


class PostgresStore(Store):
    """One connection, one lock; reconnects on the next call after the server went away."""

    def __init__(self, url: str, *, upto: int = SCHEMA_VERSION, connect_timeout: float = 10):
        self.url = url
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        with self._lock:
            self._migrate(upto)

    # -- connection and schema -----------------------------------------------------------------
    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = psycopg.connect(self.url, connect_timeout=int(self.connect_timeout),
                                             application_name="gateway-platform")
            except psycopg.Error as e:
                raise StoreError(f"platform store {self._where()}: cannot connect: {e}".strip()) from e
        return self._conn

    def _where(self) -> str:
        from gateway.platform.stores import describe_url
        return describe_url(self.url)

    def _migrate(self, upto: int) -> None:
        conn = self._connection()
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                             "(version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())")
                have = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
                if have > SCHEMA_VERSION:
                    raise StoreError(f"platform store {self._where()} has schema version {have}; this receiver "
                                     f"knows up to {SCHEMA_VERSION}: upgrade the receiver")
                for v in range(have + 1, upto + 1):
                    for stmt in filter(str.strip, MIGRATIONS[v].split(";")):
                        conn.execute(stmt)
                    conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (v,))
        except psycopg.Error as e:
            raise StoreError(f"platform store {self._where()}: migration failed: {e}") from e

    # -- writing -------------------------------------------------------------------------------
    def write(self, batch: Batch) -> list[bool]:
        with self._lock:
            try:
                return self._write(batch)
            except ROW_ERRORS:
                # one event the server refuses (e.g. a \\u0000 inside a string, which jsonb cannot hold)
                # or psycopg cannot send (a lone surrogate: UnicodeEncodeError) must not block the
                # stream: store one by one, the refused ones as invalid
                try:
                    return self._write_each(batch)
                except psycopg.Error as e:
                    raise StoreError(f"platform store {self._where()}: write failed: {e}") from e
            except psycopg.Error as e:
                if self._conn is not None and (self._conn.broken or self._conn.closed):
                    self._conn = None
                raise StoreError(f"platform store {self._where()}: write failed: {e}") from e

    def _write_each(self, batch: Batch) -> list[bool]:
        out = []
        for i, event in enumerate(batch.events):
            one = Batch(events=[event], received=[batch.received_at(i, time.time())])
            try:
                out += self._write(one)
            except ROW_ERRORS as e:
                self._refused(f"{event.get('id')}", e, event)
                out.append(False)
        for gw, payload in batch.presence:
            try:
                self._write(Batch(presence=[(gw, payload)]))
            except ROW_ERRORS as e:
                self._refused(f"presence of {gw}", e, payload)
        self._write(Batch(invalid=batch.invalid))  # text, NUL escaped: nothing left to refuse
        return out

    def _refused(self, what: str, error: Exception, obj) -> None:
        raw = json.dumps(obj, ensure_ascii=True).encode()  # \\ud800 escaped: text psycopg can send
        self._write(Batch(invalid=[(f"(stored as) {what}",
                                    f"refused by PostgreSQL: {type(error).__name__}: {error}", raw)]))

    def _write(self, batch: Batch) -> list[bool]:
        now = time.time()
        conn = self._connection()
        first: dict[tuple[str, int], int] = {}
        for i, event in enumerate(batch.events):
            first.setdefault((gateway_of(event), event["seq"]), i)
        order = sorted(first)
        dup_by_gw: dict[str, int] = {}
        inserted: set[tuple[str, int]] = set()
        # pipeline mode (psycopg 3.1+, libpq 14+): BEGIN + INSERT go in one round trip, the rest and
        # COMMIT in a second, where plain execution waits for each statement in turn
        with conn.pipeline(), conn.transaction():
            if order:
                rows = [batch.events[first[k]] for k in order]
                cols = ([e["id"] for e in rows], [k[0] for k in order], [k[1] for k in order],
                        [e["type"] for e in rows], [_utc(e.get("ts")) for e in rows],
                        [bool(e.get("replay")) for e in rows],
                        [_epoch(batch.received_at(first[k], now)) for k in order], [body(e) for e in rows])
                inserted = {(gw, seq) for gw, seq in conn.execute(INSERT_EVENTS, cols).fetchall()}
                gaps = [r for k in order if k in inserted for r in gap_rows(batch.events[first[k]])]
                if gaps:
                    with conn.cursor() as cur:
                        cur.executemany("INSERT INTO gaps VALUES (%s, %s, %s, %s, %s)", gaps)
            new = []
            for i, event in enumerate(batch.events):
                key = (gateway_of(event), event["seq"])
                is_new = key in inserted and first[key] == i
                new.append(is_new)
                if not is_new:
                    dup_by_gw[key[0]] = dup_by_gw.get(key[0], 0) + 1
            if dup_by_gw:
                gws = sorted(dup_by_gw)
                conn.execute("INSERT INTO counters SELECT * FROM unnest(%s::text[], %s::bigint[]) "
                             "ON CONFLICT (gateway) DO UPDATE SET duplicates = counters.duplicates + "
                             "excluded.duplicates", (gws, [dup_by_gw[g] for g in gws]))
            last = {gw: payload for gw, payload in batch.presence}
            if last:
                gws = sorted(last)
                conn.execute("INSERT INTO presence SELECT g, s, %s, b FROM unnest(%s::text[], %s::text[], "
                             "%s::jsonb[]) AS u(g, s, b) ON CONFLICT (gateway) DO UPDATE SET "
                             "state = excluded.state, received = excluded.received, body = excluded.body",
                             (_epoch(now), gws, [last[g].get("state") for g in gws], [body(last[g]) for g in gws]))
            if batch.invalid:
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO invalid VALUES (%s, %s, %s, %s)",
                                    [(_epoch(now), _text(t), _text(err), _text(raw.decode("utf-8", "replace")))
                                     for t, err, raw in batch.invalid])
        return new

    # -- reading -------------------------------------------------------------------------------
    def _rows(self, sql: str, args=()) -> list[tuple]:
        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction():
                    return [tuple(r) for r in conn.execute(sql, args).fetchall()]
            except psycopg.Error as e:
                if self._conn is not None and (self._conn.broken or self._conn.closed):
                    self._conn = None
                raise StoreError(f"platform store {self._where()}: {e}") from e

    def gateways(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT DISTINCT gateway FROM events ORDER BY gateway")]

    def counts(self, gateway: str):
        return self._rows("SELECT count(*), min(seq), max(seq) FROM events WHERE gateway = %s", (gateway,))[0]

    def missing(self, gateway: str) -> list[tuple[int, int]]:
        return self._rows(
            "SELECT seq + 1, nxt - 1 FROM (SELECT seq, lead(seq) OVER (ORDER BY seq) AS nxt "
            "FROM events WHERE gateway = %s) AS s WHERE nxt > seq + 1 ORDER BY seq", (gateway,))

    def declared(self, gateway: str) -> list[tuple[int, int]]:
        return self._rows("SELECT from_seq, to_seq FROM gaps WHERE gateway = %s ORDER BY from_seq", (gateway,))

    def duplicates(self) -> int:
        return int(self._rows("SELECT coalesce(sum(duplicates), 0) FROM counters")[0][0])

    def presence(self, gateway: str) -> dict | None:
        rows = self._rows("SELECT body FROM presence WHERE gateway = %s", (gateway,))
        return rows[0][0] if rows else None

    def invalid_count(self) -> int:
        return self._rows("SELECT count(*) FROM invalid")[0][0]

    def schema_version(self) -> int:
        return self._rows("SELECT max(version) FROM schema_version")[0][0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


__all__ = ["PostgresStore"]
