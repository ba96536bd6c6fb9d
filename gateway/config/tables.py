"""Typed access to one TOML table while validating it. Every getter records a problem
instead of raising, and returns the default (or None), so one pass reports every
mistake in the file."""

from __future__ import annotations

import math

from .problems import Report, did_you_mean, suggest

# No key means anything near this size, and a float loses whole numbers above 2**53: a bigger
# number is a typo or an attack (a 400-digit integer would overflow float() in the builder).
MAGNITUDE = 1e15


def shown(value) -> str:
    """A value as the technician wrote it in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return str(value)


def _bounds(gt=None, ge=None, le=None) -> str:
    if ge is not None and le is not None:
        return f"between {ge} and {le}"
    parts = []
    if gt is not None:
        parts.append(f"greater than {gt}")
    if ge is not None:
        parts.append(f"{ge} or more")
    if le is not None:
        parts.append(f"at most {le}")
    return " and ".join(parts)


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # TOML true is not 1


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def span(lo, hi) -> str:
    """A range as config/README.md writes it: `0.05..3600`."""
    def one(v):
        return str(int(v)) if float(v).is_integer() else f"{v:g}"

    return f"{one(lo)}..{one(hi)}"


def unfit(value) -> str | None:
    """Why a TOML number can mean nothing as a setting (inf, nan, absurd size), else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number (got {value})"
    if abs(value) > MAGNITUDE:
        if is_int(value):
            digits = len(str(abs(value)))
            return f"is far too large (got a number of {digits} digits; at most {MAGNITUDE:g})"
        return f"is far too large (got {value:g}; at most {MAGNITUDE:g})"
    return None


class Table:
    """A table of the config or of a profile: its data, where it sits in the file
    (`path`, for line numbers) and how a problem names it (`section`, and `prefix`
    for keys inside inline tables, e.g. `above.red`)."""

    def __init__(self, report: Report, data: dict, path: tuple, section: str, prefix: str = ""):
        self.report = report
        self.data = data
        self.path = tuple(path)
        self.section = section
        self.prefix = prefix

    def sub(self, key: str) -> Table | None:
        """The inline (or nested) table at `key`; None, with a problem, if it is not one."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem(key, f"must be a table (got {shown(value)})")
            return None
        return Table(self.report, value, self.path + (key,), self.section, f"{self.prefix}{key}.")

    def problem(self, key: str, message: str, *more) -> None:
        """Record a problem at `key` (or at the table itself when key is "");
        `more` are path steps below the key, such as a list index."""
        path = self.path + ((key,) if key else ()) + more
        self.report.add(path, self.section, f"{self.prefix}{key}" if key else self.prefix.rstrip("."), message)

    def line(self, key: str = "") -> int:
        return self.report.lines.line(self.path + ((key,) if key else ()))

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def check_keys(self, allowed, what: str = "key") -> None:
        for key in self.data:
            if key not in allowed:
                self.problem(key, f"unknown {what} '{key}'" + did_you_mean(key, allowed))

    def require(self, key: str) -> bool:
        if key not in self.data:
            self.problem(key, "is required")
            return False
        return True

    # -- typed getters ------------------------------------------------------------
    def text(self, key: str, default=None, required: bool = False, choices=None):
        if key not in self.data:
            if required:
                self.problem(key, "is required")
            return default
        value = self.data[key]
        if not isinstance(value, str):
            self.problem(key, f"must be a string (got {shown(value)})")
            return default
        if choices is not None and value not in choices:
            self.problem(key, f"must be one of {', '.join(choices)} (got {shown(value)})"
                         + suggest(value, choices))
            return default
        if required and not value.strip():
            self.problem(key, "must not be empty")
            return default
        return value

    def integer(self, key: str, default=None, required: bool = False, ge=None, le=None,
                gt=None, choices=None, within=None):
        if key not in self.data:
            if required:
                self.problem(key, "is required")
            return default
        value = self.data[key]
        if not is_int(value):
            self.problem(key, f"must be a whole number (got {shown(value)})")
            return default
        if within is not None:
            ge, le = within
        return self._check_range(key, value, default, gt, ge, le, choices)

    def number(self, key: str, default=None, required: bool = False, gt=None, ge=None, le=None,
               within=None):
        """A TOML integer or float, finite and of sensible size; `within` = (lo, hi) is
        shorthand for ge=lo, le=hi (the ranges of schema.RANGES)."""
        if key not in self.data:
            if required:
                self.problem(key, "is required")
            return default
        value = self.data[key]
        if not is_number(value):
            self.problem(key, f"must be a number (got {shown(value)})")
            return default
        if within is not None:
            ge, le = within
        return self._check_range(key, value, default, gt, ge, le, None)

    def _check_range(self, key, value, default, gt, ge, le, choices):
        why = unfit(value)
        if why is not None:
            bounds = _bounds(gt, ge, le)
            self.problem(key, why + (f"; it must be {bounds}" if bounds else ""))
            return default
        if choices is not None:
            if value not in choices:
                self.problem(key, f"must be one of {', '.join(str(c) for c in choices)} (got {value})")
                return default
            return value
        if ((gt is not None and not value > gt) or (ge is not None and not value >= ge)
                or (le is not None and not value <= le)):
            self.problem(key, f"must be {_bounds(gt, ge, le)} (got {value})")
            return default
        return value

    def flag(self, key: str, default: bool) -> bool:
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false (got {shown(value)})")
            return default
        return value

    def strings(self, key: str, required: bool = False) -> tuple[str, ...]:
        if key not in self.data:
            if required:
                self.problem(key, "is required")
            return ()
        value = self.data[key]
        if isinstance(value, str):
            # `sound = "siren"` is a common slip for `sound = ["siren"]`
            self.problem(key, f'must be a list of strings, e.g. ["{value}"]')
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(key, f"must be a list of strings (got {shown(value)})")
            return ()
        return tuple(value)


# -- the three shapes a section of the config takes -----------------------------------
def table_at(top: Table, key: str) -> Table | None:
    """`[gateway]`: one table, or None when absent (a problem if it is not a table)."""
    value = top.data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        top.problem(key, f"must be a table ([{key}]), not {shown(value)}")
        return None
    return Table(top.report, value, top.path + (key,), key)


def named_tables(top: Table, key: str) -> list[tuple[str, Table]]:
    """`[buses.rs485]`, `[buses.pumproom]`: tables named by the technician."""
    value = top.data.get(key)
    if value is None:
        return []
    if not isinstance(value, dict):
        top.problem(key, f"must be tables like [{key}.NAME], not {shown(value)}")
        return []
    found = []
    for name, body in value.items():
        if not isinstance(body, dict):
            Table(top.report, value, top.path + (key,), key).problem(
                name, f"must be a table ([{key}.{name}]), not {shown(body)}")
            continue
        found.append((name, Table(top.report, body, top.path + (key, name), f"{key}.{name}")))
    return found


def array_tables(top: Table, key: str) -> list[Table]:
    """`[[sensors]]`: an array of tables, named `sensors #1`, `sensors #2`... in problems."""
    value = top.data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        top.problem(key, f"must be an array of tables ([[{key}]]), not {shown(value)}")
        return []
    found = []
    for i, body in enumerate(value):
        if not isinstance(body, dict):
            top.problem(key, f"entry {i + 1} must be a table, not {shown(body)}", i)
            continue
        found.append(Table(top.report, body, top.path + (key, i), f"{key} #{i + 1}"))
    return found
