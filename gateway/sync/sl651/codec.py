"""SL 651-2014 §6.2, §6.5 HEX/BCD frames (sources in docs/sl651.md):

    up:   7E7E | centre 1 | station 5 (BCD) | password 2 | function 1 | direction+length 2 | STX
    down: 7E7E | station 5 | centre 1 | password 2 | function 1 | direction+length 2 | STX
          | body (length bytes) | end (up: ETX/ETB; down: EOT/ESC/ACK/NAK/ENQ) | CRC 2

direction+length: high 4 bits 0 = up, 8 = down; low 12 bits the body length (STX .. end, exclusive).
CRC: polynomial 0xA001 (reflected x16+x15+x2+1), initial 0xFFFF, over every byte before it, sent high
byte first (the CRC-16/MODBUS value, byte order reversed against Modbus RTU).
Body: serial 2 (HEX) | send time 6 (BCD YYMMDDhhmmss) | F1F1 station 5 + type 1 | F0F0 obs time 5
| elements: identifier (1 B, FF + 1 B extended) + data definition (high 5 bits bytes, low 3 decimals)
| BCD data, negative = leading FF (§6.6.3.3).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

START = b"\x7e\x7e"
STX, SYN, ETX, ETB, ENQ, EOT, ACK, NAK, ESC = 0x02, 0x16, 0x03, 0x17, 0x05, 0x04, 0x06, 0x15, 0x1B
KEEPALIVE, TEST, TIMED, EXTRA, HOURLY = 0x2F, 0x30, 0x32, 0x33, 0x34
FUNCTIONS = {KEEPALIVE: "keepalive", TEST: "test", TIMED: "timed", EXTRA: "extra", HOURLY: "hourly"}
WATER_LEVEL, BATTERY, STATUS, LEVEL_5MIN = 0x39, 0x38, 0x45, 0xF5
STATION_ID, OBS_TIME = b"\xf1\xf1", b"\xf0\xf0"
# status and alarm bits of element 45 (SL 651-2014 Table 58)
AC_POWER_CUT, BATTERY_LOW, LEVEL_OVER_LIMIT, LEVEL_METER_FAULT = 1 << 0, 1 << 1, 1 << 2, 1 << 6
MAX_BODY = 0xFFF


class FrameError(ValueError):
    pass


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def bcd(digits: str) -> bytes:
    if len(digits) % 2 or not digits.isdigit():
        raise FrameError(f"BCD needs an even number of decimal digits, not {digits!r}")
    return bytes.fromhex(digits)


def bcd_time(ts: float | None = None, seconds: bool = True) -> bytes:
    t = time.localtime(time.time() if ts is None else ts)
    return bcd(time.strftime("%y%m%d%H%M%S" if seconds else "%y%m%d%H%M", t))


@dataclass(frozen=True)
class Frame:
    centre: int
    station: bytes  # 5 bytes BCD
    password: bytes  # 2 bytes
    function: int
    body: bytes
    up: bool = True
    end: int = ETX

    def encode(self) -> bytes:
        if len(self.body) > MAX_BODY:
            raise FrameError(f"body of {len(self.body)} bytes is over {MAX_BODY}")
        addr = bytes([self.centre]) + self.station if self.up else self.station + bytes([self.centre])
        length = (0 if self.up else 0x8000) | len(self.body)
        head = START + addr + self.password + bytes([self.function]) + length.to_bytes(2, "big") + bytes([STX])
        raw = head + self.body + bytes([self.end])
        return raw + crc16(raw).to_bytes(2, "big")

    @property
    def serial(self) -> int | None:
        return int.from_bytes(self.body[:2], "big") if len(self.body) >= 2 else None

    def as_dict(self) -> dict:
        return {"direction": "up" if self.up else "down", "centre": self.centre, "station": self.station.hex(),
                "password": self.password.hex(), "function": FUNCTIONS.get(self.function, f"{self.function:02X}"),
                "end": f"{self.end:02X}", "serial": self.serial, "body": self.body.hex()}


def decode(raw: bytes) -> Frame:
    if len(raw) < 17:
        raise FrameError(f"frame of {len(raw)} bytes is shorter than the 17-byte minimum")
    if raw[:2] != START:
        raise FrameError("frame does not start with 7E7E")
    dl = int.from_bytes(raw[11:13], "big")
    direction, length = dl >> 12, dl & 0xFFF
    if direction not in (0, 8):
        raise FrameError(f"direction nibble {direction:X} is neither 0 (up) nor 8 (down)")
    if raw[13] != STX:
        raise FrameError(f"body start 0x{raw[13]:02X} is not STX (multi-packet SYN is not supported)")
    if len(raw) != 17 + length:
        raise FrameError(f"frame of {len(raw)} bytes does not match its body length {length}")
    if crc16(raw[:-2]) != int.from_bytes(raw[-2:], "big"):
        raise FrameError(f"CRC {raw[-2:].hex()} != {crc16(raw[:-2]):04x}")
    up = direction == 0
    centre, station = (raw[2], raw[3:8]) if up else (raw[7], raw[2:7])
    return Frame(centre=centre, station=bytes(station), password=bytes(raw[8:10]), function=raw[10],
                 body=bytes(raw[14:14 + length]), up=up, end=raw[14 + length])


class FrameReader:
    """Bytes from TCP -> Frames and FrameErrors; resynchronises on the next 7E7E, never raises."""

    def __init__(self):
        self._buf = bytearray()

    def feed(self, data: bytes) -> list:
        self._buf += data
        out: list = []
        while True:
            start = self._buf.find(START)
            if start < 0:
                if len(self._buf) > 1:
                    out.append(FrameError(f"{len(self._buf) - 1} bytes of garbage outside a frame"))
                    del self._buf[:-1]
                return out
            if start > 0:
                out.append(FrameError(f"{start} bytes of garbage before 7E7E"))
                del self._buf[:start]
            if len(self._buf) < 13:
                return out
            total = 17 + (int.from_bytes(self._buf[11:13], "big") & 0xFFF)
            if len(self._buf) < total:
                return out
            try:
                out.append(decode(bytes(self._buf[:total])))
                del self._buf[:total]
            except FrameError as e:
                out.append(e)
                del self._buf[:2]


# -- bodies -------------------------------------------------------------------------------------
def element(identifier: int, value: float, nbytes: int, decimals: int) -> bytes:
    """A decimal element as BCD: identifier, data definition, digits; negative: FF (or FF0) first."""
    n = int(round(abs(value) * 10 ** decimals))
    width = nbytes * 2
    digits = str(n)
    if value < 0:
        if len(digits) > width - 2:
            raise FrameError(f"{value} does not fit {nbytes} bytes with a sign")
        digits = digits.zfill(width - 2)
        data = b"\xff" + bytes.fromhex(digits)
    else:
        if len(digits) > width:
            raise FrameError(f"{value} does not fit {nbytes} bytes with {decimals} decimals")
        data = bytes.fromhex(digits.zfill(width))
    return bytes([identifier, (nbytes << 3) | decimals]) + data


def hex_element(identifier: int, value: int, nbytes: int) -> bytes:
    return bytes([identifier, nbytes << 3]) + value.to_bytes(nbytes, "big")


def report_body(serial: int, station: bytes, station_type: int, obs_ts: float, elements: bytes,
                sent_ts: float | None = None) -> bytes:
    return (serial.to_bytes(2, "big") + bcd_time(sent_ts) + STATION_ID + station + bytes([station_type])
            + OBS_TIME + bcd_time(obs_ts, seconds=False) + elements)


def parse_elements(data: bytes) -> dict:
    """Elements of a report body after the observation time -> {identifier hex: value}. Decimal BCD
    elements become numbers, 45 (status) and F4/F5 (HEX groups) stay integers/lists."""
    out: dict = {}
    i = 0
    while i < len(data):
        if data[i:i + 2] == OBS_TIME:  # a second observation time for the elements after it
            out.setdefault("observed_more", []).append(data[i + 2:i + 7].hex())
            i += 7
            continue
        ident = data[i]
        i += 1
        if ident == 0xFF:  # extended identifier
            ident = 0xFF00 | data[i]
            i += 1
        if i >= len(data):
            raise FrameError("element without its data definition")
        nbytes, decimals = data[i] >> 3, data[i] & 7
        i += 1
        raw = data[i:i + nbytes]
        if len(raw) != nbytes:
            raise FrameError(f"element {ident:02X} wants {nbytes} bytes, {len(raw)} left")
        i += nbytes
        key = f"{ident:02X}"
        if ident == STATUS:
            out[key] = int.from_bytes(raw, "big")
        elif ident in (0xF4, LEVEL_5MIN):
            step = 1 if ident == 0xF4 else 2
            out[key] = [int.from_bytes(raw[j:j + step], "big") for j in range(0, nbytes, step)]
        elif not raw or raw.hex().upper().strip("F") == "":
            out[key] = None  # no bytes, or all F: no data (§6.6.4.4 d)
        else:
            h = raw.hex()
            negative = raw[0] == 0xFF
            digits = h[2:] if negative else h
            digits = digits.lstrip("f") if negative else digits
            try:
                v = int(digits or "0") / 10 ** decimals
            except ValueError:
                raise FrameError(f"element {key} is not BCD: {h}") from None
            out[key] = -v if negative else v
    return out


def parse_report(body: bytes) -> dict:
    """Serial, send time, station, type, observation time and elements of a 32/33/34 body."""
    if len(body) < 8:
        raise FrameError(f"report body of {len(body)} bytes")
    out = {"serial": int.from_bytes(body[:2], "big"), "sent": body[2:8].hex()}
    rest = body[8:]
    if rest[:2] == STATION_ID and len(rest) >= 8:
        out["station"], out["station_type"] = rest[2:7].hex(), f"{rest[7]:02X}"
        rest = rest[8:]
    if rest[:2] == OBS_TIME and len(rest) >= 7:
        out["observed"] = rest[2:7].hex()
        rest = rest[7:]
    out["elements"] = parse_elements(rest)
    return out
