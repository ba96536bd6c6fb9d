"""Properties of the AlarmBook over random water-level series (hypothesis)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.model import Rule
from gateway.decide import AlarmBook
from gateway.reading import Reading

TH = {"blue": 5, "yellow": 15, "orange": 25, "red": 40}
RULE = Rule("w", "level", above=TH, hysteresis=2, debounce_s=3)
samples = st.lists(st.one_of(st.floats(0, 50), st.none()), min_size=1, max_size=80)


def play(values):
    book = AlarmBook([RULE])
    out = []
    for t, v in enumerate(values):
        q = "good" if v is not None else "fault"
        out += [(t, x) for x in book.feed(Reading("w", "level", v, "cm", q, float(t), float(t)))]
    return out


@settings(max_examples=300, deadline=None)
@given(samples)
def test_a_level_is_taken_only_after_3_s_of_it_and_left_only_past_hysteresis(values):
    for t, x in play(values):
        window = values[max(0, t - 3):t + 1]
        if x.kind in ("raised", "escalated"):
            # every sample of the last 3 s (4 samples, 1 s apart) asked for at least this level
            assert len(window) == 4 and all(v is not None and v >= TH[x.level] for v in window)
        if x.kind in ("deescalated", "cleared"):
            # nothing in the last 3 s was still inside the left level's band
            assert len(window) == 4 and all(v is not None and v <= TH[x.previous] - 2 for v in window)


@settings(max_examples=300, deadline=None)
@given(samples)
def test_faults_only_ever_produce_fault_events(values):
    for t, x in play(values):
        if values[t] is None:
            assert x.kind == "fault"
        else:
            assert x.kind != "fault"
