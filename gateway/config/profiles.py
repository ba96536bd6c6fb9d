"""Profiles: a sensor family's register map (or serial frame) as a TOML file. Found by
name in the `[gateway] profiles` entries, then in the shipped gateway/profiles/ (package
data), or given as a path. A profile file is validated like the config, with its own FILE:LINE."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.config.model import Point, Profile
from gateway.profiles import SHIPPED

from .paths import resolve
from .problems import Problem, suggest
from .schema import (A02YYUW_FIELDS, FRAMES, FUNCTIONS, KEYS, MAX_READ_REGISTERS, POINT_TYPES,
                     PROFILE_KINDS, WORD_ORDERS)
from .source import read_toml
from .tables import Table, array_tables, is_int, is_number, shown, unfit

SHIPPED_PROFILES = SHIPPED


class ProfileLibrary:
    """Where a sensor's `profile = "..."` is looked up: the technician's own profile
    files and directories first (so a shipped profile can be overridden), then the
    shipped ones. Each file is read and validated once."""

    def __init__(self, entries: list[Path], problems: list[Problem], shipped: Path = SHIPPED_PROFILES):
        self.problems = problems
        self.dirs: list[Path] = []
        self.named: dict[str, Profile] = {}  # from files listed in [gateway] profiles
        self.loaded: dict[Path, Profile | None] = {}
        for entry in entries:
            if entry.is_dir():
                self.dirs.append(entry)
            elif entry.is_file():
                profile = self.load(entry)
                if profile is not None:
                    self.named.setdefault(profile.name, profile)
        self.dirs.append(shipped)

    def find(self, ref: str, base: Path) -> tuple[Profile | None, str | None]:
        """(profile, None) when found and valid; (None, message) when not found;
        (None, None) when found but invalid (its own problems are already reported)."""
        if "/" in ref or ref.endswith(".toml"):
            path = Path(resolve(base, ref))
            if not path.is_file():
                return None, f"profile file not found: {path}"
            return self.load(path), None
        if ref in self.named:
            return self.named[ref], None
        for folder in self.dirs:
            path = folder / f"{ref}.toml"
            if path.is_file():
                return self.load(path, expect_name=ref), None
        known = sorted(set(self.named) | {p.stem for d in self.dirs if d.is_dir() for p in d.glob("*.toml")})
        where = ", ".join(str(d) for d in self.dirs)
        return None, (f"unknown profile '{ref}'; profiles are: {', '.join(known) or 'none'} "
                      f"(from {where}){suggest(ref, known)}{self._missing_data()}")

    def _missing_data(self) -> str:
        shipped = self.dirs[-1]
        if shipped.is_dir() and any(shipped.glob("*.toml")):
            return ""
        return (f"; the installed package has no shipped profiles in {shipped}: it was installed without "
                "its package data (reinstall it from a wheel built by `make wheels`)")

    def load(self, path: Path, expect_name: str | None = None) -> Profile | None:
        path = path.resolve()
        if path not in self.loaded:
            self.loaded[path] = _read_profile(path, self.problems, expect_name)
        return self.loaded[path]


def _read_profile(path: Path, problems: list[Problem], expect_name: str | None) -> Profile | None:
    before = len(problems)
    src = read_toml(path, problems)
    if src.data is None:
        return None
    top = Table(src.report, src.data, (), "")
    top.check_keys(KEYS["profile"])
    name = top.text("name", required=True)
    if name and expect_name and name != expect_name:
        # found as <dir>/<name>.toml: a different name inside would make two names for one thing
        top.problem("name", f"is '{name}' but the file is {path.name}; a profile in a directory is "
                            f"found by its file name, so name it '{expect_name}'")
    kind = top.text("kind", required=True, choices=PROFILE_KINDS)
    description = top.text("description", "")
    frame = pattern = groups = None
    if kind == "serial":
        frame = top.text("frame", required=True, choices=FRAMES)
    elif kind == "modbus" and "frame" in top:
        top.problem("frame", 'only for kind = "serial"')
    if frame == "line":
        pattern = top.text("pattern", required=True)
        if pattern:
            try:
                groups = set(re.compile(pattern).groupindex)
            except re.error as e:
                top.problem("pattern", f"not a valid regular expression: {e}")
    elif "pattern" in top and (kind == "modbus" or frame == "a02yyuw"):
        top.problem("pattern", 'only for frame = "line"')

    if "points" not in top:
        top.problem("points", "is required: at least one [[points]] table")
    points, first_line = [], {}
    for t in array_tables(top, "points"):
        point = _point(t, kind, frame, groups)
        if point is None:
            continue
        if point.name in first_line:
            t.problem("name", f"duplicate point name '{point.name}' (first at line {first_line[point.name]})")
            continue
        first_line[point.name] = t.line("name")
        points.append(point)
    if len(problems) > before:
        return None
    return Profile(name=name, kind=kind, description=description, points=tuple(points),
                   frame=frame, pattern=pattern, source=str(path))


def _point(t: Table, kind: str | None, frame: str | None, groups: set | None) -> Point | None:
    t.check_keys(KEYS["profile.points"])
    name = t.text("name", required=True)
    kind_keys = {"modbus": ("register", "function", "word_order", "decimals_register", "unit_register"),
                 "serial": ("field",)}
    for other, keys in kind_keys.items():
        if kind and kind != other:
            for key in keys:
                if key in t:
                    t.problem(key, f'only for kind = "{other}"')
    bit_fc = t.data.get("function") in (1, 2)
    typ = t.text("type", "bit" if bit_fc else "u16", choices=POINT_TYPES)
    if bit_fc != (typ == "bit"):  # a coil or a discrete input is one bit, a register is not
        t.problem("type", 'type = "bit" goes with function = 1 (coil) or 2 (discrete input), and only with them')
    if bit_fc and ("decimals_register" in t or "unit_register" in t):
        t.problem("function", "a coil or discrete input has no decimals_register or unit_register")
    register = decimals = unit_reg = field = None
    if kind == "modbus":
        register = t.integer("register", required=True, ge=0, le=65535)
        decimals = t.integer("decimals_register", None, ge=0, le=65535)
        unit_reg = t.integer("unit_register", None, ge=0, le=65535)
        _check_span(t, typ, register, decimals, unit_reg)
    elif kind == "serial":
        field = t.text("field", required=True)
        if field and frame == "a02yyuw" and field not in A02YYUW_FIELDS:
            t.problem("field", f"an a02yyuw frame has the field {', '.join(A02YYUW_FIELDS)} (got {shown(field)})")
        if field and groups is not None and field not in groups:
            t.problem("field", f"the profile's pattern has no group '{field}' "
                               f"(groups: {', '.join(sorted(groups)) or 'none'})")
    function = t.integer("function", 3, choices=FUNCTIONS)
    word_order = t.text("word_order", "ABCD", choices=WORD_ORDERS)
    scale = t.number("scale", 1.0)
    if scale == 0:
        t.problem("scale", "must not be 0")
    offset = t.number("offset", 0.0)
    bits = _bits(t, typ)
    return Point(name=name, unit=t.text("unit", ""), register=register, function=function,
                 type=typ or "u16", word_order=word_order, scale=float(scale), offset=float(offset),
                 decimals_register=decimals, unit_register=unit_reg,
                 unit_codes=_codes(t, "unit_codes"), range=_range(t), bits=bits,
                 states=_codes(t, "states"), field=field)


def _check_span(t: Table, typ, register, decimals, unit_reg) -> None:
    """The acquisition reads a point with its decimals and unit registers in one request."""
    if register is None:
        return
    words = 2 if typ in ("u32", "i32", "f32") else 1
    if register + words - 1 > 65535:
        t.problem("register", f"a {typ} point needs {words} registers; {register} + {words} runs past 65535")
        return
    used = [register, register + words - 1] + [r for r in (decimals, unit_reg) if r is not None]
    span = max(used) - min(used) + 1
    if span > MAX_READ_REGISTERS:
        t.problem("register", f"register {register} with its decimals_register/unit_register spans "
                              f"{span} registers; one Modbus read is at most {MAX_READ_REGISTERS}")


def _codes(t: Table, key: str) -> dict[int, str]:
    """`{ 3 = "MPa" }`: TOML keys are strings, the wire gives numbers."""
    sub = t.sub(key)
    if sub is None:
        return {}
    codes = {}
    for code, meaning in sub.data.items():
        try:
            number = int(code, 0) if code.lower().startswith("0x") else int(code)
        except ValueError:
            sub.problem(code, "the code must be a whole number")
            continue
        if not isinstance(meaning, str):
            sub.problem(code, f"must be a string (got {shown(meaning)})")
            continue
        codes[number] = meaning
    return codes


def _range(t: Table) -> tuple[float, float] | None:
    value = t.data.get("range")
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(is_number(v) for v in value)):
        t.problem("range", f"must be [low, high], two numbers (got {shown(value)})")
        return None
    low, high = value
    odd = unfit(low) or unfit(high)
    if odd:
        t.problem("range", odd)
        return None
    if not low < high:
        t.problem("range", f"low must be below high (got [{low}, {high}])")
        return None
    return float(low), float(high)


def _bits(t: Table, typ: str | None) -> dict[str, int]:
    sub = t.sub("bits")
    if sub is None:
        return {}
    if typ != "bits":
        t.problem("bits", 'only for type = "bits"')
        return {}
    bits = {}
    for name, bit in sub.data.items():
        if not is_int(bit) or not 0 <= bit <= 15:
            sub.problem(name, f"must be a bit number between 0 and 15 (got {shown(bit)})")
            continue
        bits[name] = bit
    return bits
