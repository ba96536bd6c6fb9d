"""AlarmBook semantics with explicit monotonic timestamps: thresholds, hysteresis,
debounce, rates, state codes, latch, faults, lifecycle and snapshots."""

import json

import pytest

from gateway.config.model import RateSpec, Rule
from gateway.decide import AlarmBook, UnknownAlarm
from gateway.errors import ConfigError, GatewayError
from gateway.reading import Reading

WATER = Rule("garage-b2-water", "level", above={"blue": 5, "yellow": 15, "orange": 25, "red": 40},
             hysteresis=2, debounce_s=3, sound=("garage-siren",))
HYDRANT = Rule("hydrant-3", "pressure", below={"yellow": 0.14, "red": 0.10},
               drop=RateSpec(0.05, 5, "orange"))
SMOKE = Rule("stair-2-smoke", "status", equals={"red": (1,)}, latch=True, sound=("garage-siren",))


def rd(rule, value, t, quality="good", unit="cm", fault=None):
    return Reading(rule.sensor, rule.point, value, unit, quality, ts=1_700_000_000 + t, mono=t, fault=fault)


def run(book, rule, samples, **kw):
    """Feed (t, value) pairs; return [(t, kind, level)] of every transition."""
    out = []
    for t, v in samples:
        out += [(t, x.kind, x.level) for x in book.feed(rd(rule, v, t, **kw))]
    return out


def test_raise_escalate_deescalate_clear_with_hysteresis_and_debounce():
    book = AlarmBook([WATER])
    # 1 s polls. 6 cm from t=0: blue after 3 s of debounce.
    assert run(book, WATER, [(0, 3), (1, 6), (2, 6), (3, 6)]) == []
    assert run(book, WATER, [(4, 6)]) == [(4, "raised", "blue")]
    # Straight to 30 cm: orange once 30 has held for 3 s.
    assert run(book, WATER, [(5, 30), (6, 30), (7, 30)]) == []
    assert run(book, WATER, [(8, 30)]) == [(8, "escalated", "orange")]
    # 24 cm is below 25 but within hysteresis (25 - 2): stays orange however long.
    assert run(book, WATER, [(t, 24) for t in range(9, 20)]) == []
    # 22 cm is past the hysteresis: yellow after the debounce.
    assert run(book, WATER, [(20, 22), (21, 22), (22, 22)]) == []
    assert run(book, WATER, [(23, 22)]) == [(23, "deescalated", "yellow")]
    # 4 cm is below blue's 5 but clears only at < 5 - 2.
    assert run(book, WATER, [(t, 4) for t in range(24, 35)]) == [(27, "deescalated", "blue")]
    assert run(book, WATER, [(35, 2.9), (36, 2.9), (37, 2.9)]) == []
    [t] = book.feed(rd(WATER, 2.9, 38))
    assert (t.kind, t.level, t.previous, t.state, t.alarm_id) == ("cleared", None, "blue", "cleared",
                                                                  "garage-b2-water.level#1")
    assert book.active() == []
    # The next flood is a new alarm with the next id.
    run(book, WATER, [(t, 16) for t in range(40, 44)])
    assert [a.id for a in book.active()] == ["garage-b2-water.level#2"]


def test_debounce_rejects_a_one_sample_spike():
    book = AlarmBook([WATER])
    assert run(book, WATER, [(0, 3), (1, 3), (2, 45), (3, 3), (4, 3), (5, 3), (6, 3), (7, 3)]) == []
    assert book.tick(8.0) == []


def test_tick_ends_a_debounce_between_slow_polls():
    book = AlarmBook([WATER])  # debounce 3 s, polled every 10 s
    assert run(book, WATER, [(0, 30)]) == []
    assert book.tick(2.9) == []
    assert [(t.kind, t.level) for t in book.tick(3.0)] == [("raised", "orange")]


def test_rise_rule_water_up_5_cm_within_600_s():
    rule = Rule("pit", "level", above={"red": 100}, rise=RateSpec(5, 600, "yellow"), debounce_s=0)
    book = AlarmBook([rule])
    # A slow rise (4 cm in 10 min) is not an alarm; 5 cm within 10 min is.
    slow = [(t, 10 + 4 * t / 600) for t in range(0, 601, 60)]
    assert run(book, rule, slow) == []
    book2 = AlarmBook([rule])
    fast = [(t, 10 + t / 60) for t in range(0, 301, 30)]  # 1 cm/min
    assert run(book2, rule, fast) == [(300, "raised", "yellow")]


def test_hydrant_drop_then_low_pressure():
    book = AlarmBook([HYDRANT])
    # Mains at 0.30 MPa; somebody opens the hydrant: -0.06 MPa within 2 s.
    out = run(book, HYDRANT, [(0, 0.30), (1, 0.30), (2, 0.27), (3, 0.24)], unit="MPa")
    assert out == [(3, "raised", "orange")]
    a = book.active()[0]
    assert (a.value, a.unit) == (0.24, "MPa")
    # Steady afterwards: the drop leaves the 5 s window; 0.24 is a normal pressure.
    # At t=7 the 0.30 of t=1 is older than 5 s.
    assert run(book, HYDRANT, [(t, 0.24) for t in range(4, 10)], unit="MPa") == [(7, "cleared", None)]
    # Below 0.10 MPa is red by threshold.
    assert run(book, HYDRANT, [(20, 0.09)], unit="MPa") == [(20, "raised", "red")]


def test_smoke_latches_until_acknowledged():
    book = AlarmBook([SMOKE])
    assert run(book, SMOKE, [(0, 0), (1, 1)], unit="") == [(1, "raised", "red")]
    # The smoke goes: the alarm stays.
    assert run(book, SMOKE, [(2, 0), (3, 0), (30, 0)], unit="") == []
    assert book.active()[0].level == "red"
    [ack, cleared] = book.acknowledge("stair-2-smoke.status", by="cli", now_mono=31)
    assert (ack.kind, ack.by, ack.state) == ("acknowledged", "cli", "acknowledged")
    assert (cleared.kind, cleared.previous) == ("cleared", "red")
    assert book.active() == []


def test_ack_while_smoke_is_still_there_keeps_it_active_then_clears():
    book = AlarmBook([SMOKE])
    run(book, SMOKE, [(0, 1)], unit="")
    [ack] = book.acknowledge(None, by="button:ack", now_mono=1)
    assert ack.kind == "acknowledged"
    a = book.active()[0]
    assert (a.acknowledged, a.silenced, a.state) == (True, True, "acknowledged")
    assert run(book, SMOKE, [(2, 1)], unit="") == []
    assert run(book, SMOKE, [(3, 0)], unit="") == [(3, "cleared", None)]


def test_fault_neither_raises_nor_clears_and_is_reported_once_per_change():
    book = AlarmBook([WATER])
    # A timeout is not a value: no alarm however long it lasts.
    out = run(book, WATER, [(0, None), (1, None), (2, None), (3, None), (4, None)], quality="fault", fault="timeout")
    assert out == [(0, "fault", None)]
    run(book, WATER, [(t, 30) for t in range(5, 10)])
    assert [a.level for a in book.active()] == ["orange"]
    # Faulted, then stale, during an active alarm: reported, alarm untouched.
    t = book.feed(rd(WATER, None, 10, quality="fault", fault="crc"))
    assert [(x.kind, x.state, x.detail, x.alarm_id, x.level) for x in t] == [
        ("fault", "fault", "crc", "garage-b2-water.level#1", "orange")]
    assert run(book, WATER, [(11, None), (12, None)], quality="fault") == []
    assert run(book, WATER, [(13, None)], quality="stale") == [(13, "fault", "orange")]
    assert book.tick(30.0) == []
    assert [a.level for a in book.active()] == ["orange"]
    # Back with a calm value: recovered at once, cleared only after a fresh debounce.
    assert run(book, WATER, [(40, 1)]) == [(40, "recovered", "orange")]
    assert run(book, WATER, [(41, 1), (42, 1)]) == []
    assert run(book, WATER, [(43, 1)]) == [(43, "cleared", None)]


def test_fault_does_not_feed_rate_windows_nor_fake_a_drop():
    book = AlarmBook([HYDRANT])
    out = run(book, HYDRANT, [(0, 0.3), (1, 0.3)], unit="MPa")
    out += run(book, HYDRANT, [(2, 0.0), (3, 0.0)], quality="fault", unit="MPa")  # a 0 from a timeout
    out += run(book, HYDRANT, [(4, 0.3)], unit="MPa")
    assert out == [(2, "fault", None), (4, "recovered", None)]


def test_good_reading_without_a_number_is_treated_as_a_fault():
    book = AlarmBook([WATER])
    [t] = book.feed(rd(WATER, None, 0))
    assert (t.kind, t.state) == ("fault", "fault")
    assert book.active() == []


def test_silence_then_escalation_sounds_again():
    book = AlarmBook([WATER])
    run(book, WATER, [(t, 16) for t in range(0, 4)])
    [s] = book.silence(by="cli", now_mono=4)
    assert (s.kind, s.state, s.by, s.level) == ("silenced", "silenced", "cli", "yellow")
    assert book.silence(now_mono=4.5) == []  # already silent: no second event
    run(book, WATER, [(t, 30) for t in range(5, 9)])
    a = book.active()[0]
    assert (a.level, a.silenced, a.state) == ("orange", False, "active")


def test_unknown_alarm_is_an_error_naming_the_active_ones():
    book = AlarmBook([WATER])
    run(book, WATER, [(t, 16) for t in range(0, 4)])
    with pytest.raises(UnknownAlarm, match="garage-b2-water.level#1") as e:
        book.acknowledge("nope")
    assert isinstance(e.value, GatewayError)


def test_two_rules_on_one_point_are_rejected():
    with pytest.raises(ConfigError, match="second rule"):
        AlarmBook([WATER, WATER])


def test_snapshot_is_json_and_restores_flags_and_counters():
    book = AlarmBook([WATER, SMOKE])
    run(book, WATER, [(t, 45) for t in range(0, 4)])
    run(book, SMOKE, [(4, 1)], unit="")
    book.silence("garage-b2-water.level#1", by="button:silence-button", now_mono=5)
    snap = json.loads(json.dumps(book.snapshot()))
    fresh = AlarmBook([WATER, SMOKE])
    assert fresh.restore(snap) == []
    got = {a.id: (a.level, a.silenced, a.acknowledged, a.silenced_by) for a in fresh.active()}
    assert got == {"garage-b2-water.level#1": ("red", True, False, "button:silence-button"),
                   "stair-2-smoke.status#1": ("red", False, False, None)}
    # The id counter carries on after the restart.
    fresh.acknowledge("stair-2-smoke.status", now_mono=100)
    run(fresh, SMOKE, [(101, 0)], unit="")
    assert fresh.get("stair-2-smoke.status") is None
    run(fresh, SMOKE, [(102, 1)], unit="")
    assert fresh.get("stair-2-smoke.status").id == "stair-2-smoke.status#2"


def test_restore_skips_rules_that_are_gone():
    book = AlarmBook([WATER])
    snap = {"v": 1, "alarms": [{"id": "old.point#1", "rule": "old.point", "level": "red"}]}
    [msg] = book.restore(snap)
    assert "no longer configured" in msg and book.active() == []
