"""A reload applied to the running safety path (SafetyCore.reconfigure, SafetyLoop.reconfigure):
the active alarms stay, a relay that stays where it was is never touched, and a relay that moves to
another pin is ON at the new pin before the old one is switched off (make before break)."""

import dataclasses

from drivers.gpio.sim import SimGpio
from gateway.act import SafetyCore, SilenceButton, Sirens
from gateway.act.loop import SafetyLoop
from gateway.config.model import PATTERNS, Input, Output
from gateway.decide import AlarmBook
from tests.ptys import wait_until
from test_act_sirens import OFF, ON, SIREN, WATER, rd

RED = {t: 45 for t in range(0, 5)}
BUTTON = Input("silence-button", 5, action="silence", debounce_ms=50)


def _sounding():
    pins = SimGpio()
    core = SafetyCore(AlarmBook([WATER]), Sirens([SIREN], pins), [SilenceButton(BUTTON, pins)])
    for t, v in RED.items():
        core.feed(rd(WATER, v, t))
    assert pins.values(17) == [OFF, ON] and core.book.active()[0].level == "red"
    return pins, core


def test_a_reload_with_the_same_outputs_touches_no_relay_and_keeps_the_alarm():
    pins, core = _sounding()
    alarm = core.book.active()[0]
    before = pins.change_count
    step = core.reconfigure(AlarmBook([WATER]), {SIREN.name: SIREN}, {BUTTON.name: BUTTON}, now=5.0)
    assert pins.change_count == before and step.relays == [] and step.transitions == []
    assert core.book.active()[0].id == alarm.id and core.book.active()[0].level == "red"
    # the debounce window came along: the value going calm clears after 3 s, not at once
    assert [t.kind for t in core.feed(rd(WATER, 1, 6)).transitions] == []


def test_a_changed_rule_keeps_its_active_alarm_and_id_counter():
    pins, core = _sounding()
    wider = dataclasses.replace(WATER, hysteresis=5)
    core.reconfigure(AlarmBook([wider]), {SIREN.name: SIREN}, {}, now=5.0)
    [a] = core.book.active()
    assert a.id == "garage-b2-water.level#1" and a.level == "red" and a.rule is not WATER
    assert pins.values(17) == [OFF, ON]


def test_a_relay_that_moves_is_on_at_its_new_pin_before_the_old_one_goes_off():
    pins, core = _sounding()
    moved = dataclasses.replace(SIREN, pin=24)
    step = core.reconfigure(AlarmBook([WATER]), {moved.name: moved}, {}, now=5.0)
    assert pins.values(24) == [OFF, ON] and pins.values(17) == [OFF, ON, OFF]
    on_new = pins.history(24)[-1]["t"]
    off_old = pins.history(17)[-1]["t"]
    assert on_new <= off_old  # never neither: the new relay sounds first
    assert off_old - on_new < 0.05  # and both only for the moment between two calls
    assert [(r.pin, r.on, r.reason) for r in step.relays] == [(24, True, "alarm"), (17, False, "handed over")]


def test_an_output_removed_by_a_reload_goes_off():
    pins, core = _sounding()
    core.reconfigure(AlarmBook([dataclasses.replace(WATER, sound=())]), {}, {}, now=5.0)
    assert pins.values(17) == [OFF, ON, OFF] and core.book.active()[0].level == "red"


def test_the_loop_hands_its_news_to_the_new_consumers():
    pins = SimGpio()
    old_news, new_news, states = [], [], []
    loop = SafetyLoop(SafetyCore(AlarmBook([WATER]), Sirens([SIREN], pins)), on_transition=old_news.append,
                      on_state=states.append, tick_s=0.01).start()
    try:
        loop.submit(rd(WATER, 45, 0.0))
        wait_until(lambda: pins.values(17) == [OFF, ON] and old_news, timeout=5, what="siren on, raise out")
        from gateway.config.model import Config, GatewaySection

        cfg = Config("x.toml", GatewaySection("gw"), {}, {}, outputs={SIREN.name: SIREN}, rules=(WATER,))
        loop.reconfigure(cfg, on_transition=new_news.append, on_state=states.append).result(5)
        loop.silence(None, by="cli").result(5)
        wait_until(lambda: new_news, timeout=5, what="the silence at the new consumer")
        assert [t.kind for t in old_news] == ["raised"] and [t.kind for t in new_news] == ["silenced"]
        assert pins.values(17) == [OFF, ON, OFF]
    finally:
        loop.stop()
