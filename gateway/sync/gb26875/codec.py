"""GB/T 26875.3-2011 §8 framing (docs/gb26875.md cites the sources of each field):

    '@@' | serial 2 (low byte first) | version 2 (main, user) | time label 6 (s, min, h, d, mon, yy)
    | source 6 (low byte first) | destination 6 | data length 2 (low byte first, <= 1024)
    | command 1 | application data unit (length bytes) | checksum 1 | '##'

checksum = arithmetic sum, mod 256, of bytes 3..27 (the control unit) and the data unit.
A frame from the centre is checked whole (start, length bound, end, checksum) before any of it is
believed; `FrameReader` resynchronises on the next '@@' after garbage and never raises on input.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

START, END = b"@@", b"##"
HEADER = 27  # '@@' .. command byte
MAX_DATA = 1024
CONTROL, SEND, CONFIRM, REQUEST, ANSWER, DENY = 1, 2, 3, 4, 5, 6
COMMANDS = {CONTROL: "control", SEND: "send", CONFIRM: "confirm", REQUEST: "request", ANSWER: "answer",
            DENY: "deny"}
VERSION = (1, 1)  # main version fixed at 1 by the standard; the user version is ours


class FrameError(ValueError):
    """A frame that failed a check; `serial` is set when the header was readable (to deny it)."""

    def __init__(self, message: str, serial: int | None = None):
        super().__init__(message)
        self.serial = serial


@dataclass(frozen=True)
class Frame:
    serial: int
    command: int
    source: bytes  # 6 bytes as on the wire (low byte first)
    destination: bytes
    data: bytes = b""
    time_label: tuple = (0, 0, 0, 1, 1, 0)  # s, min, h, d, mon, yy
    version: tuple = VERSION

    def encode(self) -> bytes:
        if len(self.data) > MAX_DATA:
            raise FrameError(f"application data unit of {len(self.data)} bytes is over {MAX_DATA}")
        control = (struct.pack("<H", self.serial & 0xFFFF) + bytes(self.version) + bytes(self.time_label)
                   + self.source + self.destination + struct.pack("<H", len(self.data)) + bytes([self.command]))
        return START + control + self.data + bytes([checksum(control + self.data)]) + END

    def as_dict(self) -> dict:
        return {"serial": self.serial, "command": COMMANDS.get(self.command, self.command),
                "version": f"{self.version[0]}.{self.version[1]}", "time": time_text(self.time_label),
                "source": address_text(self.source), "destination": address_text(self.destination),
                "data": self.data.hex()}


def checksum(control_and_data: bytes) -> int:
    return sum(control_and_data) & 0xFF


def time_label(ts: float | None = None) -> tuple:
    """The 6-byte time label of §8.2.2 in local time (the centre's and the device's wall clock)."""
    t = time.localtime(time.time() if ts is None else ts)
    return (t.tm_sec, t.tm_min, t.tm_hour, t.tm_mday, t.tm_mon, t.tm_year % 100)


def time_of(label: bytes | tuple) -> float | None:
    """Seconds since the epoch of a time label, or None when a field is out of range."""
    s, mi, h, d, mo, y = label
    if not (s < 60 and mi < 60 and h < 24 and 1 <= d <= 31 and 1 <= mo <= 12 and y < 100):
        return None
    try:
        return time.mktime((2000 + y, mo, d, h, mi, s, 0, 0, -1))
    except (OverflowError, ValueError):
        return None


def time_text(label) -> str:
    s, mi, h, d, mo, y = label
    return f"20{y:02d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}"


def address(text: str) -> bytes:
    """Config form (12 hex digits, most significant first, as printed on a label) -> 6 wire bytes,
    low byte first (§8.1: source and destination addresses are transmitted low byte first)."""
    return bytes.fromhex(text)[::-1]


def address_text(wire: bytes) -> str:
    return wire[::-1].hex()


def decode(raw: bytes) -> Frame:
    """One whole frame (exactly its bytes) -> Frame, or FrameError naming what is wrong."""
    if len(raw) < HEADER + 3:
        raise FrameError(f"frame of {len(raw)} bytes is shorter than the {HEADER + 3}-byte minimum")
    if raw[:2] != START:
        raise FrameError("frame does not start with '@@'")
    serial = struct.unpack_from("<H", raw, 2)[0]
    length = struct.unpack_from("<H", raw, 24)[0]
    if length > MAX_DATA:
        raise FrameError(f"data length {length} is over {MAX_DATA}", serial)
    if len(raw) != HEADER + length + 3:
        raise FrameError(f"frame of {len(raw)} bytes does not match its data length {length}", serial)
    if raw[-2:] != END:
        raise FrameError("frame does not end with '##'", serial)
    body = raw[2:HEADER + length]
    if checksum(body) != raw[-3]:
        raise FrameError(f"checksum 0x{raw[-3]:02x} != 0x{checksum(body):02x}", serial)
    return Frame(serial=serial, command=raw[26], source=bytes(raw[12:18]), destination=bytes(raw[18:24]),
                 data=bytes(raw[27:27 + length]), time_label=tuple(raw[6:12]), version=(raw[4], raw[5]))


class FrameReader:
    """Bytes from a TCP stream -> Frames and FrameErrors, in order. Garbage before '@@' is skipped (and
    reported once per run), a frame whose length field is over the bound is skipped at its '@@', a
    buffer never grows past one maximal frame."""

    def __init__(self):
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        self._buf += data
        out: list[Frame | FrameError] = []
        while True:
            start = self._buf.find(START)
            if start < 0:
                if len(self._buf) > 1:
                    out.append(FrameError(f"{len(self._buf) - 1} bytes of garbage outside a frame"))
                    del self._buf[:-1]  # keep a trailing '@' that may start the next frame
                return out
            if start > 0:
                out.append(FrameError(f"{start} bytes of garbage before '@@'"))
                del self._buf[:start]
            if len(self._buf) < 26:
                return out
            length = struct.unpack_from("<H", self._buf, 24)[0]
            if length > MAX_DATA:
                out.append(FrameError(f"data length {length} is over {MAX_DATA}",
                                      struct.unpack_from("<H", self._buf, 2)[0]))
                del self._buf[:2]  # resynchronise on the next '@@'
                continue
            total = HEADER + length + 3
            if len(self._buf) < total:
                return out
            raw = bytes(self._buf[:total])
            try:
                out.append(decode(raw))
                del self._buf[:total]
            except FrameError as e:
                out.append(e)
                del self._buf[:2]
