"""The receiver's SQLite store: events unique by `id`, declared gaps, the last presence per gateway,
and the seq arithmetic that tells a loss from an eviction."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import sqlite_utils

SCHEMA = """
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


class Store:
    """Thread-safe (one lock): paho's network thread writes, the test or CLI thread reads."""

    def __init__(self, path: str = ":memory:"):
        self.db = sqlite_utils.Database(sqlite3.connect(path, check_same_thread=False))
        if path != ":memory:":
            self.db.enable_wal()
        self.db.conn.executescript(SCHEMA)
        self._lock = threading.Lock()

    def add_event(self, event: dict) -> bool:
        """Store an event; False when its id was already there (a duplicate)."""
        gateway, _, _ = event["id"].rpartition("/")
        with self._lock, self.db.atomic():
            cur = self.db.execute(
                "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (event["id"], gateway, event["seq"], event["type"], event.get("ts"), int(bool(event.get("replay"))),
                 time.time(), json.dumps(event, separators=(",", ":"))))
            if cur.rowcount == 0:
                self.db.execute("INSERT INTO counters VALUES (?, 1) ON CONFLICT(gateway) "
                                "DO UPDATE SET duplicates = duplicates + 1", (gateway,))
                return False
            if event["type"] == "gap":
                self.db.execute("INSERT INTO gaps VALUES (?, ?, ?, ?, ?)",
                                (gateway, event["from_seq"], event["to_seq"], event.get("count"), event["id"]))
            elif event["type"] == "fault" and isinstance(event.get("failed_seq"), int):
                # the broker refused that event for good (too large): declared, not lost
                self.db.execute("INSERT INTO gaps VALUES (?, ?, ?, 1, ?)",
                                (gateway, event["failed_seq"], event["failed_seq"], event["id"]))
            return True

    def set_presence(self, gateway: str, payload: dict) -> None:
        with self._lock, self.db.atomic():
            self.db.execute("INSERT OR REPLACE INTO presence VALUES (?, ?, ?, ?)",
                            (gateway, payload.get("state"), time.time(), json.dumps(payload)))

    def add_invalid(self, topic: str, error: str, body: bytes) -> None:
        with self._lock, self.db.atomic():
            self.db.execute("INSERT INTO invalid VALUES (?, ?, ?, ?)",
                            (time.time(), topic, error, body.decode("utf-8", "replace")))

    def gateways(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self.db.execute("SELECT DISTINCT gateway FROM events ORDER BY gateway")]

    def missing(self, gateway: str) -> list[tuple[int, int]]:
        """Seq ranges (inclusive) absent between the lowest and highest seq seen from `gateway`."""
        with self._lock:
            return [tuple(r) for r in self.db.execute(
                "SELECT seq + 1, nxt - 1 FROM (SELECT seq, LEAD(seq) OVER (ORDER BY seq) AS nxt "
                "FROM events WHERE gateway = ?) WHERE nxt > seq + 1", (gateway,))]

    def declared(self, gateway: str) -> list[tuple[int, int]]:
        with self._lock:
            return [tuple(r) for r in self.db.execute(
                "SELECT from_seq, to_seq FROM gaps WHERE gateway = ? ORDER BY from_seq", (gateway,))]

    def undeclared(self, gateway: str) -> list[tuple[int, int]]:
        """Missing ranges minus declared gap ranges: events that were lost, not evicted."""
        declared = self.declared(gateway)
        out = []
        for lo, hi in self.missing(gateway):
            pieces = [(lo, hi)]
            for dlo, dhi in declared:
                nxt = []
                for a, b in pieces:
                    if dhi < a or dlo > b:
                        nxt.append((a, b))
                        continue
                    if a < dlo:
                        nxt.append((a, dlo - 1))
                    if b > dhi:
                        nxt.append((dhi + 1, b))
                pieces = nxt
            out += pieces
        return out

    def duplicates(self) -> int:
        with self._lock:
            return self.db.execute("SELECT coalesce(sum(duplicates), 0) FROM counters").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self.db.close()
