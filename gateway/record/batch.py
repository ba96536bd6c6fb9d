"""The telemetry batch of contract 2: many readings in one MQTT message, one envelope.

A single event costs ~345 bytes on the wire (topic, the envelope, the field names); at 50 sensors a
gateway on a metered 4G SIM pays that 72,000 times a day for telemetry alone. A batch carries the
envelope once and each reading as the short array the outbox stores (gateway/record/compact.py):

    {"v":2,"gw":"pd-zhangjiang-001","seq":1000,"to_seq":1049,"ts":"2025-06-01T08:00:00.000Z",
     "clock_synced":true,"boot":"6f1c...","type":"telemetry","replay":false,
     "readings":[[0,0,"water-1","level","cm",0,0,60.0,60,0,21.4], [1,3,"water-2",...], ...]}

    reading = [dseq, dts_ms, sensor, point, unit, quality, reason, period_s, count, bad, last(, min, max, mean(, fault))]

Each reading keeps its own seq (`seq + dseq`) and id (`<gw>/<seq>`), so the platform de-duplicates and
detects gaps per reading as before; `ts` of a reading is the batch's `ts` plus `dts_ms`. Quality and
reason are codes (compact.QUALITIES, compact.REASONS); min, max and mean are left out when they equal
`last`. Alarms, faults, audit, status and gap events are never batched (gateway/contract/
telemetry-batch.json; docs/asyncapi.yaml). `expand` turns a batch back into the single events.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from gateway.record import compact
from gateway.record.envelope import ENVELOPE_VERSION, TELEMETRY

BATCH_VERSION = 2
MAX_READINGS = 100  # per message: the envelope is then <2 bytes of each reading's share at 50 sensors
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def ms_of(ts: float) -> int:
    """Unix milliseconds exactly as envelope.iso_ms writes `ts` (truncated, not rounded)."""
    return (datetime.fromtimestamp(ts, timezone.utc) - _EPOCH) // _MS


def iso_of_ms(ms: int) -> str:
    return (_EPOCH + ms * _MS).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def batchable(row) -> bool:
    """A packed telemetry row (rows of earlier firmware, and any other event, go one per message)."""
    return row.type == TELEMETRY and compact.is_packed(row.body)


def reading_bytes(row) -> int:
    """About what the row adds to a batch (its array, the seq and ts offsets, a comma)."""
    return len(row.body) + 12


def build(rows, context, replay: bool) -> str:
    """The batch of packed telemetry `rows` (in seq order, one ctx) as JSON. `context(n)` gives
    (gateway id, boot, clock_synced) of the rows' ctx."""
    gw, boot, synced = context(compact.ctx_of(rows[0].body))
    ms = [ms_of(r.ts) for r in rows]
    base, seq0 = min(ms), rows[0].seq
    head = json.dumps({"v": BATCH_VERSION, "gw": gw, "seq": seq0, "to_seq": rows[-1].seq, "ts": iso_of_ms(base),
                       "clock_synced": bool(synced), "boot": boot, "type": TELEMETRY, "replay": bool(replay)},
                      separators=(",", ":"), ensure_ascii=False)
    readings = ",".join(f"[{r.seq - seq0},{m - base},{compact.after_ctx(r.body)}" for r, m in zip(rows, ms))
    return f'{head[:-1]},"readings":[{readings}]}}'


def is_batch(payload) -> bool:
    return isinstance(payload, dict) and payload.get("v") == BATCH_VERSION and "readings" in payload


def expand(batch: dict) -> list[dict]:
    """The single telemetry events a valid batch carries, in its order, in the form a gateway of
    contract 1 sends them (`v` 1, gateway/contract/telemetry.json): what the platform stores."""
    gw, seq0 = batch["gw"], batch["seq"]
    base = _ms_of_iso(batch["ts"])
    out = []
    for reading in batch["readings"]:
        seq = seq0 + reading[0]
        event = {"v": ENVELOPE_VERSION, "id": f"{gw}/{seq}", "seq": seq, "ts": iso_of_ms(base + reading[1]),
                 "clock_synced": batch["clock_synced"], "boot": batch["boot"], "type": TELEMETRY,
                 "replay": batch["replay"]}
        event.update(compact.fields_of(reading[2:]))
        out.append(event)
    return out


def _ms_of_iso(text: str) -> int:
    dt = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // _MS


