"""`[gpio]`, `[outputs.NAME]` (sirens, strobes on relays) and `[inputs.NAME]` (the
silence button). A siren that can never sound is the worst bug, so an output must say
which levels sound it, and a pin wired to two things is an error."""

from __future__ import annotations

from pathlib import Path

from gateway.config.model import LEVELS, PATTERNS, Gpio, Input, Output, Pattern

from .paths import resolve
from .problems import suggest
from .schema import BCM_PINS, GPIO_BACKENDS, INPUT_ACTIONS, KEYS, OUTPUT_KINDS, RANGES
from .tables import Table, is_int, named_tables, shown, table_at

_LEVEL_LIST = ", ".join(LEVELS)
_PATTERN_LIST = ", ".join(PATTERNS)


def build_gpio(top: Table, base: Path) -> Gpio:
    t = table_at(top, "gpio")
    if t is None:
        return Gpio()
    t.check_keys(KEYS["gpio"])
    backend = t.text("backend", "sim", choices=GPIO_BACKENDS)
    record = t.text("record")
    if record is not None and backend != "sim":
        t.problem("record", 'only for backend = "sim" (it records simulated pin changes)')
    return Gpio(backend=backend, record=record and resolve(base, record))


def build_outputs(top: Table, pins: dict[int, str], buses: dict | None = None,
                  base: Path | None = None) -> dict[str, Output]:
    from .voice import build_kind_output

    outputs = {}
    for name, t in named_tables(top, "outputs"):
        count = len(t.report.problems)
        t.check_keys(KEYS["outputs.NAME"])
        kind = t.text("kind", "relay", choices=OUTPUT_KINDS)
        if kind in ("voice", "modbus"):  # voice and Modbus outputs: gateway/config/voice.py
            output = build_kind_output(t, name, kind, buses or {}, base or Path("."))
            if len(t.report.problems) == count:
                outputs[name] = output
            continue
        for key in t.data:
            if key not in KEYS["outputs.NAME"][:6]:  # the relay's own keys, kind and area
                t.problem(key, 'only for kind = "voice" or "modbus"')
        pin = _pin(t, f"outputs.{name}", pins)
        pattern = _patterns(t)
        output = Output(name=name, pin=pin, active_low=t.flag("active_low", True), pattern=pattern,
                        max_on_s=float(t.number("max_on_s", 600.0, within=RANGES["outputs.NAME"]["max_on_s"])),
                        area=_area(t))
        if len(t.report.problems) == count:
            outputs[name] = output
    return outputs


def _area(t: Table) -> str | None:
    from .voice import _area_name

    return _area_name(t)


def build_inputs(top: Table, pins: dict[int, str]) -> dict[str, Input]:
    inputs = {}
    for name, t in named_tables(top, "inputs"):
        count = len(t.report.problems)
        t.check_keys(KEYS["inputs.NAME"])
        pin = _pin(t, f"inputs.{name}", pins)
        item = Input(name=name, pin=pin, action=t.text("action", "silence", choices=INPUT_ACTIONS),
                     active_low=t.flag("active_low", True),
                     debounce_ms=t.integer("debounce_ms", 50, ge=0, le=10000))
        if len(t.report.problems) == count:
            inputs[name] = item
    return inputs


def _pin(t: Table, owner: str, pins: dict[int, str]) -> int | None:
    if not t.require("pin"):
        return None
    pin = t.data["pin"]
    if not is_int(pin) or pin not in BCM_PINS:
        t.problem("pin", f"must be a BCM GPIO number between {BCM_PINS[0]} and {BCM_PINS[-1]} (got {shown(pin)})")
        return None
    if pin in pins:
        t.problem("pin", f"pin {pin} is used by both {pins[pin]} and {owner}")
    pins.setdefault(pin, owner)
    return pin


def _patterns(t: Table) -> dict[str, Pattern]:
    """`pattern = { orange = "pulse", red = "steady" }`, or an inline on/off time:
    `{ red = { on_s = 0.5, off_s = 0.5 } }`."""
    if "pattern" not in t:
        t.problem("pattern", 'is required: which levels sound this output, e.g. { orange = "pulse", red = "steady" }')
        return {}
    sub = t.sub("pattern")
    if sub is None:
        return {}
    patterns = {}
    if not sub.data:
        sub.problem("", f"is empty: give a pattern for at least one level ({_LEVEL_LIST})")
    for level, value in sub.data.items():
        if level not in LEVELS:
            sub.problem(level, f"unknown level '{level}'; levels are: {_LEVEL_LIST}{suggest(level, LEVELS)}")
            continue
        if isinstance(value, str):
            if value in PATTERNS:
                patterns[level] = PATTERNS[value]
            else:
                sub.problem(level, f"unknown pattern '{value}'; patterns are: {_PATTERN_LIST}, "
                                   f"or {{ on_s = 1, off_s = 1 }}{suggest(value, PATTERNS)}")
        elif isinstance(value, dict):
            timing = sub.sub(level)
            timing.check_keys(KEYS["outputs.NAME.pattern.LEVEL"])
            timings = RANGES["outputs.NAME.pattern.LEVEL"]
            on_s = timing.number("on_s", required=True, within=timings["on_s"])
            off_s = timing.number("off_s", required=True, within=timings["off_s"])
            if on_s is not None and off_s is not None:
                patterns[level] = Pattern(f"{on_s:g}s-on-{off_s:g}s-off", float(on_s), float(off_s))
        else:
            sub.problem(level, f'must be a pattern name ({_PATTERN_LIST}) or {{ on_s = 1, off_s = 1 }} '
                               f"(got {shown(value)})")
    return patterns
