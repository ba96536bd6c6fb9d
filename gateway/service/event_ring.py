"""The daemon's last events in memory, for `gateway events --follow` (the history is the outbox file).

Bounded: a ring of the newest `size`; `total` counts every event ever appended so a follower knows
how many it missed when the ring turned over under it."""

from __future__ import annotations

import collections
import threading
import time


class EventRing:
    def __init__(self, size: int = 1000):
        self._ring: collections.deque[dict] = collections.deque(maxlen=size)
        self.total = 0
        self._cv = threading.Condition()
        self._closed = False

    def append(self, type_: str, fields: dict, ts: float) -> None:
        with self._cv:
            self._ring.append({"type": type_, "ts": iso(ts), **fields})
            self.total += 1
            self._cv.notify_all()

    def snapshot(self) -> tuple[list[dict], int]:
        """Every event the ring holds (oldest first) and the total so far."""
        with self._cv:
            return list(self._ring), self.total

    def wait(self, after_total: int, timeout: float) -> tuple[list[dict], int]:
        """Events appended after the `after_total`-th (as many as the ring still holds), and the new total."""
        with self._cv:
            self._cv.wait_for(lambda: self.total > after_total or self._closed, timeout)
            new = min(self.total - after_total, len(self._ring))
            return (list(self._ring)[len(self._ring) - new:] if new > 0 else []), self.total

    def close(self) -> None:
        """Wake every follower (the daemon is stopping)."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def __len__(self) -> int:
        return len(self._ring)

    def __iter__(self):
        """A copy of what the ring holds, oldest first (safe while events are appended)."""
        return iter(self.snapshot()[0])


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
