"""Emergency drills (应急演练): the gateway sounds an area as for a real warning, every message
prefixed with the drill announcement, so residents can practise and tell a drill from the real thing.

A drill is an alarm of its own (rule `drill`, sensor `drill`, point = the area or `all`) that the
safety core holds beside the AlarmBook's: its transitions are events with `"drill": true`, and it
sounds only outputs that no real alarm is using. A real alarm during a drill is the AlarmBook's, is
never marked drill, and takes its outputs over at once, without the drill announcement."""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.config.model import LEVELS, Rule
from gateway.decide.transition import Transition, rank
from gateway.errors import OutputError

ANNOUNCEMENT = "现在是应急演练。"
DEFAULT_MINUTES = 30.0
MAX_MINUTES = 240.0
DRILL = "drill"


@dataclass
class DrillAlarm:
    """Quacks like gateway.decide.alarm_book.Alarm for Sirens."""
    id: str
    rule: Rule
    level: str
    until: float  # monotonic
    area: str | None
    value: None = None
    unit: str = ""
    silenced: bool = False
    drill: bool = True


def plan_drill(outputs: dict, rules, area: str | None, n: int, now: float, minutes: float) -> DrillAlarm:
    """The drill alarm for `area` (None: every output): the highest level any of its outputs sounds,
    with the message the first rule sounding them says at that level."""
    if not 0 < minutes <= MAX_MINUTES:
        raise OutputError(f"a drill lasts more than 0 and at most {MAX_MINUTES:g} minutes (got {minutes:g})")
    names = [o.name for o in outputs.values() if area is None or o.area == area]
    if not names:
        areas = sorted({o.area for o in outputs.values() if o.area})
        raise OutputError(f"no output is in area {area!r}; areas: {', '.join(areas) or 'none configured'}"
                          if area else "no output is configured: a drill would sound nothing")
    level = max((lv for name in names for lv in outputs[name].pattern), key=rank, default=LEVELS[-1])
    say = {}
    for rule in rules:
        if level in rule.say and set(rule.sound) & set(names):
            say[level] = rule.say[level]
            break
    rule = Rule(sensor=DRILL, point=area or "all", sound=tuple(names), say=say)
    return DrillAlarm(f"drill#{n}", rule, level, now + minutes * 60, area)


def transition(alarm: DrillAlarm, kind: str, now: float, by: str) -> Transition:
    return Transition(alarm.id, DRILL, DRILL, alarm.rule.point, kind, alarm.level if kind == "raised" else None,
                      alarm.level if kind == "cleared" else None, None, "",
                      "active" if kind == "raised" else "cleared", now, time.time(), by=by,
                      detail=f"drill until {alarm.until - now:.0f} s from now" if kind == "raised" else None)
