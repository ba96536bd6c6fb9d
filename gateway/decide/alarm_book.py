"""The AlarmBook: every rule's alarm and its lifecycle, fed with readings.

raised -> escalated / de-escalated -> silenced (sirens off, alarm still active; an
escalation sounds again) -> acknowledged -> cleared. A latched rule (smoke) keeps its
alarm at the highest level reached until somebody acknowledges it. Pure logic: no I/O, no
threads, no clock of its own except as a default for commands that come without one."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from gateway.config.model import LEVELS, Rule
from gateway.decide.condition import PointCondition
from gateway.decide.transition import (ACKNOWLEDGED, CLEARED, DEESCALATED, ESCALATED, FAULT, RAISED,
                                       RECOVERED, SILENCED, Transition, level_at, rank)
from gateway.errors import ConfigError, GatewayError
from gateway.reading import GOOD, STALE

SNAPSHOT_VERSION = 1


class UnknownAlarm(GatewayError, KeyError):
    """A silence/acknowledge named an alarm that is not active."""

    def __str__(self) -> str:  # KeyError would print the repr
        return str(self.args[0]) if self.args else "unknown alarm"


@dataclass
class Alarm:
    """One active alarm of one rule."""
    id: str
    rule: Rule
    level: str
    peak: str  # highest level since raised: what a latched alarm holds
    value: float | int | None
    unit: str
    raised_ts: float
    silenced: bool = False
    acknowledged: bool = False
    silenced_by: str | None = None
    acknowledged_by: str | None = None
    cause: str | None = None  # which condition put it at its level: "level 41 cm at or above the red ..."
    level_ts: float | None = None  # wall clock when it reached its current level ("RED since 19:19")
    label: str | None = None  # the profile's name of the current value (smoke status 1: "alarm")
    silenced_at: str | None = None  # the highest level somebody (or max_on_s) silenced: only worse sounds again

    @property
    def state(self) -> str:
        return "acknowledged" if self.acknowledged else "silenced" if self.silenced else "active"

    def as_dict(self) -> dict:
        return {"id": self.id, "rule": self.rule.name, "sensor": self.rule.sensor, "point": self.rule.point,
                "level": self.level, "peak": self.peak, "value": self.value, "unit": self.unit,
                "raised_ts": self.raised_ts, "latch": self.rule.latch, "state": self.state,
                "silenced": self.silenced, "acknowledged": self.acknowledged,
                "silenced_by": self.silenced_by, "acknowledged_by": self.acknowledged_by,
                "cause": self.cause, "level_ts": self.level_ts or self.raised_ts, "label": self.label,
                "silenced_at": self.silenced_at}


@dataclass
class _Point:
    rule: Rule
    condition: PointCondition
    alarm: Alarm | None = None
    quality: str = GOOD
    value: float | int | None = None
    unit: str = ""
    raises: int = 0  # per-rule counter in alarm ids; survives restarts through the snapshot
    mono: float | None = field(default=None)  # of the last good reading
    reason: str | None = None  # why the point is not good (for status)
    stale_after: float | None = None  # seconds without a good reading before the point is stale
    watch_from: float | None = None  # a point that never read: staleness counts from here


class AlarmBook:
    """All rules and their alarms. One rule per sensor point (a rule can carry thresholds,
    state codes and a rate at once)."""

    def __init__(self, rules, labels: dict[tuple[str, str], dict] | None = None,
                 stale_after: dict[tuple[str, str], float] | None = None):
        """`labels`: (sensor, point) -> the profile's state names ({1: "alarm"}), for causes and status.
        `stale_after`: (sensor, point) -> seconds without a good reading after which the point
        is stale (gateway.acquire.quality.stale_limits); points without a limit never go stale."""
        self._labels = labels or {}
        self._points: dict[tuple[str, str], _Point] = {}
        limits = stale_after or {}
        dupes = []
        for rule in rules:
            key = (rule.sensor, rule.point)
            if key in self._points:
                dupes.append(f"[[rules]] {rule.name}: a second rule for the same point; merge them into one")
            self._points[key] = _Point(rule, PointCondition(rule), stale_after=limits.get(key))
        if dupes:
            raise ConfigError(dupes)
        self._by_name = {p.rule.name: p for p in self._points.values()}

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(p.rule for p in self._points.values())

    # -- readings --------------------------------------------------------------------------
    def feed(self, reading) -> list[Transition]:
        p = self._points.get((reading.sensor, reading.point))
        if p is None:
            return []
        value = reading.value
        quality, detail = reading.quality, reading.fault
        if quality == GOOD and not _usable(value):
            # A "good" reading without a number is a decoding bug upstream: never guess a value.
            quality, detail = FAULT, f"no usable value ({value!r})"
        if quality != GOOD:
            if p.quality == quality:
                return []
            return [self._go_blind(p, quality, detail, reading.mono, reading.ts)]
        out = []
        if p.quality != GOOD:
            p.quality, p.reason = GOOD, None
            out.append(self._point_event(p, RECOVERED, GOOD, None, value, reading.mono, reading.ts))
        p.value, p.unit, p.mono = value, reading.unit, reading.mono
        if p.alarm is not None:
            p.alarm.value, p.alarm.unit = value, reading.unit  # status shows the value now, not at the raise
            p.alarm.label = self._label(p, value)
        p.condition.observe(value, reading.mono, rank(p.alarm.level) if p.alarm else 0)
        out += self._settle(p, reading.mono, reading.ts)
        return out

    def tick(self, now_mono: float, now_ts: float | None = None) -> list[Transition]:
        """Let debounce periods end between readings (a slow poll should not add its
        period to the debounce), and turn points stale that had no good reading for their
        limit (nothing may arrive at all: a bus loop that died). Blind points are left alone."""
        out = []
        for p in self._points.values():
            if p.quality != GOOD:
                continue
            if p.stale_after is not None:
                last = p.mono if p.mono is not None else p.watch_from
                if last is None or now_mono < last:
                    p.watch_from = now_mono  # first tick (or another boot's clock): start watching
                elif now_mono - last > p.stale_after:
                    ts = now_ts if now_ts is not None else time.time()
                    out.append(self._go_blind(p, STALE, f"no reading for {now_mono - last:.1f} s "
                                                         f"(stale after {p.stale_after:g} s)", now_mono, ts))
                    continue
            if p.mono is not None and p.rule.debounce_s > 0:
                out += self._settle(p, now_mono, now_ts if now_ts is not None else time.time())
        return out

    def _go_blind(self, p: _Point, quality: str, detail: str | None, now: float, ts: float) -> Transition:
        """Fault or stale: the alarm is held as it is (a broken sensor neither raises nor clears),
        and a debounce restarts from the next good value."""
        p.quality, p.reason = quality, detail
        p.condition.forget()
        return self._point_event(p, FAULT, quality, detail, None, now, ts)

    def _settle(self, p: _Point, now: float, ts: float) -> list[Transition]:
        a = p.alarm
        held = rank(a.level) if a else 0
        new = p.condition.settled(now, held)
        if a and a.rule.latch and not a.acknowledged and new < held:
            new = held  # latched: stays until somebody acknowledges
        if new == held:
            return []
        level = level_at(new)
        if a is None:
            p.raises += 1
            a = p.alarm = Alarm(f"{p.rule.name}#{p.raises}", p.rule, level, level, p.value, p.unit, ts,
                                cause=self._cause(p, new), level_ts=ts, label=self._label(p, p.value))
            return [self._event(a, RAISED, None, now, ts)]
        previous = a.level
        a.value, a.unit = p.value, p.unit
        if new == 0:
            p.alarm = None
            return [self._event(a, CLEARED, previous, now, ts, level=None, state="cleared")]
        a.level, a.level_ts, a.cause = level, ts, self._cause(p, new)
        if new > held:
            a.peak = level_at(max(new, rank(a.peak)))
            if new > rank(a.silenced_at):
                # A worse situation than anybody silenced needs people again: it sounds and wants a
                # new acknowledgement. Back up to a level already silenced (a value wobbling across
                # a threshold) stays silenced: one silence, not one per crossing.
                a.silenced = a.acknowledged = False
                a.silenced_by = a.acknowledged_by = None
            return [self._event(a, ESCALATED, previous, now, ts)]
        return [self._event(a, DEESCALATED, previous, now, ts)]

    # -- people ----------------------------------------------------------------------------
    def silence(self, alarm_id: str | None = None, by: str = "local", now_mono: float | None = None,
                now_ts: float | None = None) -> list[Transition]:
        """Sirens off for one alarm (or every alarm); the alarms stay active."""
        now, ts = _now(now_mono, now_ts)
        out = []
        for a in self._select(alarm_id):
            if not a.silenced:
                a.silenced, a.silenced_by = True, by
                a.silenced_at = level_at(max(rank(a.level), rank(a.silenced_at)))
                out.append(self._event(a, SILENCED, a.level, now, ts, by=by))
        return out

    def acknowledge(self, alarm_id: str | None = None, by: str = "local", now_mono: float | None = None,
                    now_ts: float | None = None) -> list[Transition]:
        """Somebody has seen it: silences it too. A latched alarm whose condition is gone
        clears now; one whose condition is still there stays active, acknowledged."""
        now, ts = _now(now_mono, now_ts)
        out = []
        for a in self._select(alarm_id):
            if a.acknowledged:
                continue
            a.acknowledged, a.acknowledged_by = True, by
            if not a.silenced:
                a.silenced, a.silenced_by = True, by
            a.silenced_at = level_at(max(rank(a.level), rank(a.silenced_at)))
            out.append(self._event(a, ACKNOWLEDGED, a.level, now, ts, by=by))
            p = self._by_name[a.rule.name]
            if p.quality == GOOD:
                out += self._settle(p, now, ts)
        return out

    def _select(self, alarm_id: str | None) -> list[Alarm]:
        active = self.active()
        if alarm_id is None:
            return active
        # The rule name ("garage-b2-water.level") names its current alarm too: easier to type.
        found = [a for a in active if alarm_id in (a.id, a.rule.name)]
        if not found:
            known = ", ".join(a.id for a in active) or "none"
            raise UnknownAlarm(f"no active alarm {alarm_id!r} (active: {known})")
        return found

    # -- views -----------------------------------------------------------------------------
    def active(self) -> list[Alarm]:
        return [p.alarm for p in self._points.values() if p.alarm is not None]

    def points(self) -> dict[str, dict]:
        """The points that cannot be seen now (fault or stale), by rule name, for status."""
        return {p.rule.name: {"quality": p.quality, "reason": p.reason, "alarm": p.alarm.id if p.alarm else None}
                for p in self._points.values() if p.quality != GOOD}

    def get(self, alarm_id: str) -> Alarm | None:
        return next((a for a in self.active() if alarm_id in (a.id, a.rule.name)), None)

    def snapshot(self) -> dict:
        """Active alarms and id counters, JSON-safe: the daemon persists this (off the safety
        path) so that a restart comes back sounding what it was sounding."""
        return {"v": SNAPSHOT_VERSION,
                "counters": {name: p.raises for name, p in self._by_name.items() if p.raises},
                "alarms": [a.as_dict() for a in self.active()]}

    def restore(self, snap: dict) -> list[str]:
        """Bring back a snapshot's alarms. Returns what was skipped (a rule no longer in the
        config, a level it no longer has), as messages for the log. Conditions start empty:
        a restored alarm clears only after the debounce sees the point calm again."""
        skipped = []
        for name, n in (snap.get("counters") or {}).items():
            if name in self._by_name:
                self._by_name[name].raises = max(self._by_name[name].raises, int(n))
        for d in snap.get("alarms") or []:
            p = self._by_name.get(d.get("rule"))
            if p is None:
                skipped.append(f"alarm {d.get('id')}: rule {d.get('rule')} is no longer configured")
                continue
            if d.get("level") not in LEVELS:
                skipped.append(f"alarm {d.get('id')}: unknown level {d.get('level')!r}")
                continue
            peak = d.get("peak") if d.get("peak") in LEVELS else d["level"]
            # max_on_s silences by the clock of the run that sounded it, under its config: a new run
            # (a restart, a rolled-back push that had shortened it) sounds the alarm again for its own
            # max_on_s. A person's silence or acknowledgement is kept.
            by_clock = d.get("silenced_by") == "max_on_s" and not d.get("acknowledged")
            silenced = bool(d.get("silenced")) and not by_clock
            silenced_at = d.get("silenced_at") if d.get("silenced_at") in LEVELS else None
            if silenced and silenced_at is None:
                silenced_at = d["level"]  # a snapshot from before silenced_at: silenced at its level
            if by_clock:
                silenced_at = None
            p.alarm = Alarm(d["id"], p.rule, d["level"], peak, d.get("value"), d.get("unit") or "",
                            float(d.get("raised_ts") or 0.0), silenced,
                            bool(d.get("acknowledged")), None if by_clock else d.get("silenced_by"),
                            d.get("acknowledged_by"),
                            d.get("cause") if isinstance(d.get("cause"), str) else None,
                            d.get("level_ts") if isinstance(d.get("level_ts"), (int, float)) else None,
                            d.get("label") if isinstance(d.get("label"), str) else None,
                            silenced_at)
        return skipped

    def adopt(self, old: "AlarmBook") -> list[str]:
        """A reload: take over `old`'s alarms and counters (as a restart's restore would). A rule
        that did not change keeps everything, its debounce window and point health too, so a
        reload neither re-raises nor clears anything by itself."""
        skipped = self.restore(old.snapshot())
        for key, p in self._points.items():
            was = old._points.get(key)
            if was is not None and was.rule == p.rule:
                was.stale_after = p.stale_after  # a poll_s change moves the limit
                self._points[key] = was
                self._by_name[p.rule.name] = was
        return skipped

    # -- causes ----------------------------------------------------------------------------
    def _label(self, p: _Point, value) -> str | None:
        states = self._labels.get((p.rule.sensor, p.rule.point))
        return states.get(value) if states and isinstance(value, int) else None

    def _cause(self, p: _Point, r: int) -> str | None:
        c = p.condition.cause(r)
        if c is None:
            return None
        u = f" {p.unit}" if p.unit else ""
        point, level = p.rule.point, level_at(c[1])
        if c[0] in ("above", "below"):
            side = "at or above" if c[0] == "above" else "at or below"
            return f"{point} {c[3]:g}{u} {side} the {level} threshold {c[2]:g}{u}"
        if c[0] == "equals":
            label = self._label(p, c[2])
            return f"{point} {c[2]}{f' ({label})' if label else ''} is a {level} state"
        spec = c[3]
        verb = "rose" if c[0] == "rise" else "dropped"
        return (f"{point} {verb} {round(c[2], 6):g}{u} within {spec.within_s:g} s "
                f"({level} rule: a {c[0]} of {spec.amount:g}{u})")

    # -- transitions -----------------------------------------------------------------------
    @staticmethod
    def _event(a: Alarm, kind: str, previous: str | None, now: float, ts: float, level: str | None = "",
               state: str | None = None, by: str | None = None) -> Transition:
        r = a.rule
        return Transition(a.id, r.name, r.sensor, r.point, kind, a.level if level == "" else level, previous,
                          a.value, a.unit, state or a.state, now, ts, by,
                          cause=a.cause if kind in (RAISED, ESCALATED, DEESCALATED) else None)

    @staticmethod
    def _point_event(p: _Point, kind: str, quality: str, detail: str | None, value, now: float,
                     ts: float) -> Transition:
        r, a = p.rule, p.alarm
        return Transition(a.id if a else None, r.name, r.sensor, r.point, kind, a.level if a else None,
                          a.level if a else None, value, p.unit, quality, now, ts, detail=detail)


def _usable(value) -> bool:
    return isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value))


def _now(mono: float | None, ts: float | None) -> tuple[float, float]:
    return (time.monotonic() if mono is None else mono), (time.time() if ts is None else ts)
