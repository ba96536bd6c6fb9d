"""The Recorder: the writer thread between the safety loop and the outbox.

The safety loop must never wait on a disk. It hands events (and raw readings, for telemetry) to
`submit()` / `reading()`, which only put them on a bounded in-memory queue and return at once. This
thread commits them in batches: a batch holding an alarm or fault is committed with synchronous=FULL
straight away, telemetry rides along in the same or the next batch.

When the outbox cannot be written (disk full, file read-only) the gateway keeps running: the error is
logged loudly once, counted, a `fault` event is queued, alarms/faults/audit are held in memory and
retried every `retry_s`, telemetry and status are dropped (counted). When a write succeeds again the
held events go in first, followed by a `fault` "cleared" saying how many were dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, NamedTuple

from gateway.errors import OutboxError
from gateway.reading import Reading
from gateway.record import envelope
from gateway.record.outbox import Event, Outbox
from gateway.record.telemetry import TelemetryAggregator

log = logging.getLogger(__name__)

_KEEP_WHEN_UNWRITABLE = frozenset((envelope.ALARM, envelope.FAULT, envelope.AUDIT))


class _Call(NamedTuple):
    """Work for the writer thread that is not an event (Recorder.call)."""
    fn: Callable


class Recorder:
    """Writer thread that feeds the outbox from a non-blocking queue."""

    def __init__(self, outbox: Outbox, telemetry: TelemetryAggregator | None = None, *,
                 queue_max: int = 100_000, batch_max: int = 2000, held_max: int = 10_000,
                 retry_s: float = 1.0, on_error=None, health=None, status_period_s: float = 60.0):
        self.outbox = outbox
        self.telemetry = telemetry
        self._queue: queue.Queue = queue.Queue(maxsize=queue_max)
        self._batch_max = batch_max
        self._held: list[Event] = []  # alarms/faults/audit waiting for the disk to come back
        self._held_max = held_max
        self._retry_s = retry_s
        self._on_error = on_error  # called (from this thread) with the OutboxError on the first failure
        self._health = health  # callable -> `status` event fields, recorded every status_period_s
        self._status_period = status_period_s
        self._next_status = time.monotonic() + status_period_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = threading.Condition()
        self.submitted = 0
        self.processed = 0
        self.dropped_queue_full = 0
        self.dropped_unwritable = 0
        self.failing: OutboxError | None = None
        self._next_retry = 0.0

    # -- the safety loop's side: never blocks ---------------------------------------------------
    def submit(self, type_: str, fields: dict, ts: float | None = None) -> bool:
        """Queue an event. False (and counted) when the queue is full: the writer is stuck."""
        return self._put(Event(type_, fields, time.time() if ts is None else ts))

    def reading(self, reading: Reading) -> bool:
        """Queue a reading for the telemetry aggregator (ignored without one)."""
        if self.telemetry is None:
            return True
        return self._put(reading)

    def call(self, fn) -> bool:
        """Run fn(outbox) on the writer thread: the other uplinks' delivery marks
        (gateway/record/cursors.py) go through the one writer of the file. False when the queue is full."""
        return self._put(_Call(fn))

    def _put(self, item) -> bool:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped_queue_full += 1
            return False
        with self._done:
            self.submitted += 1
        return True

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "Recorder":
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is queued (and the open telemetry windows), then end the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("recorder did not finish within %.0f s; %d events not committed",
                          timeout, self._queue.qsize())
            elif self._held:
                log.error("outbox still not writable at shutdown: %d held alarm/fault/audit events lost",
                          len(self._held))
            self._thread = None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far has been handled (committed, held or dropped)."""
        deadline = time.monotonic() + timeout
        with self._done:
            target = self.submitted
            while self.processed < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._done.wait(left)
        return True

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> dict:
        return {"queued": self._queue.qsize(), "held": len(self._held),
                "dropped_queue_full": self.dropped_queue_full, "dropped_unwritable": self.dropped_unwritable,
                "writable": self.failing is None, "error": str(self.failing) if self.failing else None}

    # -- the writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            items = self._take(timeout=0.2)
            events = self._to_events(items)
            if self.telemetry is not None:
                events += [Event(envelope.TELEMETRY, f) for f in self.telemetry.due()]
            if self._health is not None and time.monotonic() >= self._next_status:
                self._next_status = time.monotonic() + self._status_period
                events.append(Event(envelope.STATUS, self._health()))
            stopping = self._stop.is_set() and self._queue.empty()
            if stopping and self.telemetry is not None:
                events += [Event(envelope.TELEMETRY, f) for f in self.telemetry.flush()]
            if events or (self._held and time.monotonic() >= self._next_retry):
                self._write(events)
            with self._done:
                self.processed += len(items)
                self._done.notify_all()
            if stopping:
                return

    def _take(self, timeout: float) -> list:
        try:
            items = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(items) < self._batch_max:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _to_events(self, items: list) -> list[Event]:
        events = []
        for item in items:
            if isinstance(item, Event):
                events.append(item)
            elif isinstance(item, _Call):
                try:
                    item.fn(self.outbox)
                except Exception:  # a cursor's bug must not stop the writer
                    log.exception("recorder call failed")
            else:  # a Reading
                events += [Event(envelope.TELEMETRY, f, item.ts) for f in self.telemetry.feed(item)]
        return events

    def _write(self, events: list[Event]) -> None:
        if self._held and time.monotonic() < self._next_retry:
            # still failing and not yet time to retry: keep what matters, drop the rest
            self._hold(events)
            return
        batch = self._held + events
        try:
            self.outbox.add_many(batch)
        except OutboxError as e:
            self._failed(e, batch)
            return
        self._held = []
        if self.failing is not None:
            log.warning("outbox writable again; %d telemetry/status events were dropped while it was not",
                        self.dropped_unwritable)
            self.failing = None
            self._write([Event(envelope.FAULT, {"component": "outbox", "state": "recovered", "reason": "unwritable",
                                                "dropped": self.dropped_unwritable})])

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

    def _hold(self, events: list[Event]) -> None:
        for ev in events:
            if ev.type in _KEEP_WHEN_UNWRITABLE and len(self._held) < self._held_max:
                self._held.append(ev)
            else:
                self.dropped_unwritable += 1
