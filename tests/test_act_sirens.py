"""Decide + act together (SafetyCore) on simulated pins, with explicit monotonic times.
Pins are asserted as physical levels: the garage siren's relay is active-low, so
1 = off and 0 = sounding."""

import pytest

from drivers.gpio.sim import SimGpio
from gateway.act import SafetyCore, SilenceButton, Sirens
from gateway.config.model import PATTERNS, Input, Output, Pattern, RateSpec, Rule
from gateway.decide import AlarmBook
from gateway.errors import ConfigError, OutputError
from gateway.reading import Reading

SIREN = Output("garage-siren", 17, active_low=True,
               pattern={"orange": PATTERNS["pulse"], "red": PATTERNS["steady"]}, max_on_s=600)
SOUNDER = Output("stair-sounder", 22, active_low=False, pattern={"red": PATTERNS["steady"]}, max_on_s=600)
BUTTON = Input("silence-button", 27, action="silence", debounce_ms=50)
WATER = Rule("garage-b2-water", "level", above={"blue": 5, "yellow": 15, "orange": 25, "red": 40},
             hysteresis=2, debounce_s=3, sound=("garage-siren",))
SMOKE = Rule("stair-2-smoke", "status", equals={"red": (1,)}, latch=True, sound=("stair-sounder", "garage-siren"))
HYDRANT = Rule("hydrant-3", "pressure", below={"yellow": 0.14, "red": 0.10},
               drop=RateSpec(0.05, 5, "orange"), sound=("garage-siren",))
OFF, ON = 1, 0  # garage siren, active low


def rd(rule, value, t, quality="good"):
    return Reading(rule.sensor, rule.point, value, "cm", quality, ts=1_700_000_000 + t, mono=t,
                   fault=None if quality == "good" else "timeout")


def make(rules=(WATER, SMOKE), outputs=(SIREN, SOUNDER), inputs=()):
    pins = SimGpio()
    core = SafetyCore(AlarmBook(rules), Sirens(outputs, pins), [SilenceButton(i, pins) for i in inputs])
    return pins, core


def feed(core, rule, samples):
    kinds = []
    for t, v in samples:
        kinds += [x.kind for x in core.feed(rd(rule, v, t)).transitions]
    return kinds


def test_raise_escalate_deescalate_and_clear_with_hysteresis():
    pins, core = make()
    # yellow has no pattern on the garage siren: the alarm is raised, the siren stays off.
    assert feed(core, WATER, [(t, 16) for t in range(0, 4)]) == ["raised"]
    assert pins.values(17) == [OFF]
    # 45 cm: red (steady) after 3 s of it.
    step = core.feed(rd(WATER, 45, 4))
    assert step.relays == []
    feed(core, WATER, [(5, 45), (6, 45)])
    step = core.feed(rd(WATER, 45, 7))
    assert [t.kind for t in step.transitions] == ["escalated"]
    assert [(r.on, r.level, r.pattern) for r in step.relays] == [(True, "red", "steady")]  # same call
    assert pins.values(17) == [OFF, ON]
    # 39 cm stays red (hysteresis 2); 30 cm de-escalates to orange: pulse, starting ON.
    assert feed(core, WATER, [(t, 39) for t in range(8, 12)]) == []
    assert feed(core, WATER, [(t, 30) for t in range(12, 16)]) == ["deescalated"]
    assert pins.values(17) == [OFF, ON]
    core.tick(15.5)
    core.tick(16.0)  # pulse: 1 s on, 1 s off from t=15
    assert pins.values(17) == [OFF, ON, OFF]
    # 24 cm: still orange; 22 cm: yellow (no pattern) -> off; then clear below 5 - 2.
    assert feed(core, WATER, [(t, 24) for t in range(16, 20)]) == []
    assert feed(core, WATER, [(t, 22) for t in range(20, 24)]) == ["deescalated"]
    assert core.book.active()[0].level == "yellow"
    assert feed(core, WATER, [(t, 4) for t in range(24, 30)]) == ["deescalated"]
    assert feed(core, WATER, [(t, 2) for t in range(30, 34)]) == ["cleared"]
    core.tick(34.0)
    assert pins.values(17)[-1] == OFF and core.book.active() == []


def test_pulse_pattern_toggles_on_tick():
    pins, core = make()
    feed(core, WATER, [(t, 30) for t in range(0, 4)])  # orange at t=3
    for i in range(1, 21):  # 3.0 .. 5.0 in 0.1 s ticks
        core.tick(3 + i * 0.1)
    assert pins.values(17) == [OFF, ON, OFF, ON]  # on at 3, off at 4, on at 5
    fast = Output("strobe", 23, active_low=False, pattern={"orange": Pattern("quick", 0.25, 0.75)})
    pins2, core2 = make(rules=(Rule("s", "p", above={"orange": 1}, sound=("strobe",)),), outputs=(fast,))
    core2.feed(Reading("s", "p", 2, "", "good", 0.0, 100.0))
    for i in range(1, 41):
        core2.tick(100 + i * 0.05)  # 2 s
    assert pins2.values(23) == [0, 1, 0, 1, 0, 1]


def test_debounce_rejects_a_spike_the_siren_never_clicks():
    pins, core = make()
    feed(core, WATER, [(0, 3), (1, 3), (2, 80), (3, 3), (4, 3), (5, 3), (6, 3)])
    for i in range(20):
        core.tick(6 + i * 0.05)
    assert pins.values(17) == [OFF] and core.book.active() == []


def test_rate_of_rise_sounds():
    rule = Rule("garage-b2-water", "level", above={"red": 40}, rise=RateSpec(5, 600, "orange"),
                sound=("garage-siren",))
    pins, core = make(rules=(rule,))
    assert feed(core, rule, [(t, 10 + t / 60) for t in range(0, 240, 60)]) == []  # +3 cm in 3 min
    assert feed(core, rule, [(300, 15.1)]) == ["raised"]  # +5.1 cm within 5 min
    assert pins.values(17) == [OFF, ON]


def test_hydrant_drop_sounds_orange():
    pins, core = make(rules=(HYDRANT,))
    assert feed(core, HYDRANT, [(0, 0.30), (1, 0.30), (2, 0.27)]) == []  # -0.03: not yet
    assert feed(core, HYDRANT, [(3, 0.25)]) == ["raised"]  # -0.05 within 5 s: opened or broken
    assert core.book.active()[0].level == "orange" and pins.values(17) == [OFF, ON]


def test_smoke_latches_until_acknowledged():
    pins, core = make()
    core.feed(rd(SMOKE, 1, 0))
    assert pins.values(17) == [OFF, ON] and pins.values(22) == [0, 1]  # both outputs, active high on 22
    feed(core, SMOKE, [(1, 0), (2, 0), (60, 0)])  # the smoke is gone
    core.tick(61.0)
    assert pins.values(17) == [OFF, ON]
    step = core.acknowledge("stair-2-smoke.status", by="cli", now=62.0)
    assert [t.kind for t in step.transitions] == ["acknowledged", "cleared"]
    assert pins.values(17) == [OFF, ON, OFF] and pins.values(22) == [0, 1, 0]


def test_silence_button_turns_the_siren_off_and_escalation_sounds_again():
    pins, core = make(inputs=(BUTTON,))
    feed(core, WATER, [(t, 30) for t in range(0, 4)])  # orange, pulsing
    assert pins.values(17) == [OFF, ON]
    pins.press(27)
    core.tick(3.10)
    core.tick(3.13)  # bounce window: not yet
    assert pins.values(17) == [OFF, ON]
    step = core.tick(3.16)
    assert [(t.kind, t.by) for t in step.transitions] == [("silenced", "button:silence-button")]
    assert pins.values(17) == [OFF, ON, OFF]
    a = core.book.active()[0]
    assert (a.level, a.silenced) == ("orange", True)
    # Held down for a minute: one press, one silence.
    pins.release(27)
    for i in range(20):
        core.tick(3.2 + i * 0.5)
    assert pins.values(17) == [OFF, ON, OFF]
    # Water reaches red: the siren is back.
    feed(core, WATER, [(t, 45) for t in range(14, 18)])
    assert pins.values(17) == [OFF, ON, OFF, ON]


def test_remote_silence_by_method_call():
    pins, core = make()
    core.feed(rd(SMOKE, 1, 0))
    step = core.silence(by="platform", now=1.0)
    assert [(t.kind, t.by, t.state) for t in step.transitions] == [("silenced", "platform", "silenced")]
    assert pins.values(17) == [OFF, ON, OFF] and pins.values(22) == [0, 1, 0]
    assert core.book.active()[0].level == "red"


def test_auto_silence_after_max_on_s():
    short = Output("garage-siren", 17, pattern=SIREN.pattern, max_on_s=10)
    pins, core = make(rules=(WATER,), outputs=(short,))
    feed(core, WATER, [(t, 30) for t in range(0, 4)])  # orange from t=3
    assert core.tick(12.99).transitions == []
    step = core.tick(13.0)
    assert [(t.kind, t.by) for t in step.transitions] == [("silenced", "max_on_s")]
    assert pins.values(17)[-1] == OFF and step.relays[-1].on is False
    assert core.book.active()[0].silenced
    n = len(pins.values(17))
    core.tick(20.0)
    assert len(pins.values(17)) == n  # stays off
    feed(core, WATER, [(t, 45) for t in range(20, 24)])  # red: a new warning gets a new 10 s
    assert pins.values(17)[-1] == ON
    assert core.tick(32.9).transitions == []
    assert [t.by for t in core.tick(33.0).transitions] == ["max_on_s"]


def test_fault_reading_does_not_alarm_nor_clear_an_active_alarm():
    pins, core = make()
    for t in range(0, 10):
        step = core.feed(rd(WATER, None, t, quality="fault"))
        core.tick(t + 0.5)
    assert pins.values(17) == [OFF] and core.book.active() == []
    feed(core, WATER, [(t, 45) for t in range(10, 14)])
    assert pins.values(17) == [OFF, ON]
    step = core.feed(rd(WATER, 0.0, 14, quality="fault"))  # a 0 from a timeout
    assert [t.kind for t in step.transitions] == ["fault"]
    for t in range(15, 40):
        core.feed(rd(WATER, None, t, quality="stale"))
        core.tick(t + 0.5)
    assert pins.values(17) == [OFF, ON] and core.book.active()[0].level == "red"


def test_restore_from_snapshot_sounds_at_once():
    pins, core = make()
    feed(core, WATER, [(t, 45) for t in range(0, 4)])
    core.feed(rd(SMOKE, 1, 4))
    core.silence("stair-2-smoke.status", now=5.0)
    snap = core.book.snapshot()
    pins2, core2 = make()  # the daemon after kill -9
    core2.restore(snap, now=1000.0)
    assert pins2.values(17) == [OFF, ON]  # red water alarm sounds
    assert pins2.values(22) == [0]  # the silenced smoke alarm stays silent


def test_self_test_sounds_then_returns_to_the_alarms():
    pins, core = make()
    with pytest.raises(OutputError, match="no output 'nope'"):
        core.siren_test("nope", 5, now=0.0)
    with pytest.raises(OutputError, match="at most max_on_s"):
        core.siren_test("garage-siren", 601, now=0.0)
    core.siren_test("garage-siren", 5, now=0.0)
    assert pins.values(17) == [OFF, ON]
    core.tick(4.9)
    assert pins.values(17) == [OFF, ON]
    core.tick(5.0)
    assert pins.values(17) == [OFF, ON, OFF]


def test_shutdown_turns_every_output_off():
    pins, core = make()
    core.feed(rd(SMOKE, 1, 0))
    step = core.shutdown(now=1.0)
    assert {(r.output, r.on, r.reason) for r in step.relays} == {("garage-siren", False, "shutdown"),
                                                                 ("stair-sounder", False, "shutdown")}
    assert pins.values(17) == [OFF, ON, OFF] and pins.values(22) == [0, 1, 0]


def test_a_rule_sounding_an_unknown_output_is_refused():
    with pytest.raises(ConfigError, match="unknown output 'garage-siren'"):
        make(rules=(WATER,), outputs=(SOUNDER,))


def test_ack_button_acknowledges_every_alarm_and_clears_a_gone_smoke():
    ack = Input("ack-button", 5, action="ack", active_low=False, debounce_ms=0)
    pins, core = make(inputs=(ack,))
    core.feed(rd(SMOKE, 1, 0))
    feed(core, WATER, [(t, 45) for t in range(0, 4)])
    core.feed(rd(SMOKE, 0, 4))  # smoke gone, latched; water still red
    pins.press(5)  # to 3V3: pressed = HIGH
    step = core.tick(5.0)
    assert sorted((t.alarm_id, t.kind) for t in step.transitions) == [
        ("garage-b2-water.level#1", "acknowledged"),
        ("stair-2-smoke.status#1", "acknowledged"), ("stair-2-smoke.status#1", "cleared")]
    assert [(r.output, r.on, r.reason) for r in step.relays] == [("garage-siren", False, "silenced"),
                                                                 ("stair-sounder", False, "alarm")]
    assert pins.values(17) == [OFF, ON, OFF]
    assert [(a.id, a.state) for a in core.book.active()] == [("garage-b2-water.level#1", "acknowledged")]
