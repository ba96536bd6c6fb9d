"""The nonces of accepted commands, kept until the command expires, across restarts.

Without it a captured `silence` could be replayed for as long as it is valid (up to 5 minutes),
and a restart (a reload, a power cut) would forget everything seen. One small JSON file under
data_dir, replaced atomically at every accepted command: a few per minute at most.

If that file is gone or unreadable at start, the newest issue time accepted from each key
(issue_times.py, a second file) still refuses whatever is not newer, and the loss is reported
(`problem`: the daemon records it as a fault event)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from gateway.errors import CommandError

from .atomic import write_atomic
from .issue_times import NewestIssued
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
    `refuse_issued_before` are then refused, since any of them could be a replay. If it is missing
    after an earlier run (the issue-time file says there was one), `lost` is set. Either way, while
    `lost`, a command not issued after the newest one accepted from its key is refused.
    `problem`: None or (reason word, sentence) for a fault event."""

    def __init__(self, data_dir: str, clock=time.time):
        self.path = os.path.join(data_dir, FILE_NAME)
        self._clock = clock
        self._lock = threading.Lock()
        self.refuse_issued_before: float | None = None
        self.lost = False
        self.problem: tuple[str, str] | None = None
        self.issued = NewestIssued(data_dir)
        self._entries: dict[str, float] = self._load()
        if self.problem is None and self.issued.problem is not None:
            self.problem = ("issue_times_unreadable", self.issued.problem)
            log.error("%s: the nonce file still guards against replays", self.issued.problem)

    def _load(self) -> dict[str, float]:
        try:
            with open(self.path, "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            if self.issued or self.issued.existed:
                return self._lost("nonce_store_missing", f"{self.path} is missing although commands were "
                                                         f"accepted before (see {self.issued.path})")
            self._save({})  # a first start: from now on, a missing file means a lost one
            return {}
        except (OSError, ValueError) as e:
            return self._lost("nonce_store_unreadable", f"cannot read {self.path}: {e}", True)
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, (int, float))
                                                  and not isinstance(v, bool) for k, v in data.items()):
            return self._lost("nonce_store_unreadable", f"{self.path} is not a nonce table", True)
        return dict(data)

    def _lost(self, reason: str, why: str, unreadable: bool = False) -> dict[str, float]:
        self.lost = True
        self.problem = (reason, f"nonce cache lost ({why}): commands not issued after the newest one "
                                "accepted from their key are refused as possible replays")
        if unreadable:
            # A command accepted before the loss was issued at most MAX_SKEW_S in the future of then.
            self.refuse_issued_before = self._clock() + MAX_SKEW_S
        log.error("NONCE CACHE LOST (%s): commands not issued after the newest accepted from their key%s are "
                  "refused as possible replays", why, "" if not unreadable else
                  " or before " + time.strftime("%H:%M:%S", time.gmtime(self.refuse_issued_before)))
        self._save({})
        return {}

    def _save(self, entries: dict) -> None:
        try:
            write_atomic(self.path, json.dumps(entries, separators=(",", ":")).encode(), mode=0o600)
        except OSError as e:
            # Still remembered in memory until a restart. Refusing would leave the platform unable
            # to silence a false alarm because the SD card is full.
            log.error("nonce cache %s not saved (%s): a restart within 5 minutes forgets this nonce",
                      self.path, e)

    def seen(self, nonce: str) -> bool:
        with self._lock:
            expires = self._entries.get(nonce)
            return expires is not None and expires + KEEP_PAST_EXPIRY_S >= self._clock()

    def remember(self, nonce: str, expires_ts: float, issued_at: float | None = None,
                 key: str | None = None) -> None:
        """Record an accepted command's nonce (and its issue time, for `key`). Raises
        CommandError('replayed') if it is already there (the check and the insert are one step, so
        two copies racing cannot both pass) or, after a loss, not newer than the newest from `key`;
        CommandError('busy') when the table is full."""
        with self._lock:
            now = self._clock()
            self._entries = {n: e for n, e in self._entries.items() if e + KEEP_PAST_EXPIRY_S >= now}
            if nonce in self._entries:
                raise CommandError("replayed", "this command (its nonce) was already accepted")
            newest = self.issued.newest(key) if key is not None else None
            if self.lost and issued_at is not None and newest is not None and issued_at <= newest:
                raise CommandError("replayed", "the nonce cache was lost and this command was not issued after "
                                               f"the newest one accepted from its key ({_iso(newest)}): it could "
                                               "be a replay; sign a new one")
            if len(self._entries) >= MAX_ENTRIES:
                raise CommandError("busy", f"more than {MAX_ENTRIES} commands in their validity window; "
                                           "try again in a few minutes")
            self._entries[nonce] = expires_ts
            self._save(self._entries)
        if key is not None and issued_at is not None:
            self.issued.accept(key, issued_at)

    def __len__(self) -> int:
        return len(self._entries)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
