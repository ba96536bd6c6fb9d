"""Where the safety loop's news goes: each consumer gets its own thread, so a slow or hung
consumer (the outbox on a full SD card, an uplink that never answers, a blocked stdout)
delays only itself and never the loop that switches relays."""

from __future__ import annotations

import logging
import queue
import threading

log = logging.getLogger("gateway.safety")
_STOP = object()


class QueueSink:
    """Hands every item, in order, to `handler` on a thread of its own."""

    def __init__(self, name: str, handler):
        self.name = name
        self._handler = handler
        self._queue: queue.SimpleQueue = queue.SimpleQueue()  # put() never blocks
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, item) -> None:
        self._queue.put(item)

    def stop(self, timeout: float) -> bool:
        """False if the handler is still stuck after `timeout` (the thread is a daemon)."""
        self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            try:
                self._handler(item)
            except Exception:  # a consumer's bug must not stop its later items: logged, not hidden
                log.exception("%s: handler failed on %r", self.name, item)


class LatestSink(QueueSink):
    """For state snapshots: only the newest matters, so a slow handler skips the ones that
    piled up and memory stays bounded however long it hangs."""

    def __init__(self, name: str, handler):
        super().__init__(name, handler)
        self._lock = threading.Lock()
        self._latest = None
        self._pending = threading.Event()
        self._stopping = False

    def put(self, item) -> None:
        with self._lock:
            self._latest = item
        self._pending.set()

    def stop(self, timeout: float) -> bool:
        self._stopping = True
        self._pending.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            self._pending.wait()
            self._pending.clear()
            with self._lock:
                item, self._latest = self._latest, None
            if item is not None:
                try:
                    self._handler(item)
                except Exception:  # as above: logged; the next snapshot is tried again
                    log.exception("%s: handler failed", self.name)
            if self._stopping and self._latest is None:
                return
