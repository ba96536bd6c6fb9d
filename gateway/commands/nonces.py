"""The nonces of accepted commands, kept until the command expires, across restarts.

Without it a captured `silence` could be replayed for as long as it is valid (up to 5 minutes),
and a restart (a reload, a power cut) would forget everything seen. One small JSON file under
data_dir, replaced atomically at every accepted command: a few per minute at most."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from gateway.errors import CommandError

from .atomic import write_atomic
from .signing import MAX_SKEW_S

log = logging.getLogger("gateway.commands")
FILE_NAME = "command-nonces.json"
# Entries are kept this long past their expiry: a Pi without an RTC may step its clock back a little
# when NTP syncs, and a command must not become both valid and forgotten.
KEEP_PAST_EXPIRY_S = 60.0
MAX_ENTRIES = 10_000  # far more than the platform sends in 5 minutes; bounds the file if it floods


class NonceCache:
    """nonce -> expiry (Unix seconds) of every accepted command still worth remembering.

    If the file exists but cannot be read, every nonce it held is lost: commands issued before
    `refuse_issued_before` are then refused, since any of them could be a replay."""

    def __init__(self, data_dir: str, clock=time.time):
        self.path = os.path.join(data_dir, FILE_NAME)
        self._clock = clock
        self._lock = threading.Lock()
        self.refuse_issued_before: float | None = None
        self._entries: dict[str, float] = self._load()

    def _load(self) -> dict[str, float]:
        try:
            with open(self.path, "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            return self._lost(f"cannot read {self.path}: {e}")
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, (int, float))
                                                  and not isinstance(v, bool) for k, v in data.items()):
            return self._lost(f"{self.path} is not a nonce table")
        return dict(data)

    def _lost(self, why: str) -> dict[str, float]:
        # A command accepted before the loss was issued at most MAX_SKEW_S in the future of then.
        self.refuse_issued_before = self._clock() + MAX_SKEW_S
        log.error("NONCE CACHE LOST (%s): commands issued before %s are refused as possible replays",
                  why, time.strftime("%H:%M:%S", time.gmtime(self.refuse_issued_before)))
        return {}

    def seen(self, nonce: str) -> bool:
        with self._lock:
            expires = self._entries.get(nonce)
            return expires is not None and expires + KEEP_PAST_EXPIRY_S >= self._clock()

    def remember(self, nonce: str, expires_ts: float) -> None:
        """Record an accepted command's nonce. Raises CommandError('replayed') if it is already
        there (the check and the insert are one step, so two copies racing cannot both pass),
        CommandError('busy') when the table is full."""
        with self._lock:
            now = self._clock()
            self._entries = {n: e for n, e in self._entries.items() if e + KEEP_PAST_EXPIRY_S >= now}
            if nonce in self._entries:
                raise CommandError("replayed", "this command (its nonce) was already accepted")
            if len(self._entries) >= MAX_ENTRIES:
                raise CommandError("busy", f"more than {MAX_ENTRIES} commands in their validity window; "
                                           "try again in a few minutes")
            self._entries[nonce] = expires_ts
            data = json.dumps(self._entries, separators=(",", ":")).encode()
            try:
                write_atomic(self.path, data, mode=0o600)
            except OSError as e:
                # Still remembered in memory until a restart. Refusing would leave the platform unable
                # to silence a false alarm because the SD card is full.
                log.error("nonce cache %s not saved (%s): a restart within 5 minutes forgets this nonce",
                          self.path, e)

    def __len__(self) -> int:
        return len(self._entries)
