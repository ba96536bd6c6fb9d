"""Fault events for points that no rule watches: the platform must hear of a broken sensor
even when nothing alarms on it (the decision side reports the points that have rules)."""

from __future__ import annotations

from gateway.reading import FAULT, GOOD, Reading


def stale_limits(cfg) -> dict[tuple[str, str], float]:
    """(sensor, point) -> seconds without a reading after which the point is stale: the sensor's
    `stale_after_s` if set, else `stale_after` polls plus the longest one round of its bus can take
    (every device's poll, its own included, timing out on every try): a slow answer or a dead
    neighbour makes faults of its own, not a stale storm on the healthy sensors. What it catches
    is silence: a bus loop that died or hangs."""
    from gateway.acquire.device import Device

    out: dict[tuple[str, str], float] = {}
    for bus in cfg.buses.values():
        devices = [Device(s, bus) for s in cfg.sensors.values() if s.bus == bus.name]
        worst = {d.name: d.worst_poll_s() for d in devices}
        for d in devices:
            s = d.sensor
            if s.stale_after_s is not None:
                limit = s.stale_after_s
            else:
                limit = s.stale_after * s.poll_s + sum(worst.values())
            for p in s.profile.points:
                out[(s.name, p.name)] = limit
    return out


class QualityWatch:
    """Tells a point's change between good and fault, once per change."""

    def __init__(self, skip: set[tuple[str, str]]):
        self._skip = skip  # (sensor, point) pairs whose faults the rules already report
        self._bad: dict[tuple[str, str], str] = {}

    def change(self, r: Reading) -> dict | None:
        key = (r.sensor, r.point)
        if key in self._skip:
            return None
        if r.quality == FAULT and key not in self._bad:
            self._bad[key] = r.fault or ""
            return {"sensor": r.sensor, "point": r.point, "state": "fault", "quality": FAULT,
                    "reason": r.fault or ""}
        if r.quality == GOOD and key in self._bad:
            del self._bad[key]
            return {"sensor": r.sensor, "point": r.point, "state": "recovered", "quality": GOOD, "reason": ""}
        return None
