"""Every update step becomes an audit event (docs/updates.md, "Audit").

Steps are journalled by whoever takes them: `gateway update` in a technician's shell, the daemon for a
platform command, the launcher between two daemons. Only the daemon may write the outbox, so it reads
the journal: at start and on every supervision tick (a stat when nothing changed), each line past the
last one it audited becomes

    {"type": "audit", "action": "update", "actor": "cli:alice[4242]", "result": "switched",
     "detail": {"update": "3fa1c2d4", "version": "0.2.0", "previous": "0.1.0", ...}}

The number of the last line audited is kept in <data_dir>/update/audited (temp file + rename): a
restart neither repeats nor loses one."""

from __future__ import annotations

import logging
import os

from . import journal as J

log = logging.getLogger(__name__)

OMIT = ("n", "ts", "by", "step")


class UpdateAudit:
    def __init__(self, data_dir: str, record):
        self.journal = J.Journal(os.path.join(data_dir, "update", "journal"))
        self.mark_path = os.path.join(data_dir, "update", "audited")
        self.record = record  # record(fields, ts)
        self._seen = None  # (size, mtime_ns) of the journal last read

    def _mark(self) -> int:
        try:
            with open(self.mark_path) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _save(self, n: int) -> None:
        tmp = self.mark_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{n}\n")
        os.replace(tmp, self.mark_path)

    def poll(self) -> int:
        """Audit the lines not yet audited; returns how many."""
        try:
            st = os.stat(self.journal.path)
        except FileNotFoundError:
            return 0
        key = (st.st_size, st.st_mtime_ns)
        if key == self._seen:
            return 0
        entries = self.journal.entries()
        mark = self._mark()
        # compaction keeps the numbers (journal.Journal.compact): n only ever grows
        new = [e for e in entries if e.get("n", 0) > mark]
        for e in new:
            self.record({"action": "update", "actor": e.get("by") or "unknown", "result": e["step"],
                         "detail": {k: v for k, v in e.items() if k not in OMIT}}, e.get("ts"))
        if new:
            self._save(new[-1]["n"])
        self._seen = key
        return len(new)
