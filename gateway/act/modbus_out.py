"""A Modbus output (an RS485 sounder, a channel of a relay module) as the safety loop sees it: a
Siren whose relay is a coil or register on a bus. Switching it is a put to its bus's write queue
(gateway/acquire/writes.py): the bus loop writes and reads back, never the safety loop."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.act.sirens import Siren


@dataclass(frozen=True, slots=True)
class ModbusChange:
    output: str
    on: bool
    level: str | None
    pattern: str | None
    reason: str
    mono: float
    pin: None = None

    def describe(self) -> str:
        why = f" ({self.level} {self.pattern})" if self.on and self.level and self.reason != "test" else ""
        return f"modbus {self.output} {'ON' if self.on else 'off'}{why} [{self.reason}]"


class ModbusOutput(Siren):
    def __init__(self, output, outlet):  # noqa: D107 - no GPIO pin to set up: the bus writes OFF first
        self.output = output
        self._outlet = outlet
        self.on = False
        self.level = self.pattern = None
        self.phase_start = 0.0
        self.sounding_since = None
        self.test_until = None

    def _switch(self, want: bool, reason: str, now: float) -> ModbusChange | None:
        if want == self.on:
            return None
        self._outlet.put(want, now)
        self.on = want
        return ModbusChange(self.name, want, self.level, self.pattern.name if self.pattern else None, reason, now)

    def status(self) -> dict:
        m = self.output.modbus
        return {"kind": "modbus", "pin": None, "bus": m.bus, "unit": m.unit, "on": self.on, "level": self.level,
                "pattern": self.pattern.name if self.pattern else None, "testing": self.test_until is not None}
