"""Registers (or frame fields) -> point values. A value that cannot be decoded, or that
is outside the profile's plausible range, is a DeviceFault, never a number."""

from __future__ import annotations

import math
import struct

from gateway.acquire.units import convert
from gateway.config.model import Point
from gateway.errors import DeviceFault

MAX_DECIMALS = 6


def _words(point: Point, regs: dict[int, int]) -> list[int]:
    try:
        words = [regs[point.register + i] for i in range(point.words)]
    except KeyError as e:
        raise DeviceFault("decode", f"register {e.args[0]:#06x} was not read") from None
    if point.word_order == "CDAB":
        words.reverse()
    return words


def raw_value(point: Point, regs: dict[int, int]) -> int | float:
    w = _words(point, regs)
    t = point.type
    if t in ("u16", "bits"):
        return w[0]
    if t == "i16":
        return w[0] - 0x10000 if w[0] & 0x8000 else w[0]
    if t == "u32":
        return (w[0] << 16) | w[1]
    if t == "i32":
        v = (w[0] << 16) | w[1]
        return v - 0x1_0000_0000 if v & 0x8000_0000 else v
    if t == "f32":
        v = struct.unpack(">f", struct.pack(">HH", w[0], w[1]))[0]
        if not math.isfinite(v):
            raise DeviceFault("decode", f"float registers hold {v}")
        return v
    raise DeviceFault("decode", f"unknown type {t!r}")


def decode_point(point: Point, regs: dict[int, int]) -> int | float:
    """The point's value in the profile's unit; DeviceFault('decode'|'unit'|'range') otherwise."""
    raw = raw_value(point, regs)
    if point.type == "bits":
        return raw  # the bit mask; names are in point.bits
    value = raw * point.scale
    if point.decimals_register is not None:
        dec = regs.get(point.decimals_register)
        if dec is None or dec > MAX_DECIMALS:
            raise DeviceFault("decode", f"decimal places register says {dec}")
        value = value / 10 ** dec
    value += point.offset
    if point.unit_register is not None:
        code = regs.get(point.unit_register)
        dev_unit = point.unit_codes.get(code)
        if dev_unit is None:
            raise DeviceFault("unit", f"unit code {code} is not in the profile's table")
        converted = convert(value, dev_unit, point.unit)
        if converted is None:
            raise DeviceFault("unit", f"device reports {dev_unit}, profile wants {point.unit}")
        value = converted
    return check_range(point, value)


def check_range(point: Point, value: float) -> int | float:
    if not math.isfinite(value):  # NaN compares false with every threshold: it would hide an alarm
        raise DeviceFault("decode", f"value is {value}")
    if point.range is not None:
        lo, hi = point.range
        if not lo <= value <= hi:
            raise DeviceFault("range", f"{value:g} {point.unit} outside plausible {lo:g}..{hi:g}")
    if isinstance(value, float):
        value = round(value, 6)
        if value.is_integer() and point.type in ("u16", "i16", "u32", "i32") and point.decimals_register is None \
                and point.scale == 1.0:
            value = int(value)
    return value


def bits_set(point: Point, mask: int) -> list[str]:
    """Names of the set bits of a `bits` point, for display and fault events."""
    return [name for name, bit in sorted(point.bits.items(), key=lambda kv: kv[1]) if mask >> bit & 1]
