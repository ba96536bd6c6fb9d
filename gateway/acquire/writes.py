"""Modbus output writes (RS485 sounders, relay modules): what each output should be, served by
its bus loop ahead of the polls.

The safety loop only says what it wants (`put`, never blocks: newest wins per output); the bus
loop, between two transactions, writes it (FC05 coil, FC06/FC16 register) and reads it back (FC01,
FC03). A write that is not confirmed (no answer, an exception, a wrong echo, a read-back that
disagrees) is a fault, reported once per streak, and is tried again every `retry_s` until it is
confirmed or the output is wanted otherwise."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from gateway.errors import BusError, DeviceFault

log = logging.getLogger("gateway.acquire.writes")


@dataclass
class _Want:
    output: str
    unit: int
    coil: int | None
    register: int | None
    on_value: int
    off_value: int
    multiple: bool
    timeout_s: float
    retry_s: float
    on: bool = False
    asked: float = 0.0  # monotonic time of the safety loop's request
    due: float = 0.0  # next attempt
    confirmed: bool = False
    problem: str | None = None
    attempts: int = 0


class OutputWrites:
    """The Modbus outputs of one bus. `on_problem(output, text | None)`: a fault, or its end."""

    def __init__(self, bus: str, on_problem=None):
        self.bus = bus
        self._on_problem = on_problem
        self._lock = threading.Lock()
        self._wants: dict[str, _Want] = {}
        self.ready = threading.Event()  # set when something is due: wakes the bus loop
        self.confirmed: deque[tuple[str, bool, float, float]] = deque(maxlen=1000)  # (output, on, asked, done)
        self.confirmed_count = 0  # ever (the deque is bounded)

    def add(self, output: str, *, unit: int, coil: int | None = None, register: int | None = None,
            on_value: int = 1, off_value: int = 0, multiple: bool = False, timeout_s: float = 0.3,
            retry_s: float = 1.0) -> None:
        """An output on this bus; it is written OFF first (a restart must not leave it as it was)."""
        with self._lock:
            self._wants[output] = _Want(output, unit, coil, register, on_value, off_value, multiple,
                                        timeout_s, retry_s, asked=time.monotonic())
        self.ready.set()

    def put(self, output: str, on: bool, mono: float) -> None:
        """Any thread (the safety loop): never blocks."""
        with self._lock:
            w = self._wants[output]
            w.on, w.asked, w.due, w.confirmed, w.attempts = on, mono, 0.0, False, 0
        self.ready.set()

    def next_due(self) -> float | None:
        with self._lock:
            dues = [w.due for w in self._wants.values() if not w.confirmed]
        return min(dues) if dues else None

    def serve(self, link, now: float | None = None) -> int:
        """Write every due output once (the bus loop's thread). Returns how many were tried."""
        now = time.monotonic() if now is None else now
        with self._lock:
            due = [w for w in self._wants.values() if not w.confirmed and w.due <= now]
            self.ready.clear()
        for w in due:
            with self._lock:
                on, asked = w.on, w.asked
            problem = self._write(link, w, on)
            with self._lock:
                stale = w.asked != asked  # wanted otherwise meanwhile: the newer wish is due at once
                w.attempts += 1
                if problem is None and not stale:
                    w.confirmed = True
                    self.confirmed.append((w.output, on, asked, time.monotonic()))
                    self.confirmed_count += 1
                elif not stale:
                    w.due = time.monotonic() + w.retry_s
                was, w.problem = w.problem, (problem if not stale else w.problem)
                changed = (problem is None) != (was is None) and not stale
            if changed:
                self._report(w.output, problem)
            if problem and not stale and was is None:
                log.warning("output %s: %s (trying again every %g s)", w.output, problem, w.retry_s)
        return len(due)

    def _write(self, link, w: _Want, on: bool) -> str | None:
        t = dict(timeout=w.timeout_s, retries=0)
        try:
            if w.coil is not None:
                link.write_coil(w.unit, w.coil, on, **t)
                back = link.read_bits(w.unit, 1, w.coil, 1, **t)[0]
                if back != on:
                    return (f"unit {w.unit} coil {w.coil} not confirmed: wrote {'ON' if on else 'OFF'}, "
                            f"reads back {'ON' if back else 'OFF'}")
            else:
                value = w.on_value if on else w.off_value
                link.write_register(w.unit, w.register, value, multiple=w.multiple, **t)
                back = link.read_registers(w.unit, 3, w.register, 1, **t)[0]
                if back != value:
                    return f"unit {w.unit} register {w.register} not confirmed: wrote {value}, reads back {back}"
        except DeviceFault as f:
            return f"unit {w.unit} {'coil ' + str(w.coil) if w.coil is not None else 'register ' + str(w.register)}" \
                   f" not confirmed: {f}"
        except BusError as e:
            return f"not written: {e}"
        return None

    def _report(self, output: str, problem: str | None) -> None:
        if self._on_problem:
            try:
                self._on_problem(output, problem)
            except Exception:  # noqa: BLE001 - the recorder's bug must not stop the writes
                log.exception("output %s: reporting a problem failed", output)

    def status(self, output: str) -> dict:
        with self._lock:
            w = self._wants[output]
            return {"confirmed": w.confirmed, "problem": w.problem, "wanted": "ON" if w.on else "off"}


class ModbusOutlet:
    """What the safety side of one Modbus output holds: a put that never blocks."""

    def __init__(self, output: str, writes: OutputWrites):
        self.output = output
        self.writes = writes

    def put(self, on: bool, mono: float) -> None:
        self.writes.put(self.output, on, mono)

    def status(self) -> dict:
        return self.writes.status(self.output)

    def stop(self, timeout: float = 0.0) -> bool:
        return True
