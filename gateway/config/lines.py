"""Line numbers for TOML keys. tomllib returns plain dicts with no positions, and a
technician needs `FILE:LINE` to find the mistake, so this scans the raw text once more
(after tomllib has accepted it) and records where every table, key and array element
starts. Paths are tuples as in the parsed data: `("sensors", 2, "unit")`."""

from __future__ import annotations

import re
import tomllib

_BARE = re.compile(r"[A-Za-z0-9_-]+")


class LineIndex:
    """Maps a key path to the line it is written on. A path that was not written
    itself (a key inside an inline table, a default) gets the line of its nearest
    written ancestor."""

    def __init__(self, text: str = ""):
        self._lines: dict[tuple, int] = {}
        if text:
            try:
                _Scanner(text, self._lines).run()
            except (_ScanError, IndexError, tomllib.TOMLDecodeError):
                # tomllib accepted the file, so this is a gap in the scanner; keep the
                # lines found so far rather than hide the real problems behind a crash.
                pass

    def line(self, path) -> int:
        path = tuple(path)
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return 1

    def __contains__(self, path) -> bool:
        return tuple(path) in self._lines


class _ScanError(Exception):
    pass


class _Scanner:
    def __init__(self, text: str, out: dict[tuple, int]):
        self.s = text
        self.i = 0
        self.line = 1
        self.out = out
        self.table: tuple = ()
        self.aot: dict[tuple, int] = {}  # array-of-tables path -> elements seen so far

    # -- characters ---------------------------------------------------------------
    def peek(self, n: int = 1) -> str:
        return self.s[self.i:self.i + n]

    def eof(self) -> bool:
        return self.i >= len(self.s)

    def advance(self, n: int = 1) -> None:
        self.line += self.s.count("\n", self.i, self.i + n)
        self.i += n

    def blanks(self, newlines: bool = False) -> None:
        """Skip spaces and tabs; with `newlines`, also line breaks and comments."""
        while not self.eof():
            c = self.s[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.advance()
            elif newlines and c == "#":
                end = self.s.find("\n", self.i)
                self.advance((len(self.s) if end < 0 else end) - self.i)
            else:
                return

    def record(self, path: tuple) -> None:
        for n in range(1, len(path) + 1):
            self.out.setdefault(path[:n], self.line)

    # -- document -----------------------------------------------------------------
    def run(self) -> None:
        while True:
            self.blanks(newlines=True)
            if self.eof():
                return
            start = self.i
            if self.peek(2) == "[[":
                self.header(array=True)
            elif self.peek() == "[":
                self.header(array=False)
            else:
                path = self.table + self.key()
                self.record(path)
                self.blanks()
                self.expect("=")
                self.blanks()
                self.value(path)
            if self.i == start:
                raise _ScanError(self.line)

    def expect(self, text: str) -> None:
        if self.peek(len(text)) != text:
            raise _ScanError(self.line)
        self.advance(len(text))

    def header(self, array: bool) -> None:
        self.advance(2 if array else 1)
        self.blanks()
        keys = self.key()
        self.blanks()
        self.expect("]]" if array else "]")
        resolved: list = []
        for n, k in enumerate(keys):
            resolved.append(k)
            here = tuple(resolved)
            if array and n == len(keys) - 1:
                index = self.aot.get(here, 0)
                self.aot[here] = index + 1
                resolved.append(index)
            elif here in self.aot:
                # `[[a.b]]` under `[[a]]` belongs to the latest element of `a`
                resolved.append(self.aot[here] - 1)
        self.table = tuple(resolved)
        self.record(self.table)
        self.out[self.table] = self.line

    def key(self) -> tuple:
        parts = [self.simple_key()]
        while True:
            save = (self.i, self.line)
            self.blanks()
            if self.peek() != ".":
                self.i, self.line = save
                return tuple(parts)
            self.advance()
            self.blanks()
            parts.append(self.simple_key())

    def simple_key(self) -> str:
        c = self.peek()
        if c == '"':
            raw = self.basic_string()
            return tomllib.loads(f"k = {raw}")["k"]
        if c == "'":
            end = self.s.index("'", self.i + 1)
            text = self.s[self.i + 1:end]
            self.advance(end + 1 - self.i)
            return text
        m = _BARE.match(self.s, self.i)
        if not m:
            raise _ScanError(self.line)
        self.advance(m.end() - self.i)
        return m.group()

    # -- values -------------------------------------------------------------------
    def value(self, path: tuple) -> None:
        c = self.peek()
        if c == "[":
            self.advance()
            n = 0
            while True:
                self.blanks(newlines=True)
                if self.peek() == "]":
                    self.advance()
                    return
                self.out.setdefault(path + (n,), self.line)
                start = self.i
                self.value(path + (n,))
                if self.i == start:
                    raise _ScanError(self.line)
                n += 1
                self.blanks(newlines=True)
                if self.peek() == ",":
                    self.advance()
        elif c == "{":
            self.advance()
            while True:
                self.blanks(newlines=True)
                if self.peek() == "}":
                    self.advance()
                    return
                inner = path + self.key()
                self.record(inner)
                self.blanks()
                self.expect("=")
                self.blanks()
                self.value(inner)
                self.blanks(newlines=True)
                if self.peek() == ",":
                    self.advance()
        elif self.peek(3) in ('"""', "'''"):
            self.multiline_string(self.peek(3))
        elif c == '"':
            self.basic_string()
        elif c == "'":
            self.advance(self.s.index("'", self.i + 1) + 1 - self.i)
        else:
            # numbers, booleans, dates (which may contain a space): up to a delimiter
            j = self.i
            while j < len(self.s) and self.s[j] not in ",]}\n#":
                j += 1
            self.advance(j - self.i)

    def basic_string(self) -> str:
        j = self.i + 1
        while self.s[j] != '"':
            j += 2 if self.s[j] == "\\" else 1
        raw = self.s[self.i:j + 1]
        self.advance(j + 1 - self.i)
        return raw

    def multiline_string(self, quote: str) -> None:
        j = self.i + 3
        while self.s[j:j + 3] != quote:
            if j >= len(self.s):
                raise _ScanError(self.line)
            j += 2 if (quote == '"""' and self.s[j] == "\\") else 1
        # up to two quotes may sit right before the closing delimiter as content
        while self.s[j + 3:j + 4] == quote[0]:
            j += 1
        self.advance(j + 3 - self.i)
