"""Attack: config values that parse as TOML numbers but mean nothing (inf, nan, -inf, absurd
sizes, a poll period that eats the CPU). Before issue 12 `gateway check` said "configuration is
valid" to each, and alarms then never raised, never cleared or were always on; a 400-digit
integer ended in an OverflowError traceback. Each must now be one located problem,
`FILE:LINE: [section] key: message`, and the CLI exits 1 without a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gateway.config import ConfigError, load_config
from test_commands import CONFIG

# the commands tests' garage site, with a debounce to attack
BASE = CONFIG.replace("hysteresis = 2", "hysteresis = 2\ndebounce_s = 3")
HUGE = "9" * 400


def write(tmp_path, text):
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def problems(tmp_path, old, new):
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    return [str(p) for p in err.value.problems], path


def line_of(text, needle):
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_base_is_valid(tmp_path):
    load_config(str(write(tmp_path, BASE)))


@pytest.mark.parametrize("old, new, where", [
    ("poll_s = 1.0", "poll_s = inf", "[sensors #1] poll_s: "),
    ("red = 40 }", "red = nan }", "[rules #1] above.red: "),
    ("hysteresis = 2", "hysteresis = inf", "[rules #1] hysteresis: "),
    ("debounce_s = 3", "debounce_s = inf", "[rules #1] debounce_s: "),
    ("red = 40 }", "red = -inf }", "[rules #1] above.red: "),
    ("max_on_s = 600", "max_on_s = inf", "[outputs.garage-siren] max_on_s: "),
    ("max_on_s = 600", "max_on_s = nan", "[outputs.garage-siren] max_on_s: "),
])
def test_non_finite_numbers_are_refused_with_file_line_section_key(tmp_path, old, new, where):
    found, path = problems(tmp_path, old, new)
    text = path.read_text()
    wanted = f"{path}:{line_of(text, new)}: {where}"
    # (the message part only: pytest's tmp_path spells this test's name, "finite" included)
    assert any(p.startswith(wanted) and "finite" in p[len(wanted):] for p in found), found


def test_a_poll_period_that_would_eat_the_cpu_is_refused(tmp_path):
    found, _ = problems(tmp_path, "poll_s = 1.0", "poll_s = 0.001")
    assert any("[sensors #1] poll_s: must be between 0.05 and 3600 (got 0.001)" in p for p in found), found


@pytest.mark.parametrize("old, new, where", [
    ("poll_s = 1.0", f"poll_s = {HUGE}", "[sensors #1] poll_s: "),
    ("red = 40 }", f"red = {HUGE} }}", "[rules #1] above.red: "),
    ("hysteresis = 2", f"hysteresis = {HUGE}", "[rules #1] hysteresis: "),
    ("max_on_s = 600", f"max_on_s = {HUGE}", "[outputs.garage-siren] max_on_s: "),
    ("unit = 1", f"unit = {HUGE}", "[sensors #1] unit: "),
    ("port = 1 ", f"port = -{HUGE} ", "[buses.pumproom] port: "),
])
def test_a_400_digit_integer_is_a_clear_error_not_a_traceback(tmp_path, old, new, where):
    found, _ = problems(tmp_path, old, new)
    mine = [p for p in found if where in p]
    assert mine and "400 digits" in mine[0].split(where, 1)[1], found


def test_gateway_check_says_so_and_exits_1_without_a_traceback(tmp_path):
    path = write(tmp_path, BASE.replace("poll_s = 1.0", f"poll_s = {HUGE}").replace("red = 40 }", "red = nan }"))
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "check", "-c", str(path)],
                         capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 1, out
    both = out.stdout + out.stderr
    assert "Traceback" not in both and "OverflowError" not in both, both
    assert "poll_s" in both and "above.red" in both and "configuration is valid" not in both


NUMERIC_KEYS = {  # the line of BASE to rewrite -> how to find the value in the loaded config
    "poll_s = 1.0": ("poll_s", lambda c: c.sensors["garage-b2-water"].poll_s),
    "hysteresis = 2": ("hysteresis", lambda c: c.rules[0].hysteresis),
    "debounce_s = 3": ("debounce_s", lambda c: c.rules[0].debounce_s),
    "max_on_s = 600": ("max_on_s", lambda c: c.outputs["garage-siren"].max_on_s),
}


def _toml_number(value) -> str:
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(repr(value), repr(value))
    return str(value)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return tmp_path_factory.mktemp("values")


def test_any_number_in_any_key_is_a_sensible_value_or_one_located_problem(site):
    """Hypothesis (FUZZ_EXAMPLES, default 100): whatever number a key is given, the loader either
    keeps a finite value inside the key's range, or refuses it with a problem at that key; never
    anything else (no traceback, no silent default)."""
    import math
    import os

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from gateway.config.schema import RANGES

    ranges = {**RANGES["sensors"], **RANGES["rules"], **RANGES["outputs.NAME"]}

    @settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100")), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(line=st.sampled_from(sorted(NUMERIC_KEYS)),
           value=st.floats() | st.integers() | st.integers(-10 ** 500, 10 ** 500))
    def one(line, value):
        key, getter = NUMERIC_KEYS[line]
        path = write(site, BASE.replace(line, f"{key} = {_toml_number(value)}", 1))
        try:
            cfg = load_config(str(path))
        except ConfigError as err:
            assert any(p.key == key for p in err.problems), err
            return
        kept = getter(cfg)
        assert math.isfinite(kept) and kept == value
        if key in ranges:
            lo, hi = ranges[key]
            assert lo <= kept <= hi

    one()
