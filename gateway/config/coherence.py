"""Whether a config that is valid key by key still does its job: every level a rule names
can be raised and left again, and every output a rule sounds has a pattern for the levels
that rule raises. Each value may be in range and the whole still disarm an alarm:
`above.red` beyond what the sensor can read (a reading there is a range fault, never a
value), a hysteresis that keeps an alarm until the level falls below the sensor's floor,
a siren with no pattern for `red` on a rule that escalates to red (it would fall silent
as the alarm gets worse).

`problems_of(config)` is the one entry point: the loader calls it on every config it has
built (so `gateway check` reports these like any other mistake), and a config push calls
it on the config it is about to apply. It returns Problems in the usual
`FILE:LINE: [section] key: message` form; located from the config's own file when that
file can be read (line 0 otherwise)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from gateway.config.model import LEVELS, Config, Point, Rule, Sensor

from .lines import LineIndex
from .problems import Problem

# Register types whose raw value is a whole number the `equals` codes can match.
_INT_BOUNDS = {"u16": (0, 0xFFFF), "i16": (-0x8000, 0x7FFF), "u32": (0, 0xFFFFFFFF),
               "i32": (-0x80000000, 0x7FFFFFFF)}


def problems_of(config: Config, lines: LineIndex | None = None, data: dict | None = None,
                file: str | None = None) -> list[Problem]:
    """Every way `config` would leave a rule unable to raise or clear a level, or an output
    unable to sound for a level its rules raise; [] when there is none. `lines`, `data` and
    `file` are the parsed file as the loader names it; without them the file at
    `config.path` is read again."""
    where = _Where(file or config.path, lines, data)
    found: list[Problem] = []
    for sensor in config.sensors.values():
        found += _sensor(where, sensor)
    for rule in config.rules:
        sensor = config.sensors.get(rule.sensor)
        point = _point(sensor, rule.point)
        if sensor is None or point is None:
            continue  # the loader has said so already
        at = where.rule(rule)
        found += _thresholds(at, rule, point)
        found += _hysteresis(at, rule, point)
        found += _rates(at, rule, point, sensor)
        found += _codes(at, rule, point)
        found += _sounds(at, rule, point, config)
    return sorted(found, key=lambda p: p.line)


class _Where:
    """Where a section of the config sits in its file, to name it as the loader does."""

    def __init__(self, path: str, lines: LineIndex | None, data: dict | None):
        self.file = path
        if lines is None or data is None:
            try:
                text = Path(path).read_text(encoding="utf-8")
                data, lines = tomllib.loads(text), LineIndex(text)
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                data, lines = {}, None
        self.data = data
        self.lines = lines

    def line(self, path: tuple) -> int:
        return self.lines.line(path) if self.lines is not None else 0

    def _index(self, key: str, match) -> int | None:
        entries = self.data.get(key)
        if isinstance(entries, list):
            for i, entry in enumerate(entries):
                if isinstance(entry, dict) and match(entry):
                    return i
        return None

    def rule(self, rule: Rule) -> _At:
        i = self._index("rules", lambda e: e.get("sensor") == rule.sensor and e.get("point") == rule.point)
        if i is None:
            return _At(self, (), f"rules {rule.name}")
        return _At(self, ("rules", i), f"rules #{i + 1}")

    def sensor(self, sensor: Sensor) -> _At:
        i = self._index("sensors", lambda e: e.get("name") == sensor.name)
        if i is None:
            return _At(self, (), f"sensors {sensor.name}")
        return _At(self, ("sensors", i), f"sensors #{i + 1}")


class _At:
    def __init__(self, where: _Where, path: tuple, section: str):
        self.where, self.path, self.section = where, path, section

    def problem(self, key: str, message: str) -> Problem:
        steps = tuple(key.split(".")) if key else ()
        return Problem(self.where.file, self.where.line(self.path + steps), self.section, key, message)


def _point(sensor: Sensor | None, name: str) -> Point | None:
    if sensor is None:
        return None
    return next((p for p in sensor.profile.points if p.name == name), None)


def _unit(point: Point) -> str:
    return f" {point.unit}" if point.unit else ""


def _plausible(point: Point) -> str:
    lo, hi = point.range
    return f"{lo:g}..{hi:g}{_unit(point)}"


def _sensor(where: _Where, sensor: Sensor) -> list[Problem]:
    if sensor.stale_after_s is not None and sensor.stale_after_s < sensor.poll_s:
        return [where.sensor(sensor).problem(
            "stale_after_s", f"{sensor.stale_after_s:g} s is shorter than poll_s = {sensor.poll_s:g} s: every "
                             "reading would turn stale before the next one comes, and its rules could not "
                             "hold a level")]
    return []


def reachable(rule: Rule, point: Point) -> list[str]:
    """The levels `rule` can raise on `point`, lowest first (a threshold beyond the point's
    plausible range cannot be reached: a reading there is a range fault)."""
    levels = set()
    lo, hi = point.range if point.range is not None else (float("-inf"), float("inf"))
    levels |= {lv for lv, th in rule.above.items() if th <= hi}
    levels |= {lv for lv, th in rule.below.items() if th >= lo}
    for lv, codes in rule.equals.items():
        if any(lo <= c <= hi for c in codes):
            levels.add(lv)
    for spec in (rule.rise, rule.drop):
        if spec is not None and spec.amount <= hi - lo:
            levels.add(spec.level)
    return [lv for lv in LEVELS if lv in levels]


def _thresholds(at: _At, rule: Rule, point: Point) -> list[Problem]:
    if point.range is None:
        return []
    lo, hi = point.range
    found = []
    for lv, th in rule.above.items():
        if th > hi:
            found.append(at.problem(f"above.{lv}", f"{th:g} can never be reached: {rule.name} reads at most "
                                                   f"{hi:g}{_unit(point)} (plausible {_plausible(point)}; beyond "
                                                   f"it a reading is a fault, never a value), so {lv} could "
                                                   "never be raised"))
        elif th <= lo:
            found.append(at.problem(f"above.{lv}", f"{th:g} is at or below the lowest plausible reading "
                                                   f"({lo:g}{_unit(point)}): every good reading would raise {lv}"))
    for lv, th in rule.below.items():
        if th < lo:
            found.append(at.problem(f"below.{lv}", f"{th:g} can never be reached: {rule.name} reads at least "
                                                   f"{lo:g}{_unit(point)} (plausible {_plausible(point)}; beyond "
                                                   f"it a reading is a fault, never a value), so {lv} could "
                                                   "never be raised"))
        elif th >= hi:
            found.append(at.problem(f"below.{lv}", f"{th:g} is at or above the highest plausible reading "
                                                   f"({hi:g}{_unit(point)}): every good reading would raise {lv}"))
    return found


def _hysteresis(at: _At, rule: Rule, point: Point) -> list[Problem]:
    hyst = rule.hysteresis
    if hyst <= 0:
        return []
    found = []
    for key, thresholds in (("above", rule.above), ("below", rule.below)):
        ordered = [(lv, thresholds[lv]) for lv in LEVELS if lv in thresholds]
        gaps = [(abs(b - a), low, high) for (low, a), (high, b) in zip(ordered, ordered[1:])]
        if gaps:
            gap, low, high = min(gaps)
            if hyst >= gap:
                found.append(at.problem("hysteresis", f"{hyst:g} is not below the smallest gap between the "
                                                      f"{key} levels ({low} {thresholds[low]:g} -> {high} "
                                                      f"{thresholds[high]:g}: {gap:g}): {high} could not be left "
                                                      f"for {low} on the way down"))
        if ordered and point.range is not None:
            first_lv, first = ordered[0]
            lo, hi = point.range
            clear = first - hyst if key == "above" else first + hyst
            if (key == "above" and clear < lo) or (key == "below" and clear > hi):
                bound = f"below the lowest plausible reading ({lo:g}" if key == "above" else \
                    f"above the highest plausible reading ({hi:g}"
                found.append(at.problem("hysteresis", f"{hyst:g} would hold {first_lv} until the value is back to "
                                                      f"{clear:g}{_unit(point)}, {bound}{_unit(point)}): "
                                                      "the alarm could never clear"))
    return found


def _rates(at: _At, rule: Rule, point: Point, sensor: Sensor) -> list[Problem]:
    found = []
    for key, spec in (("rise", rule.rise), ("drop", rule.drop)):
        if spec is None:
            continue
        if point.range is not None and spec.amount > point.range[1] - point.range[0]:
            found.append(at.problem(f"{key}.amount", f"{spec.amount:g}{_unit(point)} is more than the whole "
                                                     f"plausible range ({_plausible(point)}): {spec.level} "
                                                     "could never be raised"))
        if spec.within_s < sensor.poll_s:
            found.append(at.problem(f"{key}.within_s", f"{spec.within_s:g} s is shorter than the sensor's "
                                                       f"poll_s = {sensor.poll_s:g} s: the window never holds two "
                                                       f"readings, so {spec.level} could never be raised"))
    return found


def _codes(at: _At, rule: Rule, point: Point) -> list[Problem]:
    if point.range is not None:
        lo, hi = point.range
        why = f"outside the plausible range {_plausible(point)} (a reading there is a fault)"
    elif point.type in _INT_BOUNDS and point.scale == 1.0 and point.offset == 0.0 \
            and point.decimals_register is None:
        lo, hi = _INT_BOUNDS[point.type]
        why = f"not a value a {point.type} register holds ({lo}..{hi})"
    else:
        return []
    found = []
    for lv, codes in rule.equals.items():
        if not any(lo <= c <= hi for c in codes):
            shown = ", ".join(str(c) for c in codes)
            found.append(at.problem(f"equals.{lv}", f"{shown} is {why}: {lv} could never be raised"))
    return found


def _sounds(at: _At, rule: Rule, point: Point, config: Config) -> list[Problem]:
    levels = reachable(rule, point)
    found = []
    for name in rule.sound:
        output = config.outputs.get(name)
        if output is None or not levels:
            continue
        sounding = [lv for lv in levels if lv in output.pattern]
        if not sounding:
            found.append(at.problem("sound", f"output '{name}' has no pattern for any level this rule raises "
                                             f"({', '.join(levels)}): it could never sound for it; give "
                                             f"[outputs.{name}] pattern one of them"))
            continue
        silent = [lv for lv in levels if lv not in output.pattern and LEVELS.index(lv) > LEVELS.index(sounding[0])]
        if silent:
            found.append(at.problem("sound", f"output '{name}' sounds {sounding[0]} but has no pattern for "
                                             f"{', '.join(silent)}, which this rule also raises: it would fall "
                                             f"silent as the alarm gets worse; give [outputs.{name}] pattern "
                                             f"{' and '.join(silent)}"))
    return found
