"""Modbus TCP master (a plant-room PLC, or an RTU-to-TCP gateway with several units behind
it), on pymodbus's sync ModbusTcpClient with per-call timeout and retries."""

from __future__ import annotations

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException

from drivers.modbus import check_request, exception_detail, quiet_pymodbus
from drivers.modbus_bits import read_bits_pdu
from gateway.errors import BusError, DeviceFault


class TcpLink:
    """The connection to one Modbus TCP endpoint. One owner thread."""

    def __init__(self, name: str, host: str, port: int = 502, *, connect_timeout: float = 1.0):
        self.name = name
        self.host = host
        self.port = int(port)
        self.connect_timeout = connect_timeout
        self._client: ModbusTcpClient | None = None
        self._unit = 0
        self._junk = False  # bytes came that were not a frame for the unit asked
        quiet_pymodbus()

    def __repr__(self) -> str:
        return f"TcpLink({self.name!r}, {self.host}:{self.port})"

    def open(self) -> None:
        if self.is_open:
            return
        client = ModbusTcpClient(self.host, port=self.port, timeout=self.connect_timeout,
                                 retries=0, trace_packet=self._trace_packet)
        if not client.connect():
            client.close()
            raise BusError(f"bus {self.name}: Modbus TCP {self.host}:{self.port} unreachable "
                           f"(refused or no answer within {self.connect_timeout:g} s)")
        self._client = client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    @property
    def is_open(self) -> bool:
        return self._client is not None

    def __enter__(self) -> TcpLink:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read_registers(self, unit: int, function: int, address: int, count: int, *,
                       timeout: float, retries: int) -> list[int]:
        check_request(unit, function, address, count)
        reply = self._call(unit, function, timeout, retries,
                           lambda c: (c.read_holding_registers if function == 3 else c.read_input_registers)(
                               address, count=count, device_id=unit))
        if len(reply.registers) != count:
            raise DeviceFault("bytecount", f"unit {unit}: {len(reply.registers)} registers, "
                                           f"expected {count}")
        return list(reply.registers)

    # -- coils, discrete inputs and writes (the same methods RtuLink has, drivers/modbus_bits.py) --
    def read_bits(self, unit: int, function: int, address: int, count: int, *, timeout: float,
                  retries: int) -> list[bool]:
        read_bits_pdu(function, address, count)  # the same span checks as RTU
        reply = self._call(unit, function, timeout, retries,
                           lambda c: (c.read_coils if function == 1 else c.read_discrete_inputs)(
                               address, count=count, device_id=unit))
        if len(reply.bits) < count:
            raise DeviceFault("bytecount", f"unit {unit}: {len(reply.bits)} bits, expected {count}")
        return [bool(b) for b in reply.bits[:count]]

    def write_coil(self, unit: int, address: int, on: bool, *, timeout: float, retries: int) -> None:
        reply = self._call(unit, 5, timeout, retries, lambda c: c.write_coil(address, on, device_id=unit))
        if reply.address != address or list(reply.bits[:1]) != [on]:
            raise DeviceFault("garbage", f"unit {unit}: coil {address} write not echoed ({reply})")

    def write_register(self, unit: int, address: int, value: int, *, multiple: bool = False,
                       timeout: float, retries: int) -> None:
        if multiple:
            reply = self._call(unit, 16, timeout, retries,
                               lambda c: c.write_registers(address, [value], device_id=unit))
            echoed = reply.address == address and reply.count == 1
        else:
            reply = self._call(unit, 6, timeout, retries, lambda c: c.write_register(address, value, device_id=unit))
            echoed = reply.address == address and list(reply.registers[:1]) == [value]
        if not echoed:
            raise DeviceFault("garbage", f"unit {unit}: register {address} write not echoed ({reply})")

    def _call(self, unit: int, function: int, timeout: float, retries: int, request):
        client = self._client
        if client is None:
            raise BusError(f"bus {self.name}: Modbus TCP {self.host}:{self.port} is not open")
        client.comm_params.timeout_connect = timeout
        client.transaction.retries = max(0, retries)
        # pymodbus drops the connection after retries+3 unanswered requests in a row: one
        # dead unit behind a gateway would cut off the live ones. Backing off a dead unit
        # is the caller's job.
        client.transaction.count_until_disconnect = client.transaction.max_until_disconnect
        self._unit, self._junk = unit, False
        try:
            reply = request(client)
        except ConnectionException as e:
            self.close()
            raise BusError(f"bus {self.name}: Modbus TCP {self.host}:{self.port} lost: {e.string}") from e
        except ModbusIOException as e:
            # fcode is set only on pymodbus's "no response" error; None: undecodable reply
            if e.fcode is None or self._junk:
                client.close()  # resynchronise the byte stream; reconnects on the next call
                raise DeviceFault("garbage", f"unit {unit}: unparseable reply") from e
            raise DeviceFault("timeout", f"unit {unit}: no reply within {timeout:g} s "
                                         f"({1 + max(0, retries)} tries)") from e
        except OSError as e:  # reset by peer while reading
            self.close()
            raise BusError(f"bus {self.name}: Modbus TCP {self.host}:{self.port} lost: {e}") from e
        if reply.isError():
            raise DeviceFault("exception", exception_detail(reply.exception_code))
        if reply.function_code != function:
            raise DeviceFault("garbage", f"unit {unit}: function {reply.function_code} reply "
                                         f"to a function {function} request")
        return reply

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        # A late reply to an earlier request is a well-formed frame for our unit (pymodbus
        # skips it by transaction id): that is not garbage. Anything else is.
        if not sending and data and not self._plausible(data):
            self._junk = True
        return data

    def _plausible(self, data: bytes) -> bool:
        if len(data) < 7:
            return True  # a header still arriving; judged when the rest comes
        length = int.from_bytes(data[4:6], "big")
        return data[2:4] == b"\0\0" and 2 <= length <= 254 and data[6] == self._unit
