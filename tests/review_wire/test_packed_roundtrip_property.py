"""Review of the wire merge (review-wire): a packed row reads back as recorded, and a batch expands
at the receiver to the events recorded (seq, ts, values), for arbitrary aggregator-shaped fields.
Property-based (hypothesis). Expected to PASS: evidence for the report's 'sound' list."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.platform.receiver import decode_events
from gateway.platform.schemas import Contract
from gateway.record import Event, Outbox, batch, compact, envelope

GW = "gw-\u6c34/\"x\",[1]"  # a gateway id with a slash, quotes, a comma and brackets
BOOT = "boot-1"
CONTRACT = Contract()

text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=300)
number = st.one_of(st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=False, allow_infinity=False))
value = st.one_of(st.none(), number)


@st.composite
def fields(draw):
    f = {"sensor": draw(text), "point": draw(text), "unit": draw(st.text(max_size=20)),
         "quality": draw(st.sampled_from(compact.QUALITIES)), "reason": draw(st.sampled_from(compact.REASONS)),
         "period_s": draw(st.one_of(st.integers(0, 10 ** 6), st.floats(0, 1e6))),
         "count": draw(st.integers(0, 10 ** 6)), "bad": draw(st.integers(0, 10 ** 6))}
    last = draw(value)
    same = draw(st.booleans())
    for k in ("min", "max", "mean"):
        f[k] = last if same else draw(value)
    f["last"] = last
    if draw(st.booleans()):
        f["fault"] = draw(st.text(max_size=50))
    return f


def strict(a, b):
    """Equal as JSON values, and a float stays a float (except -0.0 == 0.0, which JSON keeps but
    compact's `_same` treats as equal)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(strict, a, b))
    return a == b and type(a) is type(b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(fields(), st.floats(0, 4e9), st.booleans()), min_size=1, max_size=40))
def test_packed_rows_and_batches_read_back_as_recorded(tmp_path_factory, items):
    ob = Outbox(tmp_path_factory.mktemp("o") / "o.db", GW, clock_synced=lambda: True, boot=BOOT)
    try:
        events = []
        for f, ts, with_alarm in items:
            if with_alarm:  # other events between telemetry: the batch's seqs have holes
                events.append(Event("alarm", {"sensor": "s", "level": "red"}, ts))
            events.append(Event("telemetry", f, ts))
        seqs = ob.add_many(events)
        want = {s: json.loads(envelope.build(GW, s, e.ts, True, BOOT, e.type, e.fields))
                for s, e in zip(seqs, events) if e.type == "telemetry"}
        rows = [r for r in ob.live(1, 10_000) if r.type == "telemetry"]
        assert [r.seq for r in rows] == sorted(want)
        for r in rows:
            assert compact.is_packed(r.body)
            got = json.loads(ob.envelope_of(r))
            assert strict(got, want[r.seq]) or got == want[r.seq], (got, want[r.seq])
        payload = json.loads(batch.build(rows, ob.context, replay=False))
        got = decode_events(CONTRACT, GW, "telemetry", payload)
        assert [e["seq"] for e in got] == [r.seq for r in rows]
        for e in got:
            w = want[e["seq"]]
            assert e == w, (e, w)  # values equal as JSON numbers (10.0 goes as 10)
            for k, v in w.items():
                if isinstance(v, float) and not v.is_integer():
                    assert isinstance(e[k], float) and (e[k] == v or math.isnan(v))
            assert not CONTRACT.errors("telemetry", e)
    finally:
        ob.close()
