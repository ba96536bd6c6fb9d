"""Dry contacts on GPIO pins (a `gpio` bus): water-immersion probes, pressure switches, manual call
points wired between a BCM pin and ground. One thread reads every contact of the bus every 10 ms,
debounces it, and hands a reading (1 = the contact is active, 0 = not) to the sink every `poll_s`
and at once on a debounced change. A pin that cannot be read is a fault reading, never a 0."""

from __future__ import annotations

import logging
import threading
import time

from gateway.errors import GatewayError
from gateway.reading import FAULT, GOOD, Reading

log = logging.getLogger("gateway.acquire.contacts")
SCAN_S = 0.01


class _Contact:
    def __init__(self, sensor):
        self.sensor = sensor
        self.point = sensor.profile.points[0]
        self.raw: int | None = None
        self.raw_since = 0.0
        self.state: int | None = None  # debounced: 1 active, 0 not
        self.next_report = 0.0


class ContactLoop:
    """Every gpio sensor of one `gpio` bus, read from `gpio` (a drivers/gpio backend)."""

    def __init__(self, bus, sensors, gpio, sink):
        self.bus = bus
        self.devices: list = []  # no Modbus devices: `gateway read` and stats skip it
        self.contacts = [_Contact(s) for s in sensors]
        self.gpio = gpio
        self.sink = sink
        self.heartbeat = time.monotonic()
        self.allowance_s = 3.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for c in self.contacts:
            gpio.setup_input(c.sensor.pin, c.sensor.pull_up)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"contacts-{self.bus.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def _close(self) -> None:
        pass

    def _run(self) -> None:
        while not self._stop.wait(SCAN_S):
            now = time.monotonic()
            self.heartbeat = now
            for c in self.contacts:
                for r in self.scan(c, now):
                    self.sink(r)

    def scan(self, c: _Contact, now: float) -> list[Reading]:
        s = c.sensor
        try:
            level = self.gpio.read_input(s.pin)
        except (GatewayError, OSError, RuntimeError) as e:
            if now >= c.next_report:
                c.next_report = now + s.poll_s
                c.state = None
                return [Reading(s.name, c.point.name, None, c.point.unit, FAULT, time.time(), now,
                                f"gpio: GPIO{s.pin} cannot be read: {e}")]
            return []
        active = int(level == (0 if s.active_low else 1))
        if active != c.raw:
            c.raw, c.raw_since = active, now
        changed = False
        if c.raw != c.state and now - c.raw_since >= s.debounce_ms / 1000:
            c.state, changed = c.raw, True
        if c.state is None or not (changed or now >= c.next_report):
            return []
        c.next_report = now + s.poll_s
        return [Reading(s.name, c.point.name, c.state, c.point.unit, GOOD, time.time(), now)]
