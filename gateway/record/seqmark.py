"""The seq high-water mark, kept beside the outbox in a second file so seq never goes back.

The outbox's AUTOINCREMENT keeps seq rising as long as the file lives. When it does not (deleted,
truncated, moved aside as corrupt, replaced by an old copy) the next event would reuse ids the
platform already has and be dropped there as a duplicate. Before the outbox commits a seq above the
mark, the mark is moved `block` seqs ahead, in place and fdatasync'ed (a preallocated two-slot file:
it can be written on a full disk), so it costs one small write per block of events, not per event.

The mark also names the outbox file it belongs to (a random id stored in the outbox's meta table)
and the lowest seq that was still undelivered when it was written: a fresh or replaced outbox starts
above `hwm` and declares [pending_from, hwm] as a gap.
"""

from __future__ import annotations

import json
import logging
import os

from gateway.record.slotfile import SlotFile

log = logging.getLogger(__name__)
DEFAULT_BLOCK = 1000


class SeqMark:
    def __init__(self, data_dir: str, block: int = DEFAULT_BLOCK, name: str = "seq.mark"):
        self.block = max(1, int(block))
        self._slots = SlotFile(os.path.join(data_dir, name), 512)
        self.hwm = 0  # no seq above this was ever handed out
        self.pending_from = 1
        self.outbox_id: str | None = None
        self.errors = 0
        self.last_error: str | None = None
        try:
            raw, damaged = self._slots.read()
            if raw is not None:
                d = json.loads(raw)
                self.hwm = int(d["hwm"])
                self.pending_from = int(d.get("pending_from", 1))
                self.outbox_id = d.get("outbox")
            elif damaged:
                log.error("seq mark %s is damaged: seq continues from the outbox alone", self._slots.path)
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.error("seq mark %s unreadable (%s): seq continues from the outbox alone", self._slots.path, e)

    @property
    def writes(self) -> int:
        return self._slots.writes

    def reserve(self, upto: int, pending_from: int, outbox_id: str) -> None:
        """Make sure no seq <= upto is above the mark (called before committing it). A failure is
        logged and counted, never raised: the events matter more than the mark."""
        if upto <= self.hwm and outbox_id == self.outbox_id:
            return
        hwm = max(self.hwm, upto + self.block)
        body = json.dumps({"hwm": hwm, "pending_from": pending_from, "outbox": outbox_id}).encode()
        try:
            self._slots.write(body)
        except OSError as e:
            self.errors += 1
            if self.last_error is None:
                log.error("cannot write the seq mark %s: %s (seq is kept by the outbox alone meanwhile)",
                          self._slots.path, e)
            self.last_error = str(e)
            return
        self.last_error = None
        self.hwm, self.pending_from, self.outbox_id = hwm, pending_from, outbox_id

    def stats(self) -> dict:
        return {"hwm": self.hwm, "writes": self.writes, "errors": self.errors, "last_error": self.last_error}
