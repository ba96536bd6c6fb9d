"""The one small interface the acquisition uses to talk Modbus, and the factory that
picks the backend named in the config (`rtu` or `tcp`). There is no fallback: a bus
type without a backend is a configuration error, never a silent fake."""

from __future__ import annotations

import logging
import os
from typing import Protocol

from gateway.config.model import Bus
from gateway.errors import ConfigError

READ_FUNCTIONS = (3, 4)  # holding, input registers: all a sensor gateway reads

# The reason word of every way a transaction fails (DeviceFault.reason); docs/modbus-frames.md
# says what each means and which transport uses it. Any of them but `exception` resets the
# stream: the TCP connection is reopened, the RTU line flushed until it has been quiet for t3.5.
FRAME_FAULTS = {
    "timeout": "no byte of a reply within the device's timeout",
    "short": "the reply stopped before the length its header (or byte count) promised",
    "tid": "TCP: an MBAP transaction id that is not the request's",
    "protocol": "TCP: an MBAP protocol id that is not 0",
    "mbap-length": "TCP: an MBAP length outside 2..254, or not the PDU's (byte count + 3 for a read, 3 for an exception)",
    "unit-id": "the reply is from another unit (RTU: the first byte is not the unit asked)",
    "function": "the reply's function is neither the request's nor its exception (0x80 + function)",
    "bytecount": "a byte count that is not 2 x the registers asked",
    "crc": "RTU: the CRC-16 does not match the frame",
    "trailing": "bytes after a complete frame (TCP: already received; RTU: before the line went quiet for t3.5)",
    "exception": "the device answered with a Modbus exception (a valid frame: not asked again)",
    "garbage": "RTU: a frame that passed every check above and still did not decode (a bug, not a device)",
}
MAX_READ_COUNT = 125  # Modbus limit for FC03/FC04

# Modbus exception codes, named as in the spec, so a technician reads the detail.
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


def quiet_pymodbus() -> None:
    """pymodbus logs every timeout at ERROR with a frame dump; our DeviceFault already says
    it once, per device, where it is counted. Its own log stays available with DEBUG=1."""
    if not os.environ.get("DEBUG"):
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def exception_detail(code: int) -> str:
    return f"code {code} {EXCEPTION_NAMES.get(code, 'unknown')}"


def check_request(unit: int, function: int, address: int, count: int) -> None:
    """Reject requests no device could answer: a programming error, not a device fault."""
    if not 1 <= unit <= 247:
        raise ValueError(f"Modbus unit {unit} outside 1..247 (0 is broadcast: no reply)")
    if function not in READ_FUNCTIONS:
        raise ValueError(f"function {function} is not a register read (3 or 4)")
    if not 0 <= address <= 0xFFFF or not 1 <= count <= MAX_READ_COUNT or address + count > 0x10000:
        raise ValueError(f"register span {address}+{count} invalid (1..{MAX_READ_COUNT} registers)")


class ModbusLink(Protocol):
    """A Modbus master on one bus. One owner thread per link; it holds no threads itself.

    read_registers raises DeviceFault(reason) when one device failed one transaction
    (a reason of FRAME_FAULTS) and BusError when the transport failed
    (port vanished, connection refused or reset): the link is then closed, and open()
    must be called again later. Nothing is counted here; the caller counts per device."""

    name: str

    def open(self) -> None: ...

    def close(self) -> None: ...

    @property
    def is_open(self) -> bool: ...

    def read_registers(self, unit: int, function: int, address: int, count: int, *,
                       timeout: float, retries: int) -> list[int]: ...


def open_link(bus: Bus) -> ModbusLink:
    """The link for a configured Modbus bus (not yet opened: call open())."""
    if bus.type == "rtu":
        from drivers.rtu import RtuLink

        return RtuLink(bus.name, str(bus.port), baudrate=bus.baudrate, parity=bus.parity,
                       bytesize=bus.bytesize, stopbits=bus.stopbits)
    if bus.type == "tcp":
        from drivers.tcp import TcpLink

        if not bus.host:
            raise ConfigError(f"[buses.{bus.name}] host: a tcp bus needs a host")
        return TcpLink(bus.name, bus.host, int(bus.port), connect_timeout=max(1.0, bus.timeout_s))
    raise ConfigError(f"[buses.{bus.name}] type: '{bus.type}' is not a Modbus bus (rtu, tcp)")
