"""Simulated Modbus field devices: several units on one endpoint (a Modbus TCP port, or one
RTU line on a pty, serial port or socket:// URL), served by real pymodbus servers.

How each behaviour is made, all with pymodbus's public server hooks:
- values: a SimDevice per unit whose `action` copies the unit's register image (kept here,
  under a lock) into the served registers, so set_value() is atomic for 32-bit points;
- slow, wire timing: the same async `action` awaits before the reply is built;
- exception, short: `trace_pdu` swaps the reply PDU (an ExceptionResponse; one register
  fewer, so the byte count is consistent but wrong), and the framer adds a good CRC/MBAP;
- dead, garbage, bad_crc: `trace_packet` drops, replaces or corrupts the encoded reply.
Only adding a unit to a running server reaches into pymodbus internals (SimCore.devices)."""

from __future__ import annotations

import asyncio
import functools
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus import quiet_pymodbus
from drivers.rtu import frame_gap_s, wire_time_s
from drivers.sim.bits import BIT_FUNCTIONS, bit_block, pack
from drivers.sim.registers import device_registers, encode_point
from gateway.config.model import Profile
from gateway.errors import BusError

BEHAVIOURS = ("normal", "dead", "slow", "garbage", "bad_crc", "exception", "short", "stuck")
# stuck: a device that acknowledges every write and changes nothing (a relay welded or its coil
# driver dead): the read-back tells, the echo does not
GATEWAY_TARGET_FAILED = 11
_COARSE_S = 0.002  # asyncio sleeps the bulk of a delay, precise sleeping does the rest  # what a Modbus TCP gateway answers for a unit it cannot reach


@dataclass
class SimUnit:
    """One simulated field device on the bus."""
    unit_id: int
    profile: Profile | None
    image: dict[int, int]
    behaviour: str = "normal"
    arg: float | int | None = None
    requests: int = 0  # requests addressed to it, answered or not
    coils: dict[int, bool] | None = None  # a unit with bits is served in distinct blocks (drivers/sim/bits.py)
    inputs: dict[int, bool] | None = None
    writes: int = 0  # write requests that reached it


@dataclass(frozen=True)
class Served:
    """One request the bus saw: what the simulator did with it (for tests and the demo)."""
    mono: float
    unit: int
    function: int
    address: int
    count: int
    behaviour: str


def _runs(image: dict[int, int]) -> list[SimData]:
    """Contiguous register runs; the gaps answer 'illegal data address' like a device."""
    blocks: list[SimData] = []
    start = prev = None
    for addr in sorted(image):
        if start is None or addr != prev + 1:
            if start is not None:
                blocks.append(SimData(start, values=[image[a] for a in range(start, prev + 1)],
                                      datatype=DataType.REGISTERS))
            start = addr
        prev = addr
    if start is not None:
        blocks.append(SimData(start, values=[image[a] for a in range(start, prev + 1)],
                              datatype=DataType.REGISTERS))
    return blocks


class SimBus:
    """A bus of simulated devices. Construct with SimBus.tcp() or SimBus.rtu(), add_device(),
    then start(); stop() leaves no thread or task behind. Everything here is thread-safe."""

    def __init__(self, kind: str, endpoint: str, port: int = 0, *, baudrate: int = 9600,
                 parity: str = "N", bytesize: int = 8, stopbits: int = 1,
                 wire_timing: bool = False, seed: int = 485):
        if kind not in ("tcp", "rtu"):
            raise ValueError(f"SimBus kind {kind!r}: tcp or rtu")
        self.kind = kind
        self.endpoint = endpoint  # tcp: host; rtu: port path or pyserial URL
        self.port = port
        self.baudrate = baudrate
        self.parity, self.bytesize, self.stopbits = parity, bytesize, stopbits
        self.wire_timing = wire_timing
        self.served: deque[Served] = deque(maxlen=10_000)
        self._units: dict[int, SimUnit] = {}
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._rx_at = 0.0  # loop time of the last request bytes (wire timing counts from it)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        quiet_pymodbus()

    @classmethod
    def tcp(cls, host: str = "127.0.0.1", port: int = 0, **kw) -> SimBus:
        """Modbus TCP devices behind one port (0: a free one, see `address`)."""
        return cls("tcp", host, port, **kw)

    @classmethod
    def rtu(cls, url: str, baudrate: int = 9600, **kw) -> SimBus:
        """RTU devices on one line: a pty/serial path, or socket://host:port (served over TCP)."""
        return cls("rtu", url, baudrate=baudrate, **kw)

    # -- devices ------------------------------------------------------------------------
    def add_device(self, unit_id: int, profile: Profile | None, values: dict | None = None, *,
                   registers: dict[int, int] | None = None, coils: int = 0, inputs: int = 0) -> SimUnit:
        """A device of `profile` showing `values`; `registers` adds or overrides raw words;
        `coils`, `inputs`: how many coils (FC01/05/15) and discrete inputs (FC02) it has."""
        if not 1 <= unit_id <= 247:
            raise ValueError(f"unit {unit_id} outside 1..247")
        image = device_registers(profile, values, unit_id, baudrate=self.baudrate) if profile else {}
        image.update(registers or {})
        if profile:  # bit points of the profile (FC01/FC02) make the unit a bit device
            for p in profile.points:
                if p.function in (1, 2) and p.register is not None:
                    if p.function == 1:
                        coils = max(coils, p.register + 1)
                    else:
                        inputs = max(inputs, p.register + 1)
        if not image and not (coils or inputs):
            raise ValueError(f"unit {unit_id}: no registers to serve")
        unit = SimUnit(unit_id, profile, image or {0: 0})
        if coils or inputs:
            unit.coils = {a: False for a in range(coils)}
            unit.inputs = {a: False for a in range(inputs)}
            for p in profile.points if profile else ():
                if p.function in (1, 2) and p.register is not None and values and p.name in values:
                    (unit.coils if p.function == 1 else unit.inputs)[p.register] = bool(values[p.name])
        with self._lock:
            if unit_id in self._units:
                raise ValueError(f"unit {unit_id} is already on this bus")
            self._units[unit_id] = unit
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._attach(unit), self._loop).result(5)
        return unit

    def set_value(self, unit_id: int, point: str, value) -> None:
        unit = self._unit(unit_id)
        if unit.profile is None:
            raise ValueError(f"unit {unit_id} has no profile; use set_registers")
        matches = [p for p in unit.profile.points if p.name == point]
        if not matches:
            raise ValueError(f"profile {unit.profile.name} has no point {point!r}")
        if matches[0].function in (1, 2):
            self.set_bits(unit_id, "coils" if matches[0].function == 1 else "inputs",
                          {matches[0].register: bool(value)})
            return
        self.set_registers(unit_id, encode_point(matches[0], value))

    def set_bits(self, unit_id: int, kind: str, bits: dict[int, bool]) -> None:
        """`kind` coils or inputs: a contact closing, a relay switched by hand."""
        unit = self._unit(unit_id)
        image = getattr(unit, kind)
        if image is None or set(bits) - set(image):
            raise ValueError(f"unit {unit_id} has no {kind} {sorted(set(bits) - set(image or {}))}")
        with self._lock:
            image.update({a: bool(v) for a, v in bits.items()})

    def bits(self, unit_id: int, kind: str = "coils") -> dict[int, bool]:
        with self._lock:
            return dict(getattr(self._unit(unit_id), kind) or {})

    def set_registers(self, unit_id: int, registers: dict[int, int]) -> None:
        unit = self._unit(unit_id)
        missing = set(registers) - set(unit.image)
        if missing:
            raise ValueError(f"unit {unit_id} does not serve registers {sorted(missing)}")
        with self._lock:
            unit.image.update({a: v & 0xFFFF for a, v in registers.items()})

    def registers(self, unit_id: int) -> dict[int, int]:
        with self._lock:
            return dict(self._unit(unit_id).image)

    def behave(self, unit_id: int, behaviour: str, arg: float | int | None = None) -> None:
        """normal | dead | slow(seconds) | garbage | bad_crc | exception(code) | short."""
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour {behaviour!r}: one of {', '.join(BEHAVIOURS)}")
        if behaviour == "slow" and not (isinstance(arg, (int, float)) and arg >= 0):
            raise ValueError("slow needs the delay in seconds")
        if behaviour == "exception" and not (isinstance(arg, int) and 1 <= arg <= 255):
            raise ValueError("exception needs the Modbus exception code (1..255)")
        if behaviour == "bad_crc" and self.kind == "tcp":
            raise ValueError("bad_crc: Modbus TCP frames carry no CRC (use garbage)")
        unit = self._unit(unit_id)
        with self._lock:
            unit.behaviour, unit.arg = behaviour, arg

    def requests(self, unit_id: int) -> int:
        with self._lock:
            return self._unit(unit_id).requests

    def _unit(self, unit_id: int) -> SimUnit:
        try:
            return self._units[unit_id]
        except KeyError:
            raise ValueError(f"no unit {unit_id} on this bus") from None

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def address(self) -> str | tuple[str, int]:
        """Where a master connects: (host, port) for tcp, the port/URL for rtu."""
        if self.kind == "tcp":
            return (self.endpoint, self.port)
        if self.endpoint.startswith("socket://"):
            return f"socket://{self.endpoint[9:].rsplit(':', 1)[0]}:{self.port}"
        return self.endpoint

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> SimBus:
        if self._thread is not None:
            return self
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"simbus-{self.kind}-{self.endpoint}")
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        except (RuntimeError, OSError) as e:
            self.stop()
            raise BusError(f"simulated bus cannot listen on {self.endpoint}: {e}") from e
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
            self._loop = self._thread = self._server = None

    def __enter__(self) -> SimBus:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def _serve(self) -> None:
        # Unit 0 is a placeholder: pymodbus falls back to it for unknown units, whose
        # replies the trace hooks then drop (RTU) or turn into a gateway exception (TCP).
        with self._lock:
            devices = [SimDevice(0, simdata=[SimData(0, values=0, datatype=DataType.REGISTERS)])]
            devices += [self._sim_device(u) for u in self._units.values()]
        hooks = dict(trace_packet=self._trace_packet, trace_pdu=self._trace_pdu)
        if self.kind == "tcp":
            self._server = ModbusTcpServer(devices, address=(self.endpoint, self.port), **hooks)
        else:
            self._server = ModbusSerialServer(
                devices, framer=FramerType.RTU, port=self.address if self.port else self.endpoint,
                baudrate=self.baudrate, parity=self.parity, bytesize=self.bytesize,
                stopbits=self.stopbits, **hooks)
        await self._server.serve_forever(background=True)
        listener = self._server.transport
        if hasattr(listener, "sockets") and listener.sockets:  # a TCP listener: learn port 0
            self.port = listener.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for task in tasks:
            task.cancel()  # slow replies still sleeping
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _attach(self, unit: SimUnit) -> None:
        from pymodbus.simulator.simruntime import SimRuntime  # internal, pinned 3.16

        with self._lock:
            device = self._sim_device(unit)
        self._server.context.devices[unit.unit_id] = SimRuntime(device)

    def _sim_device(self, unit: SimUnit) -> SimDevice:
        action = functools.partial(self._on_request, unit.unit_id)
        if unit.coils is None:
            return SimDevice(unit.unit_id, simdata=_runs(unit.image), action=action)
        runs = _runs(unit.image)
        return SimDevice(unit.unit_id, action=action, simdata=(
            bit_block(len(unit.coils)), bit_block(len(unit.inputs)), runs, _runs(unit.image)))

    # -- the hooks (run in the server's loop) ----------------------------------------------
    async def _on_request(self, unit_id: int, function: int, start: int, address: int,
                          count: int, registers: list[int], written: list | None) -> None:
        with self._lock:
            unit = self._units[unit_id]
            behaviour, arg = unit.behaviour, unit.arg
            if written:
                unit.writes += 1
            if function in BIT_FUNCTIONS:
                image = getattr(unit, BIT_FUNCTIONS[function])
                if written and behaviour != "stuck":
                    image.update({address + i: bool(v) for i, v in enumerate(written)})
                pack(image, start, registers)
            else:
                if written and behaviour != "stuck":
                    unit.image.update({address + i: int(v) for i, v in enumerate(written)})
                for i in range(count):
                    registers[address - start + i] = unit.image.get(address + i, 0)
        delay_until = asyncio.get_running_loop().time()
        if behaviour == "slow":
            delay_until += float(arg)
        if self.wire_timing and behaviour != "dead":
            delay_until = max(delay_until, self._rx_at + self._wire_delay(behaviour, count))
        loop = asyncio.get_running_loop()
        if delay_until - loop.time() > _COARSE_S:
            await asyncio.sleep(delay_until - loop.time() - _COARSE_S)
        if self.wire_timing and (left := delay_until - loop.time()) > 0:
            # asyncio wakes up to ~1 ms late (epoll rounds to ms): that would be billed to
            # the master under test. The last stretch blocks the loop, as a UART would.
            time.sleep(left)
        elif (left := delay_until - loop.time()) > 0:
            await asyncio.sleep(left)

    def _wire_delay(self, behaviour: str, count: int) -> float:
        """Request on the wire, t3.5, reply on the wire: a pty delivers instantly."""
        reply = {"exception": 5, "short": 3 + 2 * count}.get(behaviour, 5 + 2 * count)
        return (wire_time_s(8 + reply, self.baudrate) + frame_gap_s(self.baudrate))

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            with self._lock:
                if (unit := self._units.get(pdu.dev_id)) is not None:
                    unit.requests += 1
                    self.served.append(Served(time.monotonic(), pdu.dev_id, pdu.function_code,
                                              pdu.address, pdu.count, unit.behaviour))
            return pdu
        with self._lock:
            unit = self._units.get(pdu.dev_id)
            behaviour, arg = (unit.behaviour, unit.arg) if unit else ("absent", None)
        function = pdu.function_code & 0x7F
        if behaviour == "absent" and self.kind == "tcp":
            return ExceptionResponse(function, GATEWAY_TARGET_FAILED, pdu.dev_id, pdu.transaction_id)
        if behaviour == "exception":
            return ExceptionResponse(function, int(arg), pdu.dev_id, pdu.transaction_id)
        if behaviour == "short" and not pdu.isError() and pdu.registers:
            pdu.registers = list(pdu.registers)[:-1]
        return pdu

    def _trace_packet(self, sending: bool, packet: bytes) -> bytes:
        if not sending:
            if self._loop is not None:
                self._rx_at = self._loop.time()
            return packet
        unit_id = packet[0] if self.kind == "rtu" else packet[6]
        with self._lock:
            unit = self._units.get(unit_id)
            behaviour = unit.behaviour if unit else "absent"
        if behaviour == "dead" or (behaviour == "absent" and self.kind == "rtu"):
            return b""  # a silent device: nothing goes on the wire
        if behaviour == "garbage":
            return self._garbage(packet, unit_id)
        if behaviour == "bad_crc":
            return packet[:-1] + bytes([packet[-1] ^ 0xFF])
        return packet

    def _garbage(self, packet: bytes, unit_id: int) -> bytes:
        rng = self._rng
        if self.kind == "rtu":
            # never starting with the unit id, so that a test knows what the master must say
            first = rng.choice([b for b in range(256) if b != unit_id])
            return bytes([first]) + rng.randbytes(rng.randint(4, len(packet) + 4))
        # TCP: the MBAP header stays (the stream keeps its framing), the PDU is junk
        # starting with an undefined function code.
        pdu = bytes([rng.randint(0x41, 0x7F)]) + rng.randbytes(rng.randint(1, 8))
        return packet[:4] + (len(pdu) + 1).to_bytes(2, "big") + packet[6:7] + pdu
