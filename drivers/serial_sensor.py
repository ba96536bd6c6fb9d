"""Plain serial sensors that stream readings on their own: a fixed binary frame (the
A02YYUW ultrasonic, 0xFF H L SUM) or a text line parsed by a pattern with named groups.

read() drains what is buffered and returns the NEWEST valid frame: the sensor keeps
talking between polls and only its latest word counts."""

from __future__ import annotations

import re
import time

import serial

from gateway.errors import BusError, DeviceFault, os_reason

try:
    import termios

    _PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)
except ImportError:  # not POSIX
    _PORT_ERRORS = (serial.SerialException, OSError)

FRAMES = ("a02yyuw", "line")
_MAX_PENDING = 4096  # a line sensor that never sends a newline must not grow memory
_DRAIN_CHUNK = 4096
_DRAIN_MAX = 1 << 20  # a port that never stops talking still ends a drain (1 MB: ~18 min at 9600 baud)
_KEEP = 8192  # of a drained backlog, the tail that is parsed (many frames; any line shorter)


def parse_a02yyuw(buf: bytes) -> tuple[list[dict[str, float]], int, bytes]:
    """Frames found in buf, the number of bad-checksum candidates, and the unparsed tail
    (an incomplete frame). Resynchronises on the next 0xFF after a bad checksum."""
    frames: list[dict[str, float]] = []
    bad = 0
    i = 0
    n = len(buf)
    while True:
        i = buf.find(b"\xff", i)
        if i < 0:
            return frames, bad, b""
        if n - i < 4:
            return frames, bad, buf[i:]
        high, low, total = buf[i + 1], buf[i + 2], buf[i + 3]
        if high == 0xFF:
            # FF FF 00 FE checks out as 65280 mm, yet the sensor stops at 4500 mm: the
            # second 0xFF is the real frame start (a bad frame before it, or noise).
            i += 1
            continue
        if (0xFF + high + low) & 0xFF == total:
            frames.append({"distance": float(high * 256 + low)})
            i += 4
        else:
            bad += 1
            i += 1


def parse_lines(buf: bytes, pattern: re.Pattern) -> tuple[list[dict[str, float]], int, bytes]:
    """Complete lines of buf parsed by `pattern` (every named group a float)."""
    frames: list[dict[str, float]] = []
    bad = 0
    *lines, tail = buf.split(b"\n")
    for raw in lines:
        text = raw.strip(b"\r\x00 ")
        if not text:
            continue
        m = pattern.search(text.decode("ascii", "replace"))
        try:
            if m is None:
                raise ValueError
            frames.append({k: float(v) for k, v in m.groupdict().items()})
        except (ValueError, TypeError):  # no match, or a group that is not a number
            bad += 1
    return frames, bad, tail[-_MAX_PENDING:]


class SerialSensorPort:
    """A serial port with one streaming sensor on it. One owner thread."""

    def __init__(self, url: str, baudrate: int = 9600, parity: str = "N", bytesize: int = 8,
                 stopbits: int = 1, frame: str | None = "a02yyuw", pattern: str | None = None):
        if frame not in FRAMES:
            raise ValueError(f"serial frame {frame!r}: one of {', '.join(FRAMES)}")
        if frame == "line":
            if not pattern:
                raise ValueError("a line sensor needs a pattern with named groups")
            self._pattern = re.compile(pattern)
            if not self._pattern.groupindex:
                raise ValueError(f"pattern {pattern!r} has no named group")
        self.url = url
        self.baudrate, self.parity, self.bytesize, self.stopbits = baudrate, parity, bytesize, stopbits
        self.frame = frame
        self.name = url
        self._serial: serial.SerialBase | None = None
        self._pending = b""

    def __repr__(self) -> str:
        return f"SerialSensorPort({self.url!r}, {self.baudrate}, frame={self.frame!r})"

    def open(self) -> None:
        if self.is_open:
            return
        try:
            self._serial = serial.serial_for_url(
                self.url, baudrate=self.baudrate, parity=self.parity, bytesize=self.bytesize,
                stopbits=self.stopbits, timeout=0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as e:
            self._serial = None
            raise BusError(f"cannot open serial port {self.url}: {os_reason(e)}") from e
        self._pending = b""

    def close(self) -> None:
        port, self._serial = self._serial, None
        self._pending = b""
        if port is not None:
            try:
                port.close()
            except _PORT_ERRORS:
                pass  # already gone with its adapter; nothing left to release

    @property
    def is_open(self) -> bool:
        return self._serial is not None and self._serial.is_open

    def __enter__(self) -> SerialSensorPort:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _parse(self, buf: bytes):
        if self.frame == "a02yyuw":
            return parse_a02yyuw(buf)
        return parse_lines(buf, self._pattern)

    def _drain(self) -> bytes:
        """Everything buffered now, without waiting. `in_waiting` is no measure: on socket://
        pyserial reports at most 1 (select() says "readable", not how much), so reading what it
        says would take one byte per call and leave the rest of the backlog for later polls."""
        port = self._serial
        port.timeout = 0
        out = bytearray()
        while len(out) < _DRAIN_MAX:
            chunk = port.read(_DRAIN_CHUNK)
            if not chunk:
                break
            out += chunk
        if len(out) > _KEEP:
            out = out[-_KEEP:]  # a long backlog: only its newest frames can matter
            self._pending = b""  # and what was left of the last read no longer joins it
        return bytes(out)

    def read(self, timeout: float) -> dict[str, float]:
        """Fields of the newest valid frame, waiting up to `timeout` for one. Whatever was
        buffered is drained first (tty, pty, socket://, rfc2217:// alike): a backlog of old
        frames is never taken for the present, and a sensor that stopped is a timeout at the
        next poll after its last frame."""
        if self._serial is None:
            raise BusError(f"serial port {self.url} is not open")
        deadline = time.monotonic() + timeout
        bad = 0
        try:
            chunk = self._drain()
            while True:
                frames, nbad, self._pending = self._parse(self._pending + chunk)
                bad += nbad
                if frames:
                    return frames[-1]
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._serial.timeout = left
                chunk = self._serial.read(1)  # wake on the first byte, then take all there is
                if chunk:
                    chunk += self._drain()
        except _PORT_ERRORS as e:
            self.close()
            raise BusError(f"serial port {self.url} failed: {e}") from e
        if bad:
            reason = "checksum" if self.frame == "a02yyuw" else "frame"
            raise DeviceFault(reason, f"{bad} bad frame(s) and no valid one in {timeout:g} s")
        raise DeviceFault("timeout", f"no frame within {timeout:g} s")
