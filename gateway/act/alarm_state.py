"""The active alarms on disk, so a restarted daemon comes back sounding what it sounded.
Written by the safety loop's state sink thread, never by the safety loop itself.

`alarms.state` is a preallocated two-slot file written in place (gateway/record/slotfile.py): a
latched smoke alarm is still saved when the card is full. Whatever is read at start is checked
field by field before the alarm book sees it: a file that is not what we wrote (garbage, a list, an
alarm without an id, a counter "3x") is copied aside as `NAME.corrupt-<time>`, its good alarms are
kept, the problem is logged, shown in `status` and recorded as a `fault` event, and the daemon starts.
The `alarms.json` of earlier firmware is read once and moved aside after the first save.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

from gateway.config.model import LEVELS
from gateway.record.slotfile import SlotFile

log = logging.getLogger("gateway.state")
SLOT_BYTES = 64 * 1024  # ~200 active alarms per slot; a bigger snapshot grows the file once
_STR_FIELDS = ("id", "rule")


class AlarmStateFile:
    def __init__(self, data_dir: str):
        self.dir = Path(data_dir)
        self.path = self.dir / "alarms.state"
        self.legacy = self.dir / "alarms.json"
        self._slots = SlotFile(self.path, SLOT_BYTES)
        self.problems: list[str] = []
        self.moved_aside: str | None = None
        self.save_errors = 0
        self.last_error: str | None = None

    def reserve(self) -> None:
        """Preallocate the file at start, while there is room (a failure is only logged)."""
        try:
            self._slots.allocate()
        except OSError as e:
            log.error("cannot reserve the alarm state file %s: %s", self.path, e)

    def load(self) -> dict | None:
        """The saved snapshot, checked: {"v", "counters": {rule: int}, "alarms": [dict with str id...]},
        or None. Never raises."""
        source, raw = self.path, None
        try:
            raw, damaged = self._slots.read()
        except OSError as e:
            damaged, self.problems = True, [f"unreadable: {e}"]
        if raw is None and not damaged and self.legacy.exists():
            source = self.legacy
            try:
                raw = self.legacy.read_bytes()
            except OSError as e:
                self.problems.append(f"unreadable: {e}")
        elif damaged and not self.problems:
            self.problems.append("no valid slot (not a file this firmware wrote, or both slots torn)")
        snap = None
        if raw is not None:
            try:
                snap, problems = _checked(json.loads(raw.decode("utf-8")))
            except (UnicodeDecodeError, ValueError) as e:
                problems = [f"not JSON: {e}"]
            self.problems += problems
        if self.problems:
            self._move_aside(source)
            log.error("alarm state %s is damaged (%s): moved aside to %s; starting with %s", source,
                      "; ".join(self.problems), self.moved_aside,
                      f"{len(snap['alarms'])} of its alarms" if snap else "no restored alarms")
        return snap

    def save(self, snapshot: dict) -> None:
        """In place and durable (fdatasync); works on a full disk once the file is reserved."""
        try:
            self._slots.write(json.dumps(snapshot, separators=(",", ":")).encode())
        except OSError as e:  # the sirens do not care, the log must say it loudly
            self.save_errors += 1
            self.last_error = f"cannot save alarm state to {self.path}: {e}"
            log.error("%s", self.last_error)
            return
        self.last_error = None
        if self.legacy.exists() and self.moved_aside is None:
            try:  # the old file is superseded; keep it for a downgrade, out of the way of the next start
                os.replace(self.legacy, self.legacy.with_name("alarms.json.migrated"))
            except OSError:
                pass

    def stats(self) -> dict:
        return {"path": str(self.path), "problems": list(self.problems), "moved_aside": self.moved_aside,
                "save_errors": self.save_errors, "last_error": self.last_error, "writes": self._slots.writes,
                "bytes_written": self._slots.bytes_written}

    def fault_event(self) -> dict | None:
        """The `fault` event fields that tell the platform the state read at start was damaged."""
        if not self.problems:
            return None
        return {"component": "alarm_state", "state": "fault", "reason": "corrupt",
                "detail": "; ".join(self.problems)[:500], "moved_to": self.moved_aside}

    def _move_aside(self, source: Path) -> None:
        target = source.with_name(f"{source.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            if source == self.path:
                shutil.copyfile(source, target)  # the reserved file stays: the next save goes in place
            else:
                os.replace(source, target)
            self.moved_aside = str(target)
        except OSError as e:
            self.moved_aside = f"(not moved: {e})"


def _checked(snap) -> tuple[dict | None, list[str]]:
    """What of a snapshot the alarm book can take, and what was wrong with the rest."""
    if not isinstance(snap, dict):
        return None, [f"expected an object, found {type(snap).__name__}"]
    problems = []
    counters = {}
    raw_counters = snap.get("counters") or {}
    if not isinstance(raw_counters, dict):
        problems.append("counters: expected an object")
        raw_counters = {}
    for name, n in raw_counters.items():
        if isinstance(n, int) and not isinstance(n, bool) and n >= 0:
            counters[str(name)] = n
        else:
            problems.append(f"counter {name!r}: {n!r} is not a count")
    alarms = []
    raw_alarms = snap.get("alarms") or []
    if not isinstance(raw_alarms, list):
        problems.append("alarms: expected a list")
        raw_alarms = []
    for i, a in enumerate(raw_alarms):
        why = _alarm_problem(a)
        if why:
            problems.append(f"alarm {i + 1}: {why}")
        else:
            alarms.append(a)
    return {"v": snap.get("v", 1), "counters": counters, "alarms": alarms}, problems


def _alarm_problem(a) -> str | None:
    if not isinstance(a, dict):
        return "not an object"
    for key in _STR_FIELDS:
        if not isinstance(a.get(key), str) or not a[key]:
            return f"{key} missing or not text"
    if a.get("level") not in LEVELS:
        return f"level {a.get('level')!r} is not one of {', '.join(LEVELS)}"
    for key in ("value", "raised_ts"):
        v = a.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return f"{key} {v!r} is not a number"
    return None
