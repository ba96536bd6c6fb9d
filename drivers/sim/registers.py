"""The register image of a simulated device: what a real sensor of a profile would hold
for given values. The inverse of gateway.acquire's decoding
(value = raw * scale / 10**decimals + offset), written independently so a test of one
checks the other."""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping

from gateway.config.model import Point, Profile

# QDY30A baud codes (register 0x0001): 0=1200 ... 3=9600 ... 7=115200
BAUD_CODES = {1200: 0, 2400: 1, 4800: 2, 9600: 3, 19200: 4, 38400: 5, 57600: 6, 115200: 7}

# Decimal places a transmitter of that unit usually reports (QDY30A: cm with 1, MPa with 3).
_USUAL_DECIMALS = {"m": 3, "cm": 1, "mm": 0, "MPa": 3, "kPa": 1, "Pa": 0, "bar": 3}

_LIMITS = {"u16": (0, 0xFFFF), "i16": (-0x8000, 0x7FFF),
           "u32": (0, 0xFFFFFFFF), "i32": (-0x80000000, 0x7FFFFFFF)}


def unit_code(point: Point) -> int:
    """The code a device writes in its unit register for the point's unit."""
    for code, name in sorted(point.unit_codes.items()):
        if name == point.unit:
            return int(code)
    raise ValueError(f"point {point.name}: no unit code maps to '{point.unit}'")


def choose_decimals(point: Point, value: float) -> int:
    """Decimal places that keep `value` inside the point's integer type, starting from
    what a real transmitter of that unit reports."""
    low, high = _LIMITS.get(point.type, _LIMITS["i16"])
    for d in range(_USUAL_DECIMALS.get(point.unit, 3), -1, -1):
        raw = round((value - point.offset) * 10 ** d / point.scale)
        if low <= raw <= high:
            return d
    raise ValueError(f"point {point.name}: {value} does not fit a {point.type} register")


def _words(raw: int, nbits: int) -> list[int]:
    raw &= (1 << nbits) - 1
    return [(raw >> 16) & 0xFFFF, raw & 0xFFFF] if nbits == 32 else [raw]


def encode_point(point: Point, value, *, decimals: int | None = None) -> dict[int, int]:
    """Registers (address -> 16-bit word) a device holds for one point's value.
    `value` is in the point's unit; for type "bits" a dict {bit name: bool} or an int."""
    if point.register is None:
        raise ValueError(f"point {point.name} has no register (a serial frame field?)")
    regs: dict[int, int] = {}
    if point.type == "bits":
        if isinstance(value, Mapping):
            unknown = set(value) - set(point.bits)
            if unknown:
                raise ValueError(f"point {point.name}: unknown bits {sorted(unknown)}")
            raw = sum(1 << point.bits[name] for name, on in value.items() if on)
        else:
            raw = int(value)
        words = [raw & 0xFFFF]
    else:
        if point.decimals_register is not None:
            decimals = choose_decimals(point, value) if decimals is None else decimals
            regs[point.decimals_register] = decimals
        scaled = (value - point.offset) * 10 ** (decimals or 0) / point.scale
        if point.type == "f32":
            if not math.isfinite(scaled):
                raise ValueError(f"point {point.name}: {value} is not a finite number")
            words = _words(int.from_bytes(struct.pack(">f", scaled), "big"), 32)
        else:
            low, high = _LIMITS[point.type]
            raw = round(scaled)
            if not low <= raw <= high:
                raise ValueError(f"point {point.name}: raw {raw} does not fit {point.type}")
            words = _words(raw, 32 if point.type in ("u32", "i32") else 16)
    if len(words) == 2 and point.word_order == "CDAB":
        words.reverse()  # low word first
    for i, word in enumerate(words):
        regs[point.register + i] = word
    if point.unit_register is not None:
        regs[point.unit_register] = unit_code(point)
    return regs


def _default_value(point: Point):
    if point.type == "bits":
        return 0
    if point.range and not point.range[0] <= 0 <= point.range[1]:
        return point.range[0]
    return 0


def device_registers(profile: Profile, values: Mapping[str, object] | None, unit_id: int, *,
                     baudrate: int = 9600) -> dict[int, int]:
    """The register image of a device of `profile` showing `values` (point name -> value;
    missing points read 0, or the bottom of their plausible range)."""
    if profile.kind != "modbus":
        raise ValueError(f"profile {profile.name} is not a Modbus profile")
    values = dict(values or {})
    unknown = set(values) - {p.name for p in profile.points}
    if unknown:
        raise ValueError(f"profile {profile.name} has no point {sorted(unknown)}")
    image: dict[int, int] = {}
    for point in profile.points:
        if point.function in (1, 2):
            continue  # a coil or discrete input: SimBus keeps bits apart (drivers/sim/bits.py)
        image.update(encode_point(point, values.get(point.name, _default_value(point))))
    # QDY30A family: 0x0000 holds the slave address and 0x0001 the baud code. Only where
    # the profile leaves those registers free: elsewhere they mean other things.
    if image and min(image) >= 2:
        image[0x0000] = unit_id
        image[0x0001] = BAUD_CODES.get(baudrate, 3)
    return image
