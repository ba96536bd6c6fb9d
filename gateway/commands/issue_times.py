"""The newest issue time accepted from each platform key: the replay fence that outlives the nonce file.

The platform issues its commands in increasing `issued_at` per key (gateway-platform send keeps it
so). The nonce cache alone forgets everything when its file is gone (a full disk, a moved data_dir,
a technician's cleanup), and a command captured a minute ago is then valid again. With the newest
issue time kept here, the gateway refuses anything not newer than it while the nonce file is missing.

Why a file of its own and not the outbox database: the command handler is built before the outbox
opens and outlives every reload (a new Daemon opens a new Outbox), the daemon runs on without an
outbox when its disk fails, and the outbox's tables are the recorder's. A separate, fsynced, atomically
replaced file is a second place in the sense that matters: no single lost, truncated or deleted file
takes both fences away. Written at every accepted command (a few a minute at most)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading

from .atomic import write_atomic

log = logging.getLogger("gateway.commands")
FILE_NAME = "command-issued.json"


def key_id(public_key) -> str:
    """A platform key's name in the file: the first 16 hex digits of the sha256 of its raw bytes."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class NewestIssued:
    """key id -> the newest `issued_at` (Unix seconds) accepted from that key, kept across restarts.
    `problem`: None, or a sentence saying why the file could not be read (it then starts empty)."""

    def __init__(self, data_dir: str):
        self.path = os.path.join(data_dir, FILE_NAME)
        self._lock = threading.Lock()
        self.problem: str | None = None
        self.existed = os.path.lexists(self.path)
        self._newest = self._load()

    def _load(self) -> dict[str, float]:
        try:
            with open(self.path, "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            self.problem = f"cannot read {self.path}: {e}"
            return {}
        if not isinstance(data, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for k, v in data.items()):
            self.problem = f"{self.path} is not a table of issue times"
            return {}
        return {k: float(v) for k, v in data.items()}

    def newest(self, key: str) -> float | None:
        with self._lock:
            return self._newest.get(key)

    def __bool__(self) -> bool:
        return bool(self._newest)

    def accept(self, key: str, issued_at: float) -> None:
        """Record an accepted command's issue time (only if it is the newest of its key)."""
        with self._lock:
            if issued_at <= self._newest.get(key, -math.inf):
                return
            self._newest[key] = issued_at
            data = json.dumps(self._newest, separators=(",", ":"), sort_keys=True).encode()
            try:
                write_atomic(self.path, data, mode=0o600)
            except OSError as e:  # as for the nonce file: refusing would leave a false alarm sounding
                log.error("newest command issue time not saved to %s (%s)", self.path, e)
