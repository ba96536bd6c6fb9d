"""The `sim` backend: pins that exist only in memory and remember every change.

Each physical level change is kept as {"t": unix time, "pin": bcm, "value": 0|1} for tests
(`history(pin)`) and, when `record` is set, appended as one JSON line to that file. The
file is written by a background thread: the siren path calls set_output and must never
wait on a disk, not even in a simulation, or the simulation would hide a latency bug."""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections import deque

from drivers.gpio.base import HIGH, LOW, GpioBackend, physical_level
from gateway.errors import OutputError

_STOP = object()
log = logging.getLogger("drivers.gpio.sim")


class SimGpio(GpioBackend):
    """Simulated pins. Inputs are driven by the test or demo: press/release/set_input."""

    name = "sim"

    def __init__(self, record: str | None = None, history_max: int = 100_000):
        # Reentrant: wait_for() runs the caller's predicate (which calls history()) under it.
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._outputs: dict[int, bool] = {}  # pin -> active_low
        self._inputs: dict[int, bool] = {}  # pin -> pull_up
        self._levels: dict[int, int] = {}
        self._history: deque[dict] = deque(maxlen=history_max)  # bounded: a pulsing demo runs for days
        self._count = 0  # changes ever recorded, also past history_max
        self._closed = False
        self.record = record
        self._queue: queue.SimpleQueue | None = None
        self._writer: threading.Thread | None = None
        if record:
            try:
                os.makedirs(os.path.dirname(os.path.abspath(record)), exist_ok=True)
                fh = open(record, "a", encoding="utf-8")
            except OSError as e:
                raise OutputError(f"[gpio] record: cannot write {record}: {e}") from e
            self._queue = queue.SimpleQueue()
            self._writer = threading.Thread(target=self._write, args=(fh,), name="sim-gpio-record", daemon=True)
            self._writer.start()

    # -- outputs ---------------------------------------------------------------------------
    def setup_output(self, pin: int, active_low: bool = True) -> None:
        with self._lock:
            self._check_open()
            if pin in self._inputs:
                raise OutputError(f"GPIO{pin} is already an input")
            self._outputs[pin] = active_low
            self._set_level(pin, physical_level(False, active_low))

    def set_output(self, pin: int, on: bool) -> None:
        with self._lock:
            self._check_open()
            active_low = self._outputs.get(pin)
            if active_low is None:
                raise OutputError(f"GPIO{pin} is not set up as an output")
            self._set_level(pin, physical_level(on, active_low))

    def _set_level(self, pin: int, value: int) -> None:
        # Called with the lock held. Only real changes are recorded, like a logic analyser.
        if self._levels.get(pin) == value:
            return
        self._levels[pin] = value
        ev = {"t": time.time(), "pin": pin, "value": value}
        self._history.append(ev)
        self._count += 1
        if self._queue is not None:
            self._queue.put(ev)
        self._changed.notify_all()

    # -- inputs ----------------------------------------------------------------------------
    def setup_input(self, pin: int, pull_up: bool = True) -> None:
        with self._lock:
            self._check_open()
            if pin in self._outputs:
                raise OutputError(f"GPIO{pin} is already an output")
            self._inputs[pin] = pull_up
            self._levels.setdefault(pin, HIGH if pull_up else LOW)

    def read_input(self, pin: int) -> int:
        with self._lock:
            if pin not in self._inputs:
                raise OutputError(f"GPIO{pin} is not set up as an input")
            return self._levels[pin]

    def set_input(self, pin: int, level: int) -> None:
        """Drive an input pin to a physical level (the simulated outside world)."""
        with self._lock:
            self._levels[pin] = 1 if level else 0

    def press(self, pin: int) -> None:
        """Close a button: it pulls against the pin's pull resistor."""
        with self._lock:
            pull_up = self._inputs.get(pin, True)
            self._levels[pin] = LOW if pull_up else HIGH

    def release(self, pin: int) -> None:
        with self._lock:
            pull_up = self._inputs.get(pin, True)
            self._levels[pin] = HIGH if pull_up else LOW

    # -- what tests look at ----------------------------------------------------------------
    def level(self, pin: int) -> int | None:
        with self._lock:
            return self._levels.get(pin)

    def history(self, pin: int | None = None) -> list[dict]:
        """Recorded changes, oldest first (copies), for one pin or all."""
        with self._lock:
            return [dict(e) for e in self._history if pin is None or e["pin"] == pin]

    def values(self, pin: int) -> list[int]:
        """Just the physical levels of one pin, e.g. [1, 0, 1] = off, on, off on an active-low relay."""
        return [e["value"] for e in self.history(pin)]

    def wait_for(self, predicate, timeout: float) -> bool:
        """Wait until predicate(self) is true, re-checked at each pin change; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    @property
    def change_count(self) -> int:
        with self._lock:
            return self._count

    # -- lifecycle -------------------------------------------------------------------------
    def cleanup(self) -> None:
        with self._lock:
            if self._closed:
                return
            for pin, active_low in self._outputs.items():
                self._set_level(pin, physical_level(False, active_low))
            self._closed = True
        if self._writer is not None:
            self._queue.put(_STOP)
            self._writer.join(timeout=5.0)

    def _check_open(self) -> None:
        if self._closed:
            raise OutputError("GPIO backend already cleaned up")

    def _write(self, fh) -> None:
        failed = False
        with fh:
            while True:
                ev = self._queue.get()
                if ev is _STOP:
                    return
                try:
                    fh.write(json.dumps(ev) + "\n")
                    # Flush when the burst is over: `tail -f` in the demo sees changes as they
                    # happen without one write() per change during a pulse storm.
                    if self._queue.empty():
                        fh.flush()
                except OSError as e:
                    # Keep draining so the queue cannot grow; the in-memory history is intact.
                    if not failed:
                        log.error("sim GPIO record %s: %s; pin changes are no longer written", self.record, e)
                    failed = True
