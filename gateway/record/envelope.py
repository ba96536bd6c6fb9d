"""The event envelope of DESIGN.md, built once when an event is stored and published as stored.

Key order is fixed (`v`, `id`, `seq`, `ts`, `clock_synced`, `boot`, `type`, `replay`, then the type's
own fields) so the stored JSON can be published with only the `replay` flag flipped.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from gateway.errors import OutboxError

ENVELOPE_VERSION = 1
ALARM, FAULT, TELEMETRY, STATUS, AUDIT, GAP = "alarm", "fault", "telemetry", "status", "audit", "gap"
TYPES = (ALARM, FAULT, TELEMETRY, STATUS, AUDIT, GAP)

# Lower is sent first. A gap notice travels with status so the platform learns of an eviction before
# it sees the telemetry that follows it.
PRIORITY = {ALARM: 0, FAULT: 1, AUDIT: 2, STATUS: 2, GAP: 2, TELEMETRY: 3}
PRIORITY_NAMES = {0: "alarm", 1: "fault", 2: "audit_status", 3: "telemetry"}
# Committed with synchronous=FULL before add() returns: these must survive a power cut.
DURABLE_TYPES = frozenset((ALARM, FAULT))
ENVELOPE_KEYS = ("v", "id", "seq", "ts", "clock_synced", "boot", "type", "replay")

_REPLAY_FALSE = '"replay":false'
_REPLAY_TRUE = '"replay":true'


def iso_ms(ts: float) -> str:
    """UTC ISO 8601 with milliseconds and a Z: 2025-06-01T08:00:00.123Z."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def build(gateway_id: str, seq: int, ts: float, clock_synced: bool, boot: str, type_: str,
          fields: dict) -> str:
    """The envelope as compact JSON, `replay` false. Raises OutboxError for an unknown type or a
    field that would overwrite an envelope key (a programming error the caller must see)."""
    if type_ not in PRIORITY:
        raise OutboxError(f"unknown event type {type_!r}; expected one of {', '.join(TYPES)}")
    clash = set(fields).intersection(ENVELOPE_KEYS)
    if clash:
        raise OutboxError(f"{type_} event fields {sorted(clash)} collide with the envelope")
    event = {"v": ENVELOPE_VERSION, "id": f"{gateway_id}/{seq}", "seq": seq, "ts": iso_ms(ts),
             "clock_synced": bool(clock_synced), "boot": boot, "type": type_, "replay": False}
    event.update(fields)
    try:
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise OutboxError(f"{type_} event is not JSON-serialisable: {e}") from e


def as_replay(body: str) -> str:
    """The same event marked as sent from backlog. `replay` precedes every type field, so the first
    occurrence is the envelope's."""
    return body.replace(_REPLAY_FALSE, _REPLAY_TRUE, 1)
