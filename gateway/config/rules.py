"""`[[rules]]`: when a sensor point raises which of the four colour levels, and which
outputs sound. Thresholds out of order would make a level unreachable or skip one, so
they are rejected rather than sorted."""

from __future__ import annotations

from pathlib import Path

from gateway.config.model import LEVELS, RateSpec, Rule, Sensor

from .problems import suggest
from .schema import KEYS, RANGES
from .tables import Table, array_tables, is_int, shown, unfit

_CONDITIONS = ("above", "below", "equals", "rise", "drop")
_LEVEL_LIST = ", ".join(LEVELS)


def build_rules(top: Table, sensors: dict[str, Sensor], sensor_names: set[str],
                outputs: list[str], base: Path | None = None) -> tuple[Rule, ...]:
    from .voice import say_fields

    base = base or Path(".")
    rules, first_line = [], {}
    for t in array_tables(top, "rules"):
        count = len(t.report.problems)
        t.check_keys(KEYS["rules"])
        sensor = t.text("sensor", required=True)
        point = t.text("point", required=True)
        if sensor and sensor not in sensor_names:
            listed = ", ".join(dict.fromkeys(sensor_names_in_order(top))) or "none"
            t.problem("sensor", f"unknown sensor '{sensor}'; sensors are: {listed}{suggest(sensor, sensor_names)}")
        elif sensor in sensors and point:
            profile = sensors[sensor].profile
            names = [p.name for p in profile.points]
            if point not in names:
                t.problem("point", f"unknown point '{point}' of sensor '{sensor}' "
                                   f"(profile {profile.name} has: {', '.join(names)})")
        if sensor and point:
            if (sensor, point) in first_line:
                t.problem("point", f"a rule for {sensor}.{point} already exists (line "
                                   f"{first_line[sensor, point]}); put all its conditions in one rule")
            first_line.setdefault((sensor, point), t.line("sensor"))
        if not any(key in t for key in _CONDITIONS):
            t.problem("", "has no condition: give above, below, equals, rise or drop")
        sound = t.strings("sound")
        for i, output in enumerate(sound):
            if output not in outputs:
                listed = f"outputs are: {', '.join(outputs)}" if outputs else "no [outputs.NAME] is configured"
                t.problem("sound", f"unknown output '{output}'; {listed}{suggest(output, outputs)}", i)
        rule = Rule(sensor=sensor, point=point,
                    above=_thresholds(t, "above", rising=True),
                    below=_thresholds(t, "below", rising=False),
                    equals=_codes(t),
                    hysteresis=float(t.number("hysteresis", 0.0, ge=0)),
                    debounce_s=float(t.number("debounce_s", 0.0, within=RANGES["rules"]["debounce_s"])),
                    rise=_rate(t, "rise"), drop=_rate(t, "drop"),
                    latch=t.flag("latch", False), sound=sound,
                    **say_fields(t, sensors.get(sensor), base))
        if len(t.report.problems) == count:
            rules.append(rule)
    return tuple(rules)


def sensor_names_in_order(top: Table) -> list[str]:
    raw = top.data.get("sensors")
    if not isinstance(raw, list):
        return []
    return [s["name"] for s in raw if isinstance(s, dict) and isinstance(s.get("name"), str)]


def _levels(sub: Table) -> list[str]:
    """The keys of a level-keyed table that are levels; a problem for each that is not."""
    good = []
    for key in sub.data:
        if key in LEVELS:
            good.append(key)
        else:
            sub.problem(key, f"unknown level '{key}'; levels are: {_LEVEL_LIST}{suggest(key, LEVELS)}")
    if not sub.data:
        sub.problem("", f"is empty: give at least one level ({_LEVEL_LIST})")
    return good


def _thresholds(t: Table, key: str, rising: bool) -> dict[str, float]:
    sub = t.sub(key)
    if sub is None:
        return {}
    values = {}
    for level in _levels(sub):
        value = sub.number(level)
        if value is not None:
            values[level] = float(value)
    ordered = [(level, values[level]) for level in LEVELS if level in values]
    for (low_level, low), (high_level, high) in zip(ordered, ordered[1:]):
        if rising and not high > low:
            sub.problem(high_level, f"above thresholds must increase with the level (blue < yellow < orange < red): "
                                    f"{high_level} = {sub.data[high_level]} is not above {low_level} = {sub.data[low_level]}")
        if not rising and not high < low:
            sub.problem(high_level, f"below thresholds must decrease with the level (blue > yellow > orange > red): "
                                    f"{high_level} = {sub.data[high_level]} is not below {low_level} = {sub.data[low_level]}")
    return values


def _codes(t: Table) -> dict[str, tuple[int, ...]]:
    """`equals = { red = 1 }` or `{ yellow = [3, 4] }`: state codes per level."""
    sub = t.sub("equals")
    if sub is None:
        return {}
    codes, owner = {}, {}
    for level in _levels(sub):
        value = sub.data[level]
        values = value if isinstance(value, list) else [value]
        if not values or not all(is_int(v) for v in values):
            sub.problem(level, f"must be a whole number or a list of whole numbers (got {shown(value)})")
            continue
        odd = next((unfit(v) for v in values if unfit(v)), None)
        if odd:
            sub.problem(level, odd)
            continue
        for code in values:
            if code in owner:
                sub.problem(level, f"code {code} is already listed for {owner[code]}")
            owner.setdefault(code, level)
        codes[level] = tuple(values)
    return codes


def _rate(t: Table, key: str) -> RateSpec | None:
    """`rise = { amount = 5, within_s = 600, level = "yellow" }`."""
    sub = t.sub(key)
    if sub is None:
        return None
    sub.check_keys(KEYS[f"rules.{key}"])
    amount = sub.number("amount", required=True, gt=0)
    within = sub.number("within_s", required=True, within=RANGES[f"rules.{key}"]["within_s"])
    level = sub.text("level", required=True, choices=LEVELS)
    if amount is None or within is None or level is None:
        return None
    return RateSpec(amount=float(amount), within_s=float(within), level=level)
