"""Telemetry: a sensor polled every second becomes one event per point per report period
(min, max, mean, last, count), plus an early report when the value moves beyond the deadband, so a
rising water level is seen within one poll while a steady one costs one message a minute."""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.reading import GOOD, Reading

PERIOD, DEADBAND, QUALITY = "period", "deadband", "quality"


def _mean(total: float, count: int) -> float:
    """Rounded to 7 significant digits (a float32 reading's own precision, below any sensor's resolution):
    32/3 is 10.66667, not 10.666666666666666 — 10 bytes less in every moving reading on the wire — and
    the mean of equal values is that value (min, max and mean then drop out of the stored row)."""
    return float(f"{total / count:.7g}")


@dataclass
class _Window:
    sensor: str
    point: str
    unit: str
    started: float  # monotonic
    count: int = 0  # good readings folded in
    bad: int = 0  # stale/fault readings (no value)
    total: float = 0.0
    min: float | None = None
    max: float | None = None
    last: float | None = None
    quality: str = GOOD
    fault: str | None = None

    def fold(self, r: Reading) -> None:
        self.quality = r.quality
        self.unit = r.unit or self.unit
        if r.quality != GOOD or r.value is None:
            self.bad += 1
            self.fault = r.fault
            return
        v = r.value
        self.count += 1
        self.total += v
        self.last = v
        self.min = v if self.min is None else min(self.min, v)
        self.max = v if self.max is None else max(self.max, v)
        self.fault = None

    def report(self, now: float, reason: str) -> dict:
        fields = {"sensor": self.sensor, "point": self.point, "unit": self.unit, "quality": self.quality,
                  "reason": reason, "period_s": round(max(0.0, now - self.started), 3),
                  "count": self.count, "bad": self.bad,
                  "min": self.min, "max": self.max,
                  "mean": None if not self.count else _mean(self.total, self.count), "last": self.last}
        if self.fault:
            fields["fault"] = self.fault
        return fields


class TelemetryAggregator:
    """Folds readings per (sensor, point) into report-period summaries.

    `deadband` is relative: a good value further than deadband x |last reported value| from the last
    reported value (or further than `deadband` itself when that was 0) is reported at once, as is a
    change of quality (good -> stale/fault and back). Each reading lands in exactly one report.
    Not thread-safe: one owner (the Recorder's writer thread).
    """

    def __init__(self, period_s: float, deadband: float, clock=time.monotonic):
        if period_s <= 0:
            raise ValueError("telemetry period_s must be > 0")
        self.period_s = period_s
        self.deadband = deadband
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._reported: dict[tuple[str, str], tuple[float | None, str]] = {}  # last (value, quality) sent

    def feed(self, reading: Reading, now: float | None = None) -> list[dict]:
        """Fold one reading in. Returns telemetry fields to record now (an early report), or []."""
        now = self._clock() if now is None else now
        key = (reading.sensor, reading.point)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(reading.sensor, reading.point, reading.unit, now)
        window.fold(reading)
        reason = self._early_reason(key, reading)
        if reason is None:
            return []
        return [self._close(key, now, reason)]

    def due(self, now: float | None = None) -> list[dict]:
        """Reports of every window whose period has ended (windows with no readings say nothing:
        a silent sensor is reported by its stale/fault readings and fault events)."""
        now = self._clock() if now is None else now
        return [self._close(key, now, PERIOD) for key, w in list(self._windows.items())
                if now - w.started >= self.period_s and (w.count or w.bad)]

    def flush(self, now: float | None = None) -> list[dict]:
        """Every open window, at shutdown."""
        now = self._clock() if now is None else now
        return [self._close(key, now, PERIOD) for key, w in list(self._windows.items()) if w.count or w.bad]

    def _early_reason(self, key, reading: Reading) -> str | None:
        last = self._reported.get(key)
        if last is None:
            # the first reading of a point is news: the platform learns the value without waiting a period
            return DEADBAND if reading.quality == GOOD else QUALITY
        last_value, last_quality = last
        if reading.quality != last_quality:
            return QUALITY
        if reading.quality != GOOD or reading.value is None or last_value is None:
            return None
        limit = self.deadband * abs(last_value) if last_value else self.deadband
        return DEADBAND if abs(reading.value - last_value) > limit else None

    def _close(self, key, now: float, reason: str) -> dict:
        window = self._windows.pop(key)
        fields = window.report(now, reason)
        self._reported[key] = (window.last, window.quality)
        self._windows[key] = _Window(window.sensor, window.point, window.unit, now)
        return fields
