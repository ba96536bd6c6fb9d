"""What `gateway check` prints: one finding per line, `FILE:LINE: [section] key: message`."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from gateway.errors import ConfigError

from .lines import LineIndex


@dataclass(frozen=True)
class Problem:
    """One finding in a config or profile file. Line 0 means the file as a whole
    (it could not be read at all)."""

    file: str
    line: int
    section: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: [{self.section or '-'}] {self.key or '-'}: {self.message}"


def suggest(word, choices) -> str:
    """'; did you mean 'x'?' when one of `choices` is close to `word`, else ''."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def did_you_mean(word: str, choices) -> str:
    """'; did you mean 'x'?' when a choice is close, else the list of choices: a
    technician who typed `bauds` should not have to open the manual."""
    choices = [str(c) for c in choices]
    if suggest(word, choices):
        return suggest(word, choices)
    if not choices:
        return ""
    return "; allowed: " + ", ".join(choices)


@dataclass
class Report:
    """Collects problems for one file: every finding is reported, not just the first."""

    file: str
    lines: LineIndex
    problems: list[Problem] = field(default_factory=list)

    def add(self, path: tuple, section: str, key: str, message: str) -> None:
        self.problems.append(Problem(self.file, self.lines.line(path), section, key, message))

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)
