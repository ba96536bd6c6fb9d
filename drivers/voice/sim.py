"""The `sim` voice backend: says nothing, remembers everything.

Each message or stop is kept as {"t": unix time, "mono": monotonic time, "action": "say"|"stop",
"text": ..., "prefix": ...} for tests (`said()`, `wait_for`) and, when `record` is set, appended
as one JSON line to that file (`gateway sim`, `make demo`). It runs on the voice worker's thread,
never on the safety loop, so writing the file here cannot delay a relay."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque

from drivers.voice.base import VoiceBackend, VoiceError


class SimVoice(VoiceBackend):
    name = "sim"

    def __init__(self, record: str | None = None, history_max: int = 10_000):
        self._lock = threading.Condition()
        self._history: deque[dict] = deque(maxlen=history_max)
        self._fh = None
        self.record = record
        if record:
            try:
                os.makedirs(os.path.dirname(os.path.abspath(record)), exist_ok=True)
                self._fh = open(record, "a", encoding="utf-8")
            except OSError as e:
                raise VoiceError(f"voice record: cannot write {record}: {e.strerror}") from e
        self.speaking: str | None = None

    def speak(self, text: str, prefix: str | None = None) -> None:
        self._add({"action": "say", "text": text, "prefix": prefix})
        self.speaking = text

    def stop(self) -> None:
        if self.speaking is not None:
            self._add({"action": "stop", "text": self.speaking, "prefix": None})
        self.speaking = None

    def close(self) -> None:
        self.stop()
        if self._fh:
            self._fh.close()
            self._fh = None

    def _add(self, item: dict) -> None:
        item = {"t": time.time(), "mono": time.monotonic(), **item}
        with self._lock:
            self._history.append(item)
            self._lock.notify_all()
        if self._fh:
            self._fh.write(json.dumps(item, ensure_ascii=False) + "\n")
            self._fh.flush()

    def said(self) -> list[dict]:
        with self._lock:
            return list(self._history)

    def wait_for(self, predicate, timeout: float) -> bool:
        """Wait (bounded) until predicate(self) is true."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.05))
            return True
