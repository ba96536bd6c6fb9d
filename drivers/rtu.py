"""Modbus RTU master over any pyserial port or URL: /dev/ttyAMA0, /dev/serial/by-id/...,
a pty, socket://host:port.

pymodbus builds the request, checks the CRC and decodes the reply PDU; the serial I/O is
ours. pymodbus's sync serial client polls `in_waiting` with sleeps and waits an extra
interval after the last byte, which costs a large share of a 9600-baud transaction.
Here the reply length is known from its first three bytes (FC03/04: 5 + 2N, exception:
5), so we read the header, then exactly the rest, against one deadline per try (or the
rest's own wire time, when the header came just before it).

A frame is checked whole (Modbus over Serial Line V1.02 §2.5.1, §2.5.1.1): unit, function
or its exception, byte count against the request, CRC, and nothing left over: bytes that
come before the line has been quiet for t3.5 after the frame belong to it, and make it a
`trailing` fault. After any fault but a well-formed exception the line is flushed until it
has been quiet for t3.5 (at most FLUSH_MAX_S), so a unit still trickling a late answer
cannot garble the next unit's reply; the one exception is a timeout followed by a retry to
the same unit: no byte came to swallow, and a late answer is the repeated request's."""

from __future__ import annotations

import time

import serial

try:
    from serial.serialposix import Serial as _PosixSerial
except ImportError:  # not POSIX: always the public setter
    _PosixSerial = ()
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest, ReadInputRegistersRequest

from drivers.modbus import check_request, exception_detail, quiet_pymodbus
from drivers.modbus_bits import ExchangeBits
from gateway.errors import BusError, DeviceFault, os_reason

try:
    import termios

    _PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)
except ImportError:  # not POSIX
    _PORT_ERRORS = (serial.SerialException, OSError)

_REQUEST_CLASS = {3: ReadHoldingRegistersRequest, 4: ReadInputRegistersRequest}
# A babbling device could keep the line busy for ever: stop flushing after this long (the
# fault is reported either way; the next transaction's own checks catch what is left).
FLUSH_MAX_S = 1.0
# The quiet a flush waits for: t3.5, but at least 20 ms, because a USB RS485 adapter hands bytes
# over in bursts up to its latency timer apart (FTDI's default: 16 ms), and a line that only
# looks quiet between two bursts is not.
FLUSH_QUIET_MIN_S = 0.02


def bits_per_char(parity: str = "N", bytesize: int = 8, stopbits: int = 1) -> int:
    """Wire bits of one character. The RTU spec counts 11 (start, 8 data, parity or a
    second stop, stop); an 8N1 line really sends 10, but timing is specified in 11-bit
    characters, so we never count fewer."""
    return max(11, 1 + bytesize + (0 if parity == "N" else 1) + int(stopbits))


def frame_gap_s(baudrate: int, char_bits: int = 11) -> float:
    """t3.5: the silence that delimits RTU frames (fixed 1.75 ms above 19200 baud)."""
    return 0.00175 if baudrate > 19200 else 3.5 * char_bits / baudrate


def wire_time_s(nbytes: int, baudrate: int, char_bits: int = 11) -> float:
    return nbytes * char_bits / baudrate


def crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and FramerRTU.compute_CRC(frame[:-2]) == int.from_bytes(frame[-2:], "big")


def read_request(unit: int, function: int, address: int, count: int) -> bytes:
    """The RTU frame of an FC03/FC04 read, built by pymodbus's framer."""
    pdu = _REQUEST_CLASS[function](address=address, count=count, dev_id=unit)
    return FramerRTU(DecodePDU(False)).buildFrame(pdu)


def _with_crc(frame: bytes) -> bytes:
    return frame + FramerRTU.compute_CRC(frame).to_bytes(2, "big")


def _set_timeout(port, seconds: float) -> None:
    """pyserial's `timeout` setter reconfigures the tty (tcgetattr + tcsetattr) every time; at
    115200 baud two of those per transaction cost ~5 % of the bus. The POSIX read() only consults
    `_timeout` (select), so on a real tty the attribute is set directly (pyserial 3.5, pinned <4)."""
    if isinstance(port, _PosixSerial):
        port._timeout = seconds
    else:
        port.timeout = seconds


class RtuLink(ExchangeBits):
    """The master on one RS485 segment (or anything pyserial opens). One owner thread."""

    def __init__(self, name: str, port: str, *, baudrate: int = 9600, parity: str = "N",
                 bytesize: int = 8, stopbits: int = 1):
        self.name = name
        self.port = port
        self.baudrate = baudrate
        self.parity = parity
        self.bytesize = bytesize
        self.stopbits = stopbits
        self.char_bits = bits_per_char(parity, bytesize, stopbits)
        self.gap_s = frame_gap_s(baudrate, self.char_bits)
        self._serial: serial.SerialBase | None = None
        self._decoder = DecodePDU(False)
        self._quiet_since = 0.0  # when the line last went silent (monotonic)
        self._last_rx = 0.0  # last byte of the current transaction on the line
        quiet_pymodbus()

    def __repr__(self) -> str:
        return f"RtuLink({self.name!r}, {self.port!r}, {self.baudrate} {self.bytesize}{self.parity}{self.stopbits})"

    # -- port lifecycle --------------------------------------------------------------
    def open(self) -> None:
        if self.is_open:
            return
        try:
            # exclusive: a second process on the same RS485 port garbles both masters
            self._serial = serial.serial_for_url(
                self.port, baudrate=self.baudrate, parity=self.parity, bytesize=self.bytesize,
                stopbits=self.stopbits, timeout=0, write_timeout=1.0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as e:
            self._serial = None
            raise BusError(f"bus {self.name}: cannot open serial port {self.port}: {os_reason(e)}") from e
        self._quiet_since = time.monotonic()

    def close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except _PORT_ERRORS:
                pass  # the port is already gone (adapter unplugged); nothing left to release

    @property
    def is_open(self) -> bool:
        return self._serial is not None and self._serial.is_open

    def __enter__(self) -> RtuLink:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transactions -----------------------------------------------------------------
    def read_registers(self, unit: int, function: int, address: int, count: int, *,
                       timeout: float, retries: int) -> list[int]:
        check_request(unit, function, address, count)
        if self._serial is None:
            raise BusError(f"bus {self.name}: serial port {self.port} is not open")
        request = read_request(unit, function, address, count)
        faults: list[DeviceFault] = []
        tries = 1 + max(0, retries)
        for attempt in range(tries):
            try:
                try:
                    return self._transact(request, unit, function, count, timeout)
                except DeviceFault as fault:
                    if fault.reason == "exception":
                        raise  # the device answered on purpose: asking again changes nothing
                    faults.append(fault)
                    if fault.reason != "timeout" or attempt == tries - 1:
                        self._flush()
                    # else: not a byte came, so there is nothing to swallow; a slow unit's late answer
                    # is the answer to the very request the retry repeats, checked whole like any
                    # other. A flush here threw it away, and the retry then waited a full timeout.
            except _PORT_ERRORS as e:
                self.close()
                raise BusError(f"bus {self.name}: serial port {self.port} failed: {e}") from e
        last = faults[-1]
        reasons = ", ".join(f.reason for f in faults)
        raise DeviceFault(last.reason, f"unit {unit}: {last.detail} (tries: {reasons})")

    def exchange(self, unit: int, pdu: bytes, expected: int, reply_len, *, timeout: float,
                 retries: int) -> bytes:
        """Any other function (drivers/modbus_bits.py: writes, coil and input reads): send `pdu`
        to `unit`, return the reply's PDU. `expected`: the reply frame's length for the deadline;
        `reply_len(head)`: its length from its first three bytes. Faults and retries as read_registers."""
        if self._serial is None:
            raise BusError(f"bus {self.name}: serial port {self.port} is not open")
        request = _with_crc(bytes([unit]) + pdu)
        faults: list[DeviceFault] = []
        for _ in range(1 + max(0, retries)):
            try:
                frame = self._send(request, expected, timeout,
                                   lambda deadline: self._read_frame(unit, pdu[0], reply_len, deadline, timeout))
                return frame[1:-2]
            except DeviceFault as fault:
                if fault.reason == "exception":
                    raise
                self._flush()
                faults.append(fault)
            except _PORT_ERRORS as e:
                self.close()
                raise BusError(f"bus {self.name}: serial port {self.port} failed: {e}") from e
        raise DeviceFault(faults[-1].reason, f"unit {unit}: {faults[-1].detail} "
                                             f"(tries: {', '.join(f.reason for f in faults)})")

    def _transact(self, request: bytes, unit: int, function: int, count: int,
                  timeout: float) -> list[int]:
        return self._send(request, 5 + 2 * count, timeout,
                          lambda deadline: self._read_reply(unit, function, count, deadline, timeout))

    def _send(self, request: bytes, expected: int, timeout: float, read):
        port = self._serial
        assert port is not None
        wait = self._quiet_since + self.gap_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # t3.5 before a new frame, or slaves join it to the last one
        # A late reply to an earlier try would be taken for this one's.
        port.reset_input_buffer()
        port.write(request)
        # The timeout is the slave's allowance; the wire time of both frames comes on top
        # (a 125-register reply alone takes 290 ms at 9600 baud).
        sent = time.monotonic()
        deadline = sent + timeout + wire_time_s(len(request) + expected, self.baudrate, self.char_bits)
        # The gap runs from the last byte on the line: our request, or the last reply byte.
        self._last_rx = sent + wire_time_s(len(request), self.baudrate, self.char_bits)
        try:
            return read(deadline)
        finally:
            self._quiet_since = self._last_rx

    def _read_reply(self, unit: int, function: int, count: int, deadline: float,
                    timeout: float) -> list[int]:
        frame = self._read_frame(unit, function, lambda head: head[2] + 5, deadline, timeout)
        nbytes = frame[2]
        if nbytes != 2 * count:
            raise DeviceFault("bytecount", f"byte count {nbytes}, expected {2 * count}")
        pdu = self._decoder.decode(frame[1:-2])
        if pdu is None or len(pdu.registers) != count:
            raise DeviceFault("garbage", f"undecodable reply {frame.hex(' ')}")
        return list(pdu.registers)

    def _read_frame(self, unit: int, function: int, reply_len, deadline: float, timeout: float) -> bytes:
        """One whole reply frame, checked: unit, function (or an exception), length, CRC."""
        head = self._read_exact(3, deadline)
        if not head:
            raise DeviceFault("timeout", f"no reply within {timeout:g} s")
        if head[0] != unit:
            raise DeviceFault("unit-id", f"reply starts {self._drain_hex(head, deadline)}, not unit {unit}")
        if len(head) < 3:
            raise DeviceFault("short", f"reply cut off: {head.hex(' ')}")
        if head[1] == function | 0x80:
            frame = head + self._read_exact(2, self._rest_deadline(2, deadline))
            if len(frame) < 5:
                raise DeviceFault("short", f"exception reply cut off: {frame.hex(' ')}")
            if not crc_ok(frame):
                raise DeviceFault("crc", f"bad CRC in exception reply {frame.hex(' ')}")
            self._check_nothing_left(frame)
            raise DeviceFault("exception", exception_detail(frame[2]))
        if head[1] != function:
            raise DeviceFault("function", f"reply function {head[1]} to a function {function} request: "
                                          f"{self._drain_hex(head, deadline)}")
        total = reply_len(head)
        frame = head + self._read_exact(total - 3, self._rest_deadline(total - 3, deadline))
        if len(frame) < total:
            raise DeviceFault("short", f"reply cut off: {len(frame)} of {total} bytes")
        if not crc_ok(frame):
            raise DeviceFault("crc", f"bad CRC in reply {frame.hex(' ')}")
        self._check_nothing_left(frame)
        return frame

    def _rest_deadline(self, n: int, deadline: float) -> float:
        """When the n bytes after a frame's head must have come. The try's deadline allows for a reply
        starting within the slave's timeout; one that started later but before the deadline still
        comes whole within its own wire time (plus the quiet a flush waits for, for a USB adapter's
        bursts), and cutting it off as `short` would throw away an answer already on the wire."""
        return max(deadline, self._last_rx + wire_time_s(n, self.baudrate, self.char_bits)
                   + max(self.gap_s, FLUSH_QUIET_MIN_S))

    def _read_exact(self, n: int, deadline: float) -> bytes:
        """Up to n bytes, returning early only when the deadline passes."""
        port = self._serial
        assert port is not None
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            _set_timeout(port, left)
            chunk = port.read(n - len(buf))
            if chunk:
                self._last_rx = time.monotonic()
                buf += chunk
        return bytes(buf)

    def _check_nothing_left(self, frame: bytes) -> None:
        """The frame ends only when the line has been quiet for t3.5 after it (the wait the
        next request needs anyway, taken now): a byte before that belongs to this frame."""
        port = self._serial
        assert port is not None
        _set_timeout(port, self.gap_s)
        extra = port.read(256)
        if extra:
            self._last_rx = time.monotonic()
            raise DeviceFault("trailing", f"{len(extra)}+ bytes after the frame {frame.hex(' ')}: "
                                          f"{extra[:16].hex(' ')}")

    def _flush(self) -> None:
        """Swallow the line until it has been quiet for t3.5 (at least FLUSH_QUIET_MIN_S): a late or
        trickled answer, the rest of a garbled one. At most FLUSH_MAX_S, so the next frame starts
        on a clean line."""
        port = self._serial
        if port is None:
            return
        stop = time.monotonic() + FLUSH_MAX_S
        while (left := stop - time.monotonic()) > 0:
            _set_timeout(port, min(left, max(self.gap_s, FLUSH_QUIET_MIN_S)))
            if not port.read(256):
                return
            self._last_rx = time.monotonic()

    def _drain_hex(self, head: bytes, deadline: float) -> str:
        """Swallow the rest of an unparseable answer (until the line is quiet for t3.5),
        so that a retry starts on a clean line; return what came, for the detail."""
        port = self._serial
        assert port is not None
        junk = bytearray(head)
        while len(junk) < 512:
            left = min(deadline - time.monotonic(), max(self.gap_s, 0.002))
            if left <= 0:
                break
            _set_timeout(port, left)
            chunk = port.read(256)
            if not chunk:
                break
            self._last_rx = time.monotonic()
            junk += chunk
        shown = junk[:16].hex(" ")
        return shown + (f" ... ({len(junk)} bytes)" if len(junk) > 16 else "")
