"""Named scenarios: what every simulated sensor reads at time t (seconds since start).

A scenario answers per sensor with point values and a behaviour (normal, dead, garbage).
Values are chosen from the profile's point names, so any config's sensors get a story."""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.config.model import Sensor

NORMAL = {"level": 2.0, "pressure": 0.30, "status": 0, "faults": 0, "concentration": 0.02, "distance": 2000}


def _noise(t: float, amp: float, seed: int) -> float:
    # Smooth, repeatable wobble: a real level gauge never reads the same twice.
    return amp * math.sin(t * 0.7 + seed) * math.cos(t * 0.13 + seed)


def flood_level(t: float) -> float:
    """cm of water: dry, rising 1 cm/s to 45 cm (blue 5, yellow 15, orange 25, red 40 in the
    demo), holding 20 s, then receding 1.5 cm/s back to dry: every lifecycle step in ~2 minutes."""
    if t < 5:
        return 2.0
    if t < 48:
        return 2.0 + (t - 5)
    if t < 68:
        return 45.0
    return max(1.0, 45.0 - 1.5 * (t - 68))


def hydrant_pressure(t: float) -> float:
    """MPa: a normal main, then a hydrant opened at t=15 s (0.30 -> 0.08 in 3 s), closed at 60 s."""
    if t < 15 or t >= 60:
        return 0.30
    if t < 18:
        return 0.30 - (t - 15) * (0.22 / 3)
    return 0.08


@dataclass(frozen=True)
class State:
    values: dict[str, float]
    behaviour: str = "normal"  # normal | dead | garbage


class Scenario:
    name = "normal"
    description = "every sensor reads a calm, plausible value"

    def prepare(self, sensors: list[Sensor]) -> None:
        """Remember the first sensor (config order) that has each point: the one that burns."""
        self._first: dict[str, str] = {}
        for s in sensors:
            for p in s.profile.points:
                self._first.setdefault(p.name, s.name)

    def first(self, sensor: Sensor, point: str) -> bool:
        return getattr(self, "_first", {}).get(point) == sensor.name

    def state(self, sensor: Sensor, index: int, t: float) -> State:
        values = {}
        for p in sensor.profile.points:
            base = NORMAL.get(p.name, 0)
            if p.name in ("level", "pressure", "distance", "concentration"):
                amp = {"level": 0.3, "pressure": 0.005, "distance": 5, "concentration": 0.005}[p.name]
                base = max(0.0, base + _noise(t, amp, index))
            values[p.name] = base
        return State(values)


class Flood(Scenario):
    name = "flood"
    description = "water rises over minutes past every level, holds, then recedes"

    def state(self, sensor, index, t):
        st = super().state(sensor, index, t)
        v = dict(st.values)
        if "level" in v:
            v["level"] = round(flood_level(t), 1)
        if "distance" in v:  # an ultrasonic above a pit sees the water come closer
            v["distance"] = round(2000 - 10 * flood_level(t))
        return State(v)


class Fire(Scenario):
    name = "fire"
    description = "the first smoke detector goes into alarm after 10 s, smoke thickens"

    def state(self, sensor, index, t):
        st = super().state(sensor, index, t)
        v = dict(st.values)
        if "status" in v and self.first(sensor, "status") and t >= 10:
            v["status"] = 1
            v["concentration"] = min(5.0, 0.2 + 0.1 * (t - 10))
        return State(v)


class HydrantOpened(Scenario):
    name = "hydrant-opened"
    description = "a hydrant is opened at 15 s: pressure falls 0.30 -> 0.08 MPa in 3 s"

    def state(self, sensor, index, t):
        st = super().state(sensor, index, t)
        v = dict(st.values)
        if "pressure" in v:
            v["pressure"] = round(hydrant_pressure(t), 3)
        return State(v)


class Faults(Scenario):
    name = "faults"
    description = "the first smoke detector is dead, the hydrant answers garbage, one level is out of range"

    def state(self, sensor, index, t):
        st = super().state(sensor, index, t)
        names = {p.name for p in sensor.profile.points}
        if "status" in names and self.first(sensor, "status"):
            return State(st.values, "dead")
        if "pressure" in names:
            return State(st.values, "garbage")
        if "distance" in names:
            return State({**st.values, "distance": 9999})  # beyond the A02YYUW's 4500 mm
        return st


SCENARIOS = {s.name: s for s in (Scenario(), Flood(), Fire(), HydrantOpened(), Faults())}
