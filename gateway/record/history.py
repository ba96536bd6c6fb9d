"""The outbox as history: the newest events of a type and age, as the envelopes the platform gets,
each with `delivered` (has the platform got it?). One query for both readers: the daemon's own
connection (it holds the file exclusively while it runs: `gateway events` asks it over the control
socket) and a read-only connection when no daemon runs."""

from __future__ import annotations

import json
import sqlite3


def select_history(db: sqlite3.Connection, since: float | None = None, types: list[str] | None = None,
                   n: int = 50) -> list[dict]:
    """The newest `n` events (oldest first) at or after `since` (unix seconds), of `types`."""
    where, params = [], []
    if since is not None:
        where.append("ts >= ?")
        params.append(float(since))
    if types:
        where.append(f"type IN ({','.join('?' * len(types))})")
        params += [str(t) for t in types]
    sql = ("SELECT body, EXISTS (SELECT 1 FROM delivered d WHERE d.seq = events.seq) FROM events"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq DESC LIMIT ?")
    rows = db.execute(sql, (*params, max(0, int(n)))).fetchall()
    out = []
    for body, delivered in reversed(rows):
        try:
            ev = json.loads(body)
        except ValueError:
            continue
        ev["delivered"] = bool(delivered)
        out.append(ev)
    return out
