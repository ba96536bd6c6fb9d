"""The outbox's bounds (`[outbox] max_rows`, `max_mb`): when full, delivered rows go first, then the
OLDEST pending telemetry in chunks, and one `gap` event names the evicted range. Undelivered
eviction notices are merged into the newest one (their ranges, counts and own seqs), so in a long
outage gap notices cannot grow past the bound themselves. Counters change only after the commit:
an eviction that rolls back changed nothing. Alarms, faults, audit and status are never evicted."""

from __future__ import annotations

import logging
import sqlite3
import time

from gateway.record import envelope
from gateway.record.outbox_file import PENDING_ROW

log = logging.getLogger("gateway.record.outbox")
TELEMETRY_PRIORITY = envelope.PRIORITY[envelope.TELEMETRY]
GAP_PRIORITY = envelope.PRIORITY[envelope.GAP]


class Bounds:
    """Mixed into Outbox: runs on the writer's thread, inside its lock."""

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
        if self.housekeep(keep_delivered_s=0) and not self._over():
            return
        need = max(self._over() + 1, self._evict_chunk)  # +1: room for the gap event itself
        seq, now = self._next_seq, time.time()
        try:
            with self.db.atomic():
                gone = [r[0] for r in self.db.execute(
                    f"DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE {PENDING_ROW} AND priority = ? "
                    "ORDER BY seq LIMIT ?) RETURNING seq", (TELEMETRY_PRIORITY, need)).fetchall()]
                merged = []
                if gone:
                    # earlier undelivered eviction notices fold into this one: their ranges, their counts
                    # and their own seqs, so gap notices cannot grow past the bound in a long outage
                    merged = self.db.execute(
                        f"DELETE FROM events WHERE {PENDING_ROW} AND type = 'gap' AND "
                        "json_extract(body, '$.reason') = 'evicted' RETURNING seq, json_extract(body, '$.from_seq'), "
                        "json_extract(body, '$.to_seq'), json_extract(body, '$.count')").fetchall()
                    lo = min([*gone, *(m[1] for m in merged)])
                    hi = max([*gone, *(m[2] for m in merged), *(m[0] for m in merged)])
                    count = len(gone) + sum(m[3] for m in merged) + len(merged)
                    fields = {"from_seq": lo, "to_seq": hi, "count": count, "reason": "evicted"}
                    body = envelope.build(self.gateway_id, seq, now, self._clock_synced(), self.boot,
                                          envelope.GAP, fields)
                    self.db.execute("INSERT INTO events (seq, priority, type, ts, state, body) "
                                    "VALUES (?, ?, ?, ?, 0, ?)", (seq, GAP_PRIORITY, envelope.GAP, now, body))
        except sqlite3.Error as e:
            raise self._error("evict", e) from e
        # counters only after the commit: a rolled-back eviction changed nothing
        if gone:
            self._next_seq = seq + 1
            self._rows += 1 - len(gone) - len(merged)
            self._depth[TELEMETRY_PRIORITY] -= len(gone)
            self._depth[GAP_PRIORITY] += 1 - len(merged)
            self.evicted += len(gone)
            self.gaps_merged += len(merged)
            self.version += 1
            log.warning("outbox full (%d rows, %.1f MB): evicted %d oldest telemetry events, seq %d..%d",
                        self._rows, self.used_bytes() / 1e6, len(gone), min(gone), max(gone))
        elif not self._warned_unevictable:
            self._warned_unevictable = True
            log.error("outbox over its bound (%d rows, %.1f MB) with no telemetry left to evict: "
                      "alarms and faults are kept anyway", self._rows, self.used_bytes() / 1e6)
