"""The Recorder's intake: two bounded in-memory lanes and the uplink's delivery marks.

`put()` never blocks and never waits for the writer (one short lock around a list append). The
urgent lane (alarms, faults, audits) has its own bound, so no amount of telemetry can push an alarm
out; the bulk lane (readings, telemetry, status) sheds what does not fit. Both count what they
refuse; the Recorder declares it to the platform.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

MARKS_MAX = 100_000


@dataclass
class Take:
    """What the writer took in one go."""
    urgent: list = field(default_factory=list)
    bulk: list = field(default_factory=list)
    marks: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    marks_since: float = 0.0
    flush: int = 0  # the flush ticket this take answers (0: none asked)
    count: int = 0


class Intake:
    def __init__(self, urgent_max: int, bulk_max: int):
        self.urgent_max = urgent_max
        self.bulk_max = bulk_max
        self._cv = threading.Condition()
        self._urgent: list = []
        self._bulk: list = []
        self._marks: list = []
        self._failed: list = []
        self._marks_since = 0.0
        self._ticket = 0  # flush tickets handed out
        self._answered = 0  # flush tickets answered by a commit
        self._taken_count = 0
        self.shed = 0
        self.dropped_urgent = 0
        self.dropped_marks = 0
        self.dropped_calls = 0

    # -- producers -----------------------------------------------------------------------------
    def put(self, item, urgent: bool) -> bool:
        with self._cv:
            lane, bound = (self._urgent, self.urgent_max) if urgent else (self._bulk, self.bulk_max)
            if len(lane) >= bound:
                if urgent:
                    self.dropped_urgent += 1
                else:
                    self.shed += 1
                return False
            lane.append(item)
            if urgent:
                self._cv.notify_all()  # an alarm is committed at once; telemetry waits for the tick
        return True

    def call(self, item) -> bool:
        """Work for the writer (Recorder.call) on the urgent lane and under its bound, counted apart
        from events: a dropped call is not an alarm lost."""
        with self._cv:
            if len(self._urgent) >= self.urgent_max:
                self.dropped_calls += 1
                return False
            self._urgent.append(item)
            self._cv.notify_all()
        return True

    def mark(self, marks: list) -> None:
        with self._cv:
            if not self._marks:
                self._marks_since = time.monotonic()
            room = MARKS_MAX - len(self._marks)
            if len(marks) > room:  # an unmarked delivery is sent again later: a duplicate, never a loss
                self.dropped_marks += len(marks) - max(0, room)
                marks = marks[:max(0, room)]
            self._marks += marks

    def fail(self, seq: int, reason: str) -> None:
        with self._cv:
            self._failed.append((seq, reason))
            self._cv.notify_all()

    def wake(self) -> None:
        with self._cv:
            self._cv.notify_all()

    def flush(self, timeout: float) -> bool:
        """Ask the writer to commit everything put so far; wait until it has (or timeout)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            self._ticket += 1
            mine = self._ticket
            self._cv.notify_all()
            while self._answered < mine:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    # -- the writer ----------------------------------------------------------------------------
    def wait(self, timeout: float) -> None:
        with self._cv:
            if not (self._urgent or self._failed or self._ticket > self._answered):
                self._cv.wait(timeout)

    def take(self) -> Take:
        with self._cv:
            t = Take(self._urgent, self._bulk, self._marks, self._failed, self._marks_since,
                     self._ticket if self._ticket > self._answered else 0)
            self._urgent, self._bulk, self._marks, self._failed = [], [], [], []
            t.count = len(t.urgent) + len(t.bulk)
        return t

    def done(self, take: Take) -> None:
        """The take is committed (or held/dropped): answer its flush ticket."""
        if take.flush:
            with self._cv:
                self._answered = max(self._answered, take.flush)
                self._cv.notify_all()

    def depth(self) -> int:
        return len(self._urgent) + len(self._bulk)

    def urgent_depth(self) -> int:
        return len(self._urgent)
