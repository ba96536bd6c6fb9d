"""Modbus TCP master (a plant-room PLC, or an RTU-to-TCP gateway with several units behind
it) on a plain socket.

A reply is checked whole before any of it becomes a value (Modbus Application Protocol
V1.1b3 §4.1, §6.3-6.4; Modbus Messaging on TCP/IP V1.0b §3.1.3): the MBAP header's
transaction id is ours, its protocol id 0, its length that of the PDU that follows, the
unit and function those we asked (or the function's exception, 0x80 + function), the byte
count 2 x the registers asked, and nothing left over. pymodbus's client decoded a PDU out
of whatever the length field promised and dropped the rest, so a frame with an MBAP length
of 11 and a byte count of 6 was a good value. Here every mismatch is a DeviceFault with its
own reason word (modbus.FRAME_FAULTS), and the connection is reset: after a wrong frame, or
a reply that did not come whole in time, we no longer know where the next frame starts in
the byte stream, and a late or trickled answer must not be read as the next unit's.
Coil and discrete-input reads (FC01/FC02, §6.1-6.2) are held to a byte count of ceil(n/8),
and writes (FC05/FC06/FC16, §6.5, 6.6, 6.12) to their echo, in the same whole-frame way."""

from __future__ import annotations

import select
import socket
import struct
import time

from drivers.modbus import check_request, exception_detail
from drivers.modbus_bits import check_echo, parse_bits, read_bits_pdu, write_coil_pdu, write_register_pdu
from gateway.errors import BusError, DeviceFault

_MBAP = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit
MAX_MBAP_LENGTH = 254  # unit id + the largest PDU (253 bytes)


class TcpLink:
    """The connection to one Modbus TCP endpoint. One owner thread."""

    def __init__(self, name: str, host: str, port: int = 502, *, connect_timeout: float = 1.0):
        self.name = name
        self.host = host
        self.port = int(port)
        self.connect_timeout = connect_timeout
        self._sock: socket.socket | None = None
        self._tid = 0
        self.resets = 0  # connections dropped to resynchronise (a wrong or late frame)

    def __repr__(self) -> str:
        return f"TcpLink({self.name!r}, {self.host}:{self.port})"

    @property
    def _where(self) -> str:
        return f"bus {self.name}: Modbus TCP {self.host}:{self.port}"

    def open(self) -> None:
        if self.is_open:
            return
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as e:
            raise BusError(f"{self._where} unreachable (refused or no answer within "
                           f"{self.connect_timeout:g} s: {e})") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def __enter__(self) -> TcpLink:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _reset(self) -> None:
        """A fresh connection, so the next transaction starts on a clean stream. If the
        endpoint does not take it, the link stays closed and the next read says so."""
        self.resets += 1
        self.close()
        try:
            self.open()
        except BusError:
            pass

    # -- transactions -----------------------------------------------------------------
    def read_registers(self, unit: int, function: int, address: int, count: int, *,
                       timeout: float, retries: int) -> list[int]:
        check_request(unit, function, address, count)
        return self._retried(unit, timeout, retries,
                             lambda: self._transact(unit, function, address, count, timeout))

    # -- coils, discrete inputs and writes (the same methods RtuLink has, drivers/modbus_bits.py),
    # checked whole like a register read: byte count ceil(n/8) for bits, the echo for a write --
    def read_bits(self, unit: int, function: int, address: int, count: int, *, timeout: float,
                  retries: int) -> list[bool]:
        request = read_bits_pdu(function, address, count)  # the same span checks as RTU

        def check(pdu: bytes) -> list[bool]:
            nbytes = (count + 7) // 8
            if len(pdu) < 2 or pdu[1] != nbytes:
                raise DeviceFault("bytecount", f"byte count {pdu[1] if len(pdu) > 1 else None}, "
                                               f"expected {nbytes} for {count} bits")
            if len(pdu) != 2 + nbytes:
                raise DeviceFault("mbap-length", f"MBAP length {len(pdu) + 1}, but byte count {nbytes} "
                                                 f"makes it {nbytes + 3}")
            return parse_bits(pdu, function, count)

        return self._retried(unit, timeout, retries, lambda: self._exchange(unit, request, timeout, check))

    def write_coil(self, unit: int, address: int, on: bool, *, timeout: float, retries: int) -> None:
        self._write(unit, write_coil_pdu(address, on), timeout, retries)

    def write_register(self, unit: int, address: int, value: int, *, multiple: bool = False,
                       timeout: float, retries: int) -> None:
        self._write(unit, write_register_pdu(address, value, multiple), timeout, retries)

    def _write(self, unit: int, request: bytes, timeout: float, retries: int) -> None:
        def check(pdu: bytes) -> None:
            if len(pdu) != 5:  # FC05/06/16 answer function + address + value/quantity
                raise DeviceFault("mbap-length", f"MBAP length {len(pdu) + 1} for a write reply (6)")
            check_echo(request, pdu)

        self._retried(unit, timeout, retries, lambda: self._exchange(unit, request, timeout, check))

    def _retried(self, unit: int, timeout: float, retries: int, transact):
        faults: list[DeviceFault] = []
        for _ in range(1 + max(0, retries)):
            if self._sock is None:
                raise BusError(f"{self._where} is not open")
            try:
                return transact()
            except DeviceFault as fault:
                if fault.reason == "exception":
                    raise  # a whole, valid answer: the stream is in step, asking again changes nothing
                self._reset()
                faults.append(fault)
            except OSError as e:  # reset by peer, broken pipe
                self.close()
                raise BusError(f"{self._where} lost: {e}") from e
        last = faults[-1]
        tries = ", ".join(f.reason for f in faults)
        raise DeviceFault(last.reason, f"unit {unit}: {last.detail} (tries: {tries})")

    def _transact(self, unit: int, function: int, address: int, count: int, timeout: float) -> list[int]:
        def check(pdu: bytes) -> list[int]:
            byte_count = pdu[1] if len(pdu) > 1 else None
            if byte_count != 2 * count:
                raise DeviceFault("bytecount", f"byte count {byte_count}, expected {2 * count} "
                                               f"for {count} registers")
            if len(pdu) != byte_count + 2:
                raise DeviceFault("mbap-length", f"MBAP length {len(pdu) + 1}, but byte count {byte_count} "
                                                 f"makes the PDU {byte_count + 2} bytes (length {byte_count + 3})")
            return list(struct.unpack(f">{count}H", pdu[2:]))

        return self._exchange(unit, struct.pack(">BHH", function, address, count), timeout, check)

    def _exchange(self, unit: int, request: bytes, timeout: float, check):
        """Send one request PDU to `unit`; the reply's header, unit, function and exception are
        checked here, its body by `check(pdu)`, then nothing may be left over."""
        function = request[0]
        sock = self._sock
        assert sock is not None
        if self._waiting():
            # Bytes nobody asked for (the tail of a frame after a complete one): where the next
            # frame starts is unknown, so start over rather than blame the unit we ask next.
            self._reset()
            sock = self._sock
            if sock is None:
                raise BusError(f"{self._where} is not open")
        self._tid = self._tid % 0xFFFF + 1
        tid = self._tid
        sock.sendall(_MBAP.pack(tid, 0, len(request) + 1, unit) + request)
        deadline = time.monotonic() + timeout
        head = self._recv_exact(_MBAP.size, deadline)
        if not head:
            raise DeviceFault("timeout", f"no reply within {timeout:g} s")
        if len(head) < _MBAP.size:
            raise DeviceFault("short", f"reply cut off after {len(head)} bytes: {head.hex(' ')}")
        r_tid, protocol, length, r_unit = _MBAP.unpack(head)
        if protocol != 0:
            raise DeviceFault("protocol", f"MBAP protocol id {protocol}, not 0 (Modbus): {head.hex(' ')}")
        if r_tid != tid:
            raise DeviceFault("tid", f"transaction id {r_tid}, expected {tid}")
        if not 2 <= length <= MAX_MBAP_LENGTH:
            raise DeviceFault("mbap-length", f"MBAP length {length}, outside 2..{MAX_MBAP_LENGTH}")
        pdu = self._recv_exact(length - 1, deadline)
        if len(pdu) < length - 1:
            raise DeviceFault("short", f"reply cut off: {len(pdu)} of the {length - 1} PDU bytes its "
                                       f"MBAP length promised")
        if r_unit != unit:
            raise DeviceFault("unit-id", f"reply from unit {r_unit}")
        if pdu[0] == function | 0x80:
            if length != 3:
                raise DeviceFault("mbap-length", f"MBAP length {length} for an exception reply (3)")
            self._check_nothing_left()
            raise DeviceFault("exception", exception_detail(pdu[1]))
        if pdu[0] != function:
            raise DeviceFault("function", f"function {pdu[0]} reply to a function {function} request")
        value = check(pdu)
        self._check_nothing_left()
        return value

    def _recv_exact(self, n: int, deadline: float) -> bytes:
        """Up to n bytes; fewer only when the deadline passes. A closed stream is a BusError."""
        sock = self._sock
        assert sock is not None
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(n - len(buf))
            except (TimeoutError, socket.timeout):
                break
            if not chunk:
                self.close()
                raise BusError(f"{self._where} closed the connection")
            buf += chunk
        return bytes(buf)

    def _waiting(self) -> bool:
        sock = self._sock
        return sock is not None and bool(select.select([sock], [], [], 0)[0])

    def _check_nothing_left(self) -> None:
        """A frame is whole only if nothing of it is left over: bytes already here after the
        length the header promised are a wrong frame, not the start of the next one."""
        sock = self._sock
        assert sock is not None
        if not self._waiting():
            return
        try:
            extra = sock.recv(256, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        if extra:
            raise DeviceFault("trailing", f"{len(extra)}+ bytes after the frame: {extra[:16].hex(' ')}")
        # b"": the peer closed after a whole frame; the value stands, the next read finds out.
