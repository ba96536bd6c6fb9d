"""The outbox's reading side, mixed into Outbox: the rows the uplink may publish (live and backlog),
packed telemetry rows built into their envelopes, the figures `status` shows (recomputed by the writer
after its writes, so `stats()` never touches the file) and `gateway events`' history."""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import NamedTuple

from gateway.errors import OutboxError
from gateway.record import compact, envelope
from gateway.record.outbox_file import PENDING_ROW as _PENDING

log = logging.getLogger("gateway.record.outbox")


class Pending(NamedTuple):
    """A row the uplink may publish."""
    seq: int
    priority: int
    type: str
    ts: float
    body: str


class Reads:
    """Mixed into Outbox: runs under its lock, on its one connection."""

    def live(self, from_seq: int, limit: int) -> list[Pending]:
        """Pending events with seq >= from_seq (recorded since the uplink connected), by priority."""
        # NOT INDEXED: a rowid range scan of the few live rows beats walking the pending index
        # past a long backlog.
        return self._select("SELECT seq, priority, type, ts, body FROM events NOT INDEXED "
                            f"WHERE seq >= ? AND {_PENDING} ORDER BY priority, seq LIMIT ?",
                            (from_seq, limit))

    def backlog(self, below_seq: int, after: tuple[int, int], limit: int) -> list[Pending]:
        """Pending events with seq < below_seq in (priority, seq) order, strictly after `after`."""
        return self._select("SELECT seq, priority, type, ts, body FROM events "
                            f"WHERE {_PENDING} AND (priority, seq) > (?, ?) AND seq < ? "
                            "ORDER BY priority, seq LIMIT ?", (*after, below_seq, limit))

    def context(self, n: int) -> tuple[str, str, bool]:
        """(gateway id, boot, clock_synced) of a packed row's ctx."""
        return self._contexts[n]

    def envelope_of(self, row: Pending) -> str:
        """The row's single event envelope as JSON (`replay` false): a packed telemetry row is built
        into one (as `gateway events` and the centres read it), any other row is stored as one."""
        if not compact.is_packed(row.body):
            return row.body
        ctx, fields = compact.unpack(row.body)
        gw, boot, synced = self._contexts[ctx]
        return envelope.build(gw, row.seq, row.ts, synced, boot, row.type, fields)

    def _select(self, sql: str, params: tuple) -> list[Pending]:
        with self._lock:
            if self.db is None:
                return []  # nothing readable: the uplink runs on and finds rows once it reopens
            try:
                return [Pending(*r) for r in self.db.execute(sql, params)]
            except sqlite3.Error as e:
                raise self._error("read", e) from e

    # -- reporting -----------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Recompute what stats() shows; by the writer, after its writes (stats never touches the file)."""
        try:
            oldest, by_class = None, {}
            for prio, name in envelope.PRIORITY_NAMES.items():
                row = self.db.execute(f"SELECT ts FROM events WHERE {_PENDING} AND priority = ? "
                                      "ORDER BY seq LIMIT 1", (prio,)).fetchone()
                by_class[name] = row[0] if row else None
                if row and (oldest is None or row[0] < oldest):
                    oldest = row[0]
            self._oldest, self._oldest_by_class, self._used = oldest, by_class, self.used_bytes()
        except sqlite3.Error as e:
            log.warning("outbox %s: reading its figures: %s", self.path, e)

    def stats(self) -> dict:
        """Depth per priority, age of the oldest pending event, counters. Never waits for the disk or
        for a write in progress: figures as of the last write."""
        oldest = self._oldest
        return {
            "state": self.state,
            "depth": {envelope.PRIORITY_NAMES[p]: n for p, n in dict(self._depth).items()},
            "pending": sum(self._depth.values()),
            "rows": self._rows,
            "mb": round(self._used / 1e6, 3),
            "oldest_pending_age_s": None if oldest is None else round(max(0.0, time.time() - oldest), 3),
            "oldest_pending_age_s_by_class": {n: None if t is None else round(max(0.0, time.time() - t), 1)
                                              for n, t in dict(self._oldest_by_class).items()},
            "last_delivered_ts": self.last_delivered_ts,
            "next_seq": self._next_seq,
            "evicted": self.evicted,
            "gaps_merged": self.gaps_merged,
            "failed": self.failed,
            "write_errors": self.write_errors,
            "last_error": self.last_error,
            "lost": self.lost,
            "moved_aside": list(self.moved_aside),
            "seq_mark": self.mark.stats() if self.mark is not None else None,
        }

    def history(self, since: float | None = None, types: list[str] | None = None, n: int = 50) -> list[dict]:
        """`gateway events`' history (gateway.record.history), through this connection."""
        from gateway.record.history import select_history

        with self._lock:
            if self.db is None:
                raise OutboxError(f"outbox {self.path} is {self.state}")
            try:
                return select_history(self.db.conn, since, types, n, self._contexts)
            except sqlite3.Error as e:
                raise self._error("history", e) from e
