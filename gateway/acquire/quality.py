"""Fault events for points that no rule watches: the platform must hear of a broken sensor
even when nothing alarms on it (the decision side reports the points that have rules)."""

from __future__ import annotations

from gateway.reading import FAULT, GOOD, Reading


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
