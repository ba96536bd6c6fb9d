"""The outbox as history: the newest events of a type and age, as the envelopes the platform gets,
each with `delivered` (has the platform got it?). One query for both readers: the daemon's own
connection (it holds the file exclusively while it runs: `gateway events` asks it over the control
socket) and a read-only connection when no daemon runs. Packed telemetry rows (compact.py) are built
into their single envelopes."""

from __future__ import annotations

import json
import sqlite3

from gateway.errors import OutboxError
from gateway.record import compact, envelope


def _contexts(db: sqlite3.Connection) -> dict:
    try:
        return {n: (gw, boot, bool(s)) for n, gw, boot, s in db.execute(
            "SELECT n, gateway, boot, clock_synced FROM contexts")}
    except sqlite3.OperationalError:
        return {}  # a file of earlier firmware: no packed rows


def select_history(db: sqlite3.Connection, since: float | None = None, types: list[str] | None = None,
                   n: int = 50, contexts: dict | None = None) -> list[dict]:
    """The newest `n` events (oldest first) at or after `since` (unix seconds), of `types`."""
    where, params = [], []
    if since is not None:
        where.append("ts >= ?")
        params.append(float(since))
    if types:
        where.append(f"type IN ({','.join('?' * len(types))})")
        params += [str(t) for t in types]
    sql = ("SELECT seq, type, ts, body, EXISTS (SELECT 1 FROM delivered d WHERE d.seq = events.seq) FROM events"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq DESC LIMIT ?")
    rows = db.execute(sql, (*params, max(0, int(n)))).fetchall()
    out = []
    for seq, type_, ts, body, delivered in reversed(rows):
        try:
            if compact.is_packed(body):
                if contexts is None:
                    contexts = _contexts(db)
                ctx, fields = compact.unpack(body)
                gw, boot, synced = contexts[ctx]
                ev = json.loads(envelope.build(gw, seq, ts, synced, boot, type_, fields))
            else:
                ev = json.loads(body)
        except (ValueError, KeyError, IndexError, TypeError, OutboxError):
            continue
        ev["delivered"] = bool(delivered)
        out.append(ev)
    return out
