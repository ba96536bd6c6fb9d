"""Which rule and which of its conditions raised an alarm (issue 10 item 6): the cause is carried on
the Alarm (status), the Transition (event and log line), with the unit and the profile's state label."""

from gateway.config.model import RateSpec, Rule
from gateway.decide import AlarmBook
from gateway.reading import Reading
from gateway.record.events import event_of

WATER = Rule("garage-b2-water", "level", above={"yellow": 15, "red": 40}, hysteresis=2,
             rise=RateSpec(5, 600, "yellow"))
HYDRANT = Rule("hydrant-3", "pressure", below={"yellow": 0.14, "red": 0.10}, drop=RateSpec(0.05, 5, "orange"))
SMOKE = Rule("stair-1-smoke", "status", equals={"red": (1,)}, latch=True)


def rd(rule, value, t, unit=""):
    return Reading(rule.sensor, rule.point, value, unit, "good", ts=1_700_000_000 + t, mono=t)


def test_threshold_rate_and_state_causes_are_named_with_unit_and_label():
    book = AlarmBook([WATER, HYDRANT, SMOKE], labels={("stair-1-smoke", "status"): {0: "normal", 1: "alarm"}})
    [t] = book.feed(rd(WATER, 41, 0, "cm"))
    assert t.cause == "level 41 cm at or above the red threshold 40 cm"
    assert event_of(t)[1]["cause"] == t.cause and event_of(t)[1]["rule"] == "garage-b2-water.level"
    assert "rule garage-b2-water.level" in t.describe() and t.cause in t.describe()
    assert book.get("garage-b2-water.level").cause == t.cause

    book.feed(rd(HYDRANT, 0.30, 0, "MPa"))
    [t] = book.feed(rd(HYDRANT, 0.24, 2, "MPa"))
    assert t.cause == "pressure dropped 0.06 MPa within 5 s (orange rule: a drop of 0.05 MPa)"

    [t] = book.feed(rd(SMOKE, 1, 0))
    assert t.cause == "status 1 (alarm) is a red state"
    assert book.get("stair-1-smoke.status").label == "alarm"


def test_a_rise_rule_names_itself():
    book = AlarmBook([WATER])
    book.feed(rd(WATER, 2, 0, "cm"))
    [t] = book.feed(rd(WATER, 8, 60, "cm"))
    assert t.level == "yellow"
    assert t.cause == "level rose 6 cm within 600 s (yellow rule: a rise of 5 cm)"
