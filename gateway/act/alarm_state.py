"""The active alarms on disk, so a restarted daemon comes back sounding what it sounded.
Written by the safety loop's state sink thread, never by the safety loop itself."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger("gateway.state")


class AlarmStateFile:
    def __init__(self, data_dir: str):
        self.path = Path(data_dir) / "alarms.json"

    def load(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.error("alarm state %s unreadable (%s): starting with no active alarms", self.path, e)
            return None

    def save(self, snapshot: dict) -> None:
        """Atomic and durable: temp file, fsync, rename, fsync of the directory."""
        tmp = self.path.with_suffix(".json.tmp")
        try:
            with open(tmp, "w") as f:
                json.dump(snapshot, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as e:  # disk full: the sirens do not care, the log must say it loudly
            log.error("cannot save alarm state to %s: %s", self.path, e)
