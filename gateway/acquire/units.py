"""Unit conversion between what a device reports and what the profile promises.

A QDY30A can be switched to mm or m on site; the rule thresholds are written in the
profile's unit, so the reading is converted, never silently mis-scaled."""

from __future__ import annotations

# unit -> (dimension, factor to the dimension's base unit)
_UNITS = {
    "m": ("length", 1.0), "cm": ("length", 0.01), "mm": ("length", 0.001),
    "MPa": ("pressure", 1e6), "kPa": ("pressure", 1e3), "Pa": ("pressure", 1.0), "bar": ("pressure", 1e5),
}


def convert(value: float, from_unit: str, to_unit: str) -> float | None:
    """`value` in `to_unit`, or None when the two units cannot be converted."""
    if from_unit == to_unit:
        return value
    a, b = _UNITS.get(from_unit), _UNITS.get(to_unit)
    if a is None or b is None or a[0] != b[0]:
        return None
    return value * a[1] / b[1]
