"""Simulated field devices, shipped in the package: tests, `gateway sim` and `make demo`
all drive the same ones. Never chosen silently in place of real hardware."""

from drivers.sim.modbus_device import BEHAVIOURS, Served, SimBus, SimUnit
from drivers.sim.registers import device_registers, encode_point
from drivers.sim.serial_emitter import A02yyuwEmitter, LineEmitter, a02yyuw_frame

__all__ = ["BEHAVIOURS", "A02yyuwEmitter", "LineEmitter", "Served", "SimBus", "SimUnit",
           "a02yyuw_frame", "device_registers", "encode_point"]
