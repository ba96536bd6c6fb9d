"""Attack: a config valid key by key that disarms an alarm as a whole. Each case below was
"configuration is valid" before issue 12 and left a rule unable to raise, unable to clear, or
its siren unable to sound; `gateway check` (and a config push, through the same
gateway.config.coherence.problems_of) now refuse it with the reason, at the key's line."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_config, problems_of
from test_config_values import BASE, line_of, write

HYDRANT = '''
[[sensors]]
name = "hydrant-3"
bus = "pumproom"
unit = 2
profile = "hydrant-pressure-rs485"
poll_s = 1.0

[[rules]]
sensor = "hydrant-3"
point = "pressure"
below = { yellow = 0.14, red = 0.10 }
drop = { amount = 0.05, within_s = 5, level = "orange" }
sound = ["garage-siren"]
'''


def refused(tmp_path, text, needle, where):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    found = [str(p) for p in err.value.problems]
    prefix = f"{path}:{line_of(text, needle)}: {where}"
    assert any(p.startswith(prefix) for p in found), found
    return next(p for p in found if p.startswith(prefix))[len(prefix):]


def test_the_base_with_a_hydrant_rule_is_coherent(tmp_path):
    cfg = load_config(str(write(tmp_path, BASE + HYDRANT)))
    assert problems_of(cfg) == []


def test_a_threshold_beyond_what_the_sensor_reads_can_never_raise(tmp_path):
    # water-level-rs485 reads -10..1000 cm; a reading of 2000 is a range fault, never a value
    text = BASE.replace("red = 40 }", "red = 2000 }")
    why = refused(tmp_path, text, "red = 2000", "[rules #1] above.red: ")
    assert "never be raised" in why and "-10..1000 cm" in why


def test_a_below_threshold_under_the_floor_can_never_raise(tmp_path):
    text = BASE + HYDRANT.replace("red = 0.10 }", "red = -1 }")
    why = refused(tmp_path, text, "red = -1 }", "[rules #2] below.red: ")
    assert "never be raised" in why


def test_a_threshold_at_the_floor_is_always_on(tmp_path):
    text = BASE.replace("blue = 5,", "blue = -10,")
    assert "every good reading would raise blue" in refused(tmp_path, text, "blue = -10", "[rules #1] above.blue: ")


def test_hysteresis_not_below_the_gap_between_levels(tmp_path):
    text = BASE.replace("hysteresis = 2", "hysteresis = 10")
    why = refused(tmp_path, text, "hysteresis = 10", "[rules #1] hysteresis: ")
    assert "smallest gap" in why and "blue 5 -> yellow 15: 10" in why


def test_hysteresis_that_holds_the_alarm_below_the_floor_can_never_clear(tmp_path):
    # one level only: no gap to respect, but 5 - 20 = -15 cm is below the sensor's -10 cm
    text = BASE.replace("above = { blue = 5, yellow = 15, orange = 25, red = 40 }", "above = { red = 5 }") \
        .replace("hysteresis = 2", "hysteresis = 20")
    assert "could never clear" in refused(tmp_path, text, "hysteresis = 20", "[rules #1] hysteresis: ")


def test_a_rise_larger_than_the_whole_range_can_never_raise(tmp_path):
    text = BASE.replace("debounce_s = 3", 'debounce_s = 3\nrise = { amount = 5000, within_s = 600, level = "yellow" }')
    assert "never be raised" in refused(tmp_path, text, "rise = {", "[rules #1] rise.amount: ")


def test_a_drop_window_shorter_than_the_poll_never_holds_two_readings(tmp_path):
    text = BASE + HYDRANT.replace("poll_s = 1.0", "poll_s = 10").replace("within_s = 5", "within_s = 5")
    assert "two readings" in refused(tmp_path, text, "drop = {", "[rules #2] drop.within_s: ")


def test_a_state_code_the_sensor_never_sends(tmp_path):
    text = BASE + '''
[[sensors]]
name = "stair-2-smoke"
bus = "pumproom"
unit = 5
profile = "smoke-rs485"

[[rules]]
sensor = "stair-2-smoke"
point = "status"
equals = { red = 7 }
latch = true
sound = ["garage-siren"]
'''
    assert "could never be raised" in refused(tmp_path, text, "equals = { red = 7 }", "[rules #2] equals.red: ")


def test_a_siren_without_the_red_pattern_on_a_rule_that_raises_red(tmp_path):
    # the push of issue 12: drop `red` from the pattern while the rule still escalates to red
    text = BASE.replace('pattern = { orange = "pulse", red = "steady" }', 'pattern = { orange = "pulse" }')
    why = refused(tmp_path, text, 'sound = ["garage-siren"]', "[rules #1] sound: ")
    assert "no pattern for red" in why and "fall silent" in why


def test_a_siren_with_no_pattern_for_any_level_of_its_rule(tmp_path):
    text = BASE.replace('pattern = { orange = "pulse", red = "steady" }', 'pattern = { red = "steady" }') \
        .replace("above = { blue = 5, yellow = 15, orange = 25, red = 40 }", "above = { blue = 5, yellow = 15 }")
    assert "could never sound" in refused(tmp_path, text, 'sound = ["garage-siren"]', "[rules #1] sound: ")


def test_stale_before_the_next_poll(tmp_path):
    text = BASE.replace("poll_s = 1.0", "poll_s = 5\nstale_after_s = 2")
    assert "turn stale" in refused(tmp_path, text, "stale_after_s = 2", "[sensors #1] stale_after_s: ")


def test_problems_of_works_on_a_config_built_elsewhere(tmp_path):
    """The config push calls problems_of on the config it is about to apply."""
    from dataclasses import replace

    cfg = load_config(str(write(tmp_path, BASE)))
    siren = replace(cfg.outputs["garage-siren"], pattern={"orange": cfg.outputs["garage-siren"].pattern["orange"]})
    broken = replace(cfg, outputs={"garage-siren": siren})
    found = problems_of(broken)
    assert [(p.section, p.key) for p in found] == [("rules #1", "sound")]
    assert found[0].line == line_of(BASE, 'sound = ["garage-siren"]')
