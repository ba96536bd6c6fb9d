"""Telemetry as stored in the outbox: the aggregator's fields as a short JSON array, not the envelope.

A telemetry row is ~9 in 10 rows of the outbox (145,000 a day at 50 sensors with 10 moving) and the
SD card's bytes follow the row size: the envelope (`v`, `id`, `ts` as text, `clock_synced`, the 36-byte
`boot`, `type`, `replay`) and the field names are most of a 350-byte JSON event. Stored here instead:

    [ctx, sensor, point, unit, quality, reason, period_s, count, bad, last(, min, max, mean(, fault))]

- `ctx` numbers the (gateway id, boot, clock_synced) the row was recorded under (the outbox's
  `contexts` table); seq, type and ts are columns of the row already.
- quality and reason are codes: 0 good / 1 stale / 2 fault, 0 period / 1 deadband / 2 quality.
- min, max and mean are left out when they equal `last` (a still value: most rows); fault only when set.

The envelope is built again when a row is read (`gateway events`, the centres' cursors) and the MQTT
uplink publishes these arrays nearly as they are, many per message (gateway/record/batch.py). Fields
of any other shape (not the aggregator's) are stored as a full envelope, as before.
"""

from __future__ import annotations

import json
import math

QUALITIES = ("good", "stale", "fault")
REASONS = ("period", "deadband", "quality")
FIELDS = ("sensor", "point", "unit", "quality", "reason", "period_s", "count", "bad", "min", "max", "mean", "last")
_KEYS = frozenset(FIELDS)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _value(v) -> bool:
    return v is None or _number(v)


def _same(a, b) -> bool:
    return a == b and type(a) is type(b)


def packable(fields: dict) -> bool:
    """True when `fields` are a telemetry summary of the aggregator's shape (gateway/record/telemetry.py)."""
    keys = set(fields)
    if keys != _KEYS and keys != _KEYS | {"fault"}:
        return False
    f = fields
    return (all(isinstance(f[k], str) for k in ("sensor", "point", "unit")) and f["quality"] in QUALITIES
            and f["reason"] in REASONS and _number(f["period_s"])
            and all(isinstance(f[k], int) and not isinstance(f[k], bool) and f[k] >= 0 for k in ("count", "bad"))
            and all(_value(f[k]) for k in ("min", "max", "mean", "last"))
            and (isinstance(f.get("fault"), str) or "fault" not in f))


def pack(ctx: int, fields: dict) -> str:
    """The stored form of `fields` (packable(fields) must be true)."""
    f = fields
    out = [ctx, f["sensor"], f["point"], f["unit"], QUALITIES.index(f["quality"]), REASONS.index(f["reason"]),
           f["period_s"], f["count"], f["bad"], f["last"]]
    tail = [f["min"], f["max"], f["mean"]]
    if "fault" in f:
        out += tail + [f["fault"]]
    elif not all(_same(v, f["last"]) for v in tail):
        out += tail
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def is_packed(body: str) -> bool:
    return body[:1] == "["


def ctx_of(body: str) -> int:
    return int(body[1:body.index(",")])


def after_ctx(body: str) -> str:
    """`sensor, ..., last...]`: the array without its ctx (what a batch reading continues with)."""
    return body[body.index(",") + 1:]


def fields_of(items: list) -> dict:
    """The telemetry fields, in the aggregator's key order, from an array without its leading ctx (or
    dseq/dts): [sensor, point, unit, quality, reason, period_s, count, bad, last(, min, max, mean(, fault))]."""
    sensor, point, unit, q, r, period_s, count, bad, last = items[:9]
    lo, hi, mean = items[9:12] if len(items) >= 12 else (last, last, last)
    out = {"sensor": sensor, "point": point, "unit": unit, "quality": QUALITIES[q], "reason": REASONS[r],
           "period_s": period_s, "count": count, "bad": bad, "min": lo, "max": hi, "mean": mean, "last": last}
    if len(items) >= 13:
        out["fault"] = items[12]
    return out


def unpack(body: str) -> tuple[int, dict]:
    """(ctx, fields) of a stored row."""
    items = json.loads(body)
    return items[0], fields_of(items[1:])
