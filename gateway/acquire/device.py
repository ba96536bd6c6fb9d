"""One polled device: what to read, when next, and what went wrong so far."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from gateway.acquire.decode import check_range, decode_point
from gateway.acquire.plan import Request, plan_requests
from gateway.config.model import Bus, Sensor
from gateway.errors import DeviceFault
from gateway.reading import FAULT, GOOD, Reading

# After this many failed polls in a row the device is "silent": probed once per attempt
# (no retries) and backed off exponentially, so it costs the bus at most one timeout
# per cycle and the other devices keep their cadence.
SILENT_AFTER = 2


@dataclass
class DeviceStats:
    polls: int = 0
    good: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # reason -> count
    consecutive: int = 0
    last_error: str | None = None
    last_good_mono: float | None = None
    last_poll_s: float = 0.0  # duration of the last poll

    def as_dict(self) -> dict:
        return {"polls": self.polls, "good": self.good, "failures": dict(self.failures),
                "consecutive_failures": self.consecutive, "last_error": self.last_error}


class Device:
    """A sensor on a bus, with its schedule and counters."""

    def __init__(self, sensor: Sensor, bus: Bus):
        self.sensor = sensor
        self.timeout = sensor.timeout_s if sensor.timeout_s is not None else bus.timeout_s
        self.retries = sensor.retries if sensor.retries is not None else bus.retries
        self.backoff_max = bus.backoff_max_s
        self.requests: list[Request] = plan_requests(sensor.profile) if sensor.unit is not None else []
        self.stats = DeviceStats()
        self.next_due = 0.0

    @property
    def name(self) -> str:
        return self.sensor.name

    @property
    def silent(self) -> bool:
        return self.stats.consecutive >= SILENT_AFTER

    def attempt_retries(self) -> int:
        return 0 if self.silent else self.retries

    def schedule_after(self, started: float) -> None:
        """Next poll on the device's own cadence, or later while it is silent."""
        period = self.sensor.poll_s
        if self.silent:
            # The exponent is capped: 2**1025 is an OverflowError, and a sensor can stay dead for days.
            doublings = min(self.stats.consecutive - SILENT_AFTER + 1, 20)
            period = min(period * 2 ** doublings, max(self.backoff_max, period))
        # Anchor the cadence on the due time (no drift), unless we fell behind by a whole period.
        base = self.next_due if self.next_due and started - self.next_due < period else started
        nxt = base + period
        now = time.monotonic()
        self.next_due = nxt if nxt > now else now + (period if self.silent else 0.0)

    def worst_poll_s(self) -> float:
        """The longest one poll of this device can take: every request timing out on every try."""
        return (self.retries + 1) * self.timeout * max(1, len(self.requests)) + 1.0

    # -- turning results into readings -------------------------------------------------
    def good_readings(self, values: dict[str, object], mono: float) -> list[Reading]:
        ts = time.time()
        self.stats.polls += 1
        self.stats.good += 1
        self.stats.consecutive = 0
        self.stats.last_error = None
        self.stats.last_good_mono = mono
        out = []
        for p in self.sensor.profile.points:
            v = values[p.name]
            if isinstance(v, DeviceFault):
                self.stats.failures[v.reason] = self.stats.failures.get(v.reason, 0) + 1
                out.append(Reading(self.name, p.name, None, p.unit, FAULT, ts, mono, str(v)))
            else:
                out.append(Reading(self.name, p.name, v, p.unit, GOOD, ts, mono))
        return out

    def fault_readings(self, fault: Exception, mono: float) -> list[Reading]:
        reason = fault.reason if isinstance(fault, DeviceFault) else "port"
        self.stats.polls += 1
        self.stats.failures[reason] = self.stats.failures.get(reason, 0) + 1
        self.stats.consecutive += 1
        self.stats.last_error = str(fault)
        ts = time.time()
        return [Reading(self.name, p.name, None, p.unit, FAULT, ts, mono, str(fault))
                for p in self.sensor.profile.points]

    def decode_registers(self, regs: dict[int, int]) -> dict[str, object]:
        """point name -> value, or the DeviceFault of that one point (e.g. out of range)."""
        values: dict[str, object] = {}
        for p in self.sensor.profile.points:
            try:
                if p.function in (1, 2):  # a coil or discrete input: 0 or 1 (the bus loop keys it by function)
                    values[p.name] = int(regs[(p.function, p.register)])
                    continue
                values[p.name] = decode_point(p, regs)
            except DeviceFault as f:
                values[p.name] = f
        return values

    def decode_fields(self, fields: dict[str, float]) -> dict[str, object]:
        values: dict[str, object] = {}
        for p in self.sensor.profile.points:
            key = p.field or p.name
            try:
                if key not in fields:
                    raise DeviceFault("frame", f"frame has no field {key!r}")
                values[p.name] = check_range(p, fields[key] * p.scale + p.offset)
            except DeviceFault as f:
                values[p.name] = f
        return values
