"""A reading: one value of one point of one sensor, with its quality."""

from __future__ import annotations

from dataclasses import dataclass

GOOD = "good"
STALE = "stale"
FAULT = "fault"
QUALITIES = (GOOD, STALE, FAULT)


@dataclass(frozen=True, slots=True)
class Reading:
    """What the acquisition hands to the decision loop. A failed read has quality
    `fault`, value None and a `fault` reason: it is never turned into a number."""

    sensor: str
    point: str
    value: float | int | None
    unit: str
    quality: str
    ts: float  # wall clock, time.time()
    mono: float  # time.monotonic() when decoded: latency and debounce use this
    fault: str | None = None

    def as_dict(self) -> dict:
        d = {"sensor": self.sensor, "point": self.point, "value": self.value,
             "unit": self.unit, "quality": self.quality}
        if self.fault:
            d["fault"] = self.fault
        return d
