"""The telemetry batch of contract 2: many readings in one MQTT message, one envelope.

A single event costs ~345 bytes on the wire (topic, the envelope, the field names); at 50 sensors a
gateway on a metered 4G SIM pays that 72,000 times a day for telemetry alone. A batch carries the
envelope once and each reading as the short array the outbox stores (gateway/record/compact.py):

    {"v":2,"gw":"pd-zhangjiang-001","seq":1000,"to_seq":1049,"ts":"2025-06-01T08:00:00.000Z",
     "clock_synced":true,"boot":"6f1c...","type":"telemetry","replay":false,
     "readings":[[0,0,"water-1","level","cm",0,0,60.001,60,0,21.4], [1,3,"water-2",...], ...]}

    reading = [dseq, dts_ms, sensor, point, unit, quality, reason, period_s, count, bad,
               last(, min, max, mean(, fault))]

Each reading keeps its own seq and id (`<gw>/<seq>`), so the platform de-duplicates and detects gaps
per reading as before. `dseq` and `dts_ms` step from the reading before (the first from the batch's
`seq` and `ts`, so it has 0, 0): the seqs of one batch are nearly consecutive and its readings close in
time, so the steps are a digit or two where offsets from the start would be five. Quality and reason
are codes (compact.QUALITIES, compact.REASONS); min, max and mean are left out when they equal `last`;
a whole number is written without its `.0` (the same JSON number). Alarms, faults, audit, status
and gap events are never batched (gateway/contract/telemetry-batch.json; docs/asyncapi.yaml).
`expand` turns a batch back into the single events.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from gateway.record import compact
from gateway.record.envelope import ENVELOPE_VERSION, TELEMETRY

BATCH_VERSION = 2
MAX_READINGS = 100  # per message: the envelope is then <2 bytes of each reading's share at 50 sensors
                   # (= maxItems of readings in gateway/contract/telemetry-batch.json)
MAX_SEQ = 2 ** 63 - 1  # a seq is a signed 64-bit integer on every store (= the schemas' maximum)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)
# what a reading's ts can be: the years 0001..9999 of datetime (beyond, iso_of_ms is an OverflowError)
_MIN_MS = (datetime(1, 1, 1, tzinfo=timezone.utc) - _EPOCH) // _MS
_MAX_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc) - _EPOCH) // _MS


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


def _short(v):
    """A whole float as an integer (10.0 -> 10: the same JSON number, two bytes less)."""
    return int(v) if isinstance(v, float) and v.is_integer() and abs(v) < 2 ** 53 else v


def _reading(dseq: int, dts: int, body: str) -> str:
    items = json.loads(body)[1:]
    items[5:] = [_short(v) for v in items[5:]]  # period_s, count, bad, last, min, max, mean (a fault stays text)
    return json.dumps([dseq, dts, *items], separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def build(rows, context, replay: bool) -> str:
    """The batch of packed telemetry `rows` (in seq order, one ctx) as JSON. `context(n)` gives
    (gateway id, boot, clock_synced) of the rows' ctx."""
    gw, boot, synced = context(compact.ctx_of(rows[0].body))
    ms = [ms_of(r.ts) for r in rows]
    head = json.dumps({"v": BATCH_VERSION, "gw": gw, "seq": rows[0].seq, "to_seq": rows[-1].seq,
                       "ts": iso_of_ms(ms[0]), "clock_synced": bool(synced), "boot": boot, "type": TELEMETRY,
                       "replay": bool(replay)}, separators=(",", ":"), ensure_ascii=False)
    # each reading's seq and ts as the step from the reading before (the first: from the batch's own)
    readings = ",".join(_reading(r.seq - (rows[i - 1].seq if i else r.seq), m - (ms[i - 1] if i else m), r.body)
                        for i, (r, m) in enumerate(zip(rows, ms)))
    return f'{head[:-1]},"readings":[{readings}]}}'


def is_batch(payload) -> bool:
    return isinstance(payload, dict) and payload.get("v") == BATCH_VERSION and "readings" in payload


def expand(batch: dict) -> list[dict]:
    """The single telemetry events a batch valid against its schema carries, in its order, in the form
    a gateway of contract 1 sends them (`v` 1, gateway/contract/telemetry.json): what the platform
    stores. ValueError: the batch contradicts its envelope (the first reading's dseq is not 0, a later
    one is 0, the last reading's seq is not `to_seq`), has more than MAX_READINGS, or steps out of
    range (a seq past MAX_SEQ, a ts outside the years 1..9999): no reading of it is taken."""
    gw, seq, ms = batch["gw"], batch["seq"], _ms_of_iso(batch["ts"])
    readings = batch["readings"]
    if len(readings) > MAX_READINGS:  # the schema says so too; expand may be given an unchecked batch
        raise ValueError(f"{len(readings)} readings in one batch (at most {MAX_READINGS})")
    out = []
    for i, reading in enumerate(readings):
        dseq, dts = reading[0], reading[1]
        # the seqs of a batch strictly increase from its seq: 0 for the first, >= 1 after (a dseq of 0
        # later would be the same seq twice, the second silently a "duplicate" with other values)
        if (dseq != 0) if i == 0 else (dseq < 1):
            raise ValueError(f"reading {i}: dseq {dseq} ({'the first is 0' if i == 0 else 'must be >= 1'})")
        seq, ms = seq + dseq, ms + dts
        if seq > MAX_SEQ:
            raise ValueError(f"reading {i}: seq {seq} past {MAX_SEQ}")
        if not _MIN_MS <= ms <= _MAX_MS:
            raise ValueError(f"reading {i}: ts {ms} ms from 1970 is outside the years 1..9999")
        event = {"v": ENVELOPE_VERSION, "id": f"{gw}/{seq}", "seq": seq, "ts": iso_of_ms(ms),
                 "clock_synced": batch["clock_synced"], "boot": batch["boot"], "type": TELEMETRY,
                 "replay": batch["replay"]}
        event.update(compact.fields_of(reading[2:]))
        out.append(event)
    if seq != batch["to_seq"]:
        raise ValueError(f"the last reading's seq is {seq}, to_seq says {batch['to_seq']}")
    return out


def _ms_of_iso(text: str) -> int:
    dt = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // _MS


