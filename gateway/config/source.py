"""Reading a TOML file (the config or a profile) into data plus a line index. A file
that cannot be read or parsed becomes a Problem like any other, never a traceback."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .lines import LineIndex
from .problems import Problem, Report

_AT = re.compile(r"^(?P<msg>.*?)\s*\((?:at line (?P<line>\d+), column (?P<col>\d+)|at end of document)\)$",
                 re.S)
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_.\"' -]+?)\s*=")


@dataclass
class Source:
    """One parsed file. `data` is None when the file could not be read or parsed."""
    path: Path
    data: dict | None
    report: Report
    raw: bytes = b""


def read_toml(path: Path, problems: list[Problem]) -> Source:
    shown = str(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        problems.append(Problem(shown, 0, "", "", f"cannot read the file: {e.strerror or e}"))
        return Source(path, None, Report(shown, LineIndex(), problems))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        problems.append(Problem(shown, line, "", "", "not UTF-8 text (save the file as UTF-8)"))
        return Source(path, None, Report(shown, LineIndex(), problems), raw)
    text = text.removeprefix("\ufeff")  # a BOM left by a Windows editor
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        problems.append(syntax_problem(shown, text, str(e)))
        return Source(path, None, Report(shown, LineIndex(), problems), raw)
    return Source(path, data, Report(shown, LineIndex(text), problems), raw)


def syntax_problem(file: str, text: str, error: str) -> Problem:
    """tomllib says "Invalid value (at line 7, column 9)"; the technician gets
    `FILE:7: [section] key: invalid TOML: invalid value (column 9)`."""
    lines = text.splitlines()
    m = _AT.match(error)
    if m and m.group("line"):
        line, where = int(m.group("line")), f" (column {m.group('col')})"
    else:
        line, where = max(len(lines), 1), " (at the end of the file)" if m else ""
    message = m.group("msg") if m else error
    section = ""
    for previous in lines[:line - 1]:
        h = _HEADER.match(previous)
        if h:
            section = h.group(1)
    key = ""
    if 0 < line <= len(lines):
        h = _HEADER.match(lines[line - 1])
        k = _KEY.match(lines[line - 1])
        if h:
            section = h.group(1)
        elif k:
            key = k.group(1).strip()
    return Problem(file, line, section, key, f"invalid TOML: {message[:1].lower()}{message[1:]}{where}")
