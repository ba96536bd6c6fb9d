"""The Recorder: the one writer of the outbox, between the safety loop (and the uplink) and the disk.

The safety loop must never wait on a disk. It hands events (and raw readings, for telemetry) to
`submit()` / `reading()`, which only append to an in-memory lane and return at once (intake.py):
alarms, faults and audits on the *urgent* lane, which telemetry cannot crowd out; readings,
telemetry and status on the *bulk* lane, shed when full (counted, and declared by a `fault` event).
Events submitted before the outbox opens wait in the lanes (the pre-outbox buffer).

Group commits, for the SD card: an urgent event is committed at once with synchronous=FULL (and the
pending telemetry rides along); telemetry, status and the uplink's delivery marks are committed
together every `commit_s`. Housekeeping (deleting delivered rows) runs every `housekeep_s`.

When the outbox cannot be written (disk full, file read-only, damaged, deleted underneath) the gateway
keeps running: the error is logged loudly once, counted, a `fault` event is queued, alarms/faults/audit
are held in memory and retried every `retry_s` (reopening the file when a new connection is what it
takes), telemetry and status are dropped (counted). When a write succeeds again the held events go
in first, followed by a `fault` "recovered" saying how many were dropped. An event that can never be
stored (not serialisable) is dropped on its own, counted and declared; it does not stall the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, NamedTuple

from gateway.errors import OutboxError
from gateway.reading import Reading
from gateway.record import envelope
from gateway.record.intake import Intake
from gateway.record.outbox import BadEvent, Event, Outbox
from gateway.record.telemetry import TelemetryAggregator

log = logging.getLogger(__name__)

_KEEP_WHEN_UNWRITABLE = frozenset((envelope.ALARM, envelope.FAULT, envelope.AUDIT))
COUNTERS = ("shed_telemetry", "dropped_urgent", "dropped_unwritable", "dropped_invalid", "dropped_marks",
            "dropped_calls")


class _Call(NamedTuple):
    """Work for the writer thread that is not an event (Recorder.call)."""
    fn: Callable


class Recorder:
    """Writer thread that feeds the outbox from non-blocking lanes."""

    def __init__(self, outbox: Outbox | None, telemetry: TelemetryAggregator | None = None, *,
                 queue_max: int = 100_000, urgent_max: int = 10_000, batch_max: int = 2000,
                 held_max: int = 10_000, retry_s: float = 1.0, commit_s: float = 1.0,
                 housekeep_s: float | None = None, check_file_s: float = 5.0, on_error=None, health=None,
                 status_period_s: float = 60.0):
        self.outbox = outbox
        self.telemetry = telemetry
        self.lanes = Intake(urgent_max, queue_max)
        self._batch_max = batch_max
        self._held: list[Event] = []  # alarms/faults/audit waiting for the disk to come back
        self._held_max = held_max
        self._retry_s = retry_s
        self._commit_s = commit_s
        self._housekeep_s = housekeep_s if housekeep_s is not None else 6 * commit_s
        self._check_file_s = check_file_s
        self._on_error = on_error  # called (from this thread) with the OutboxError on the first failure
        self._health = health  # callable -> `status` event fields, recorded every status_period_s
        self._status_period = status_period_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: list[Event] = []  # taken from the lanes, waiting for the next group commit
        self._pending_since: float | None = None
        self._marks: list[tuple[int, object]] = []  # (seq, on_marked)
        self._marks_since = 0.0
        self._failed_marks: list[tuple[int, str]] = []
        self.failing: OutboxError | None = None
        self.commits = 0
        self.dropped_unwritable = 0
        self.dropped_invalid = 0
        self._declared = {"shed_telemetry": 0, "dropped_urgent": 0}
        self._next_retry = 0.0

    # -- the safety loop's side: never blocks ---------------------------------------------------
    def submit(self, type_: str, fields: dict, ts: float | None = None) -> bool:
        """Queue an event. Alarms, faults and audits are refused only past their own lane's bound
        (counted and declared); telemetry and status are shed when the bulk lane is full."""
        ev = Event(type_, fields, time.time() if ts is None else ts)
        return self.lanes.put(ev, urgent=type_ in _KEEP_WHEN_UNWRITABLE)

    def reading(self, reading: Reading) -> bool:
        """Queue a reading for the telemetry aggregator (ignored without one)."""
        if self.telemetry is None:
            return True
        return self.lanes.put(reading, urgent=False)

    # -- the uplink's side ---------------------------------------------------------------------
    def delivered(self, seqs, on_marked=None) -> None:
        """PUBACKed seqs: marked in the outbox with the next group commit; `on_marked(seqs)` is
        called (from this thread) once they are."""
        self.lanes.mark([(s, on_marked) for s in seqs])

    def failed(self, seq: int, reason: str) -> None:
        """A message the broker will never take: marked failed with the next commit."""
        self.lanes.fail(seq, reason)

    def call(self, fn: Callable) -> bool:
        """Run fn(outbox) on the writer thread: the other uplinks' delivery marks (gateway/record/
        cursors.py) go through the one writer of the file. On the urgent lane, so telemetry cannot
        crowd them out; False (counted as dropped_calls) when that lane is full."""
        return self.lanes.call(_Call(fn))

    # -- lifecycle -----------------------------------------------------------------------------
    def attach(self, outbox: Outbox, health=None) -> "Recorder":
        self.outbox = outbox
        if health is not None:
            self._health = health
        return self

    def start(self) -> "Recorder":
        if self.outbox is None:
            raise OutboxError("the recorder has no outbox to write to")
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is queued (and the open telemetry windows), then end the thread."""
        self._stop.set()
        self.lanes.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("recorder did not finish within %.0f s; %d events not committed",
                          timeout, self.lanes.depth())
            elif self._held:
                log.error("outbox still not writable at shutdown: %d held alarm/fault/audit events lost",
                          len(self._held))
            self._thread = None

    def flush(self, timeout: float = 10.0) -> bool:
        """Commit now everything submitted so far (held, if the outbox is not writable)."""
        return self.lanes.flush(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> dict:
        counters = self.counters()
        return {"queued": self.lanes.depth(), "urgent_queued": self.lanes.urgent_depth(), "held": len(self._held),
                **counters, "dropped_queue_full": counters["shed_telemetry"] + counters["dropped_urgent"],
                "commits": self.commits, "writable": self.failing is None,
                "error": str(self.failing) if self.failing else None}

    def counters(self) -> dict:
        """Every drop counter (for `status` and the status event)."""
        return {"shed_telemetry": self.lanes.shed, "dropped_urgent": self.lanes.dropped_urgent,
                "dropped_unwritable": self.dropped_unwritable, "dropped_invalid": self.dropped_invalid,
                "dropped_marks": self.lanes.dropped_marks, "dropped_calls": self.lanes.dropped_calls}

    # -- the writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        now = time.monotonic()
        next_status, next_housekeep, next_check = now + self._status_period, now + self._housekeep_s, now
        while True:
            self.lanes.wait(0.2)
            stopping = self._stop.is_set()
            take = self.lanes.take()
            urgent = [i for i in take.urgent if not isinstance(i, _Call)]
            calls = [i for i in take.urgent if isinstance(i, _Call)]
            for item in take.bulk:
                self._add_pending(self._to_events(item))
            if self.telemetry is not None:
                self._add_pending([Event(envelope.TELEMETRY, f) for f in self.telemetry.due()])
            now = time.monotonic()
            if self._health is not None and now >= next_status:
                next_status = now + self._status_period
                self._add_pending([Event(envelope.STATUS, self._status_fields())])
            if stopping and self.telemetry is not None:
                self._add_pending([Event(envelope.TELEMETRY, f) for f in self.telemetry.flush()])
            if take.marks:
                if not self._marks:
                    self._marks_since = take.marks_since
                self._marks += take.marks
            self._failed_marks += take.failed
            if now >= next_check:
                next_check = now + self._check_file_s
                self._check_file()
            due = (urgent or take.failed or take.flush or stopping or len(self._pending) >= self._batch_max
                   or (self._pending_since is not None and now - self._pending_since >= self._commit_s)
                   or (self._marks and now - self._marks_since >= self._commit_s)
                   or ((self._held or self.outbox.needs_reopen) and now >= self._next_retry))
            if due:
                self._write(urgent + self._declarations())
                if now >= next_housekeep and self.failing is None:
                    next_housekeep = now + self._housekeep_s
                    self._housekeep()
            self._run_calls(calls)
            self.lanes.done(take)
            if stopping and not self.lanes.depth():
                return

    def _run_calls(self, calls: list[_Call]) -> None:
        """The other uplinks' delivery marks (Recorder.call): each is its own small transaction and
        commits nothing of the lanes' events, so it does not force a group commit early."""
        for call in calls:
            try:
                call.fn(self.outbox)
            except Exception:  # noqa: BLE001 - a cursor's bug must not stop the writer
                log.exception("recorder call failed")

    def _add_pending(self, events: list[Event]) -> None:
        if events:
            if self._pending_since is None:
                self._pending_since = time.monotonic()
            self._pending += events

    def _to_events(self, item) -> list[Event]:
        if isinstance(item, Event):
            return [item]
        return [Event(envelope.TELEMETRY, f, item.ts) for f in self.telemetry.feed(item)]  # a Reading

    def _status_fields(self) -> dict:
        try:
            fields = self._health()
        except Exception as e:  # noqa: BLE001 - a health probe's bug must not stop the writer
            log.exception("health probe failed")
            fields = {"error": f"{type(e).__name__}: {e}"}
        fields.setdefault("recorder", self.counters())
        return fields

    def _declarations(self) -> list[Event]:
        """`fault` events telling the platform that events were shed or refused since the last one."""
        out = []
        for key, reason in (("shed_telemetry", "telemetry_shed"), ("dropped_urgent", "urgent_dropped")):
            n = self.lanes.shed if key == "shed_telemetry" else self.lanes.dropped_urgent
            if n > self._declared[key]:
                self._declared[key] = n
                out.append(Event(envelope.FAULT, {"component": "recorder", "state": "fault", "reason": reason,
                                                  "dropped": n}))
        return out

    def _check_file(self) -> None:
        ob = self.outbox
        if ob.file_replaced():
            log.error("OUTBOX FILE %s WAS DELETED OR REPLACED while open: starting a new one", ob.path)
            ob.reopen()

    def _housekeep(self) -> None:
        try:
            self.outbox.housekeep()
        except OutboxError as e:
            log.error("outbox housekeeping: %s", e)

    def _write(self, urgent: list[Event]) -> None:
        pending, self._pending, self._pending_since = self._pending, [], None
        if self._held and time.monotonic() < self._next_retry:
            self._hold(urgent + pending)  # still failing and not yet time to retry: keep what matters
            return
        if self.outbox.needs_reopen and not self.outbox.reopen():
            self._failed(OutboxError(self.outbox.last_error or "outbox unavailable"), self._held + urgent + pending)
            return
        batch = self._held + urgent + pending
        marks, failed = self._marks, self._failed_marks
        while True:
            try:
                self.outbox.commit(batch, [s for s, _ in marks], failed)
                break
            except BadEvent as e:
                batch = self._without(batch, e.bad)
            except OutboxError as e:
                self._failed(e, batch)
                return
        self.commits += 1
        self._held, self._marks, self._failed_marks = [], [], []
        self._notify_marked(marks)
        if self.failing is not None:
            log.warning("outbox writable again; %d telemetry/status events were dropped while it was not",
                        self.dropped_unwritable)
            self.failing = None
            self._write([Event(envelope.FAULT, {"component": "outbox", "state": "recovered", "reason": "unwritable",
                                                "dropped": self.dropped_unwritable})])

    def _without(self, batch: list[Event], bad: list[tuple[int, str]]) -> list[Event]:
        drop = {i for i, _ in bad}
        kept = [ev for i, ev in enumerate(batch) if i not in drop]
        for i, why in bad:
            self.dropped_invalid += 1
            log.error("event dropped, it can never be stored: %s", why)
            kept.append(Event(envelope.FAULT, {"component": "recorder", "state": "fault", "reason": "invalid_event",
                                               "detail": f"{batch[i].type}: {why}"[:500]}))
        return kept

    @staticmethod
    def _notify_marked(marks) -> None:
        by_callback: dict = {}
        for seq, cb in marks:
            if cb is not None:
                by_callback.setdefault(cb, []).append(seq)
        for cb, seqs in by_callback.items():
            try:
                cb(seqs)
            except Exception:  # noqa: BLE001 - the uplink's callback must not stop the writer
                log.exception("delivery mark callback failed")

    def _failed(self, error: OutboxError, batch: list[Event]) -> None:
        self._next_retry = time.monotonic() + self._retry_s
        self._held = []
        if self.failing is None:
            # loud once, not once per batch: the journal must stay readable during a disk-full day
            log.error("OUTBOX NOT WRITABLE - events are held in memory, telemetry dropped: %s", error)
            self.failing = error
            batch = [Event(envelope.FAULT, {"component": "outbox", "state": "fault", "reason": "unwritable",
                                            "detail": str(error)})] + batch
            if self._on_error is not None:
                try:
                    self._on_error(error)
                except Exception:  # the callback is the daemon's; its bug must not stop the writer
                    log.exception("recorder on_error callback failed")
        self._hold(batch)
        if len(self._marks) > 100_000:  # marks not written mean duplicates later, never a loss
            self.lanes.dropped_marks += len(self._marks) - 100_000
            self._marks = self._marks[-100_000:]

    def _hold(self, events: list[Event]) -> None:
        for ev in events:
            if ev.type in _KEEP_WHEN_UNWRITABLE and len(self._held) < self._held_max:
                self._held.append(ev)
            else:
                self.dropped_unwritable += 1
