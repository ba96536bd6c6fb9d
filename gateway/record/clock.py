"""Is the wall clock trustworthy, and which boot is this?

A Raspberry Pi before the Pi 5 has no RTC: until NTP syncs, fake-hwclock restores the last saved
time, so timestamps can be minutes or months off. Every event says whether its `ts` was taken on a
synchronised clock; the platform orders events of one boot by `seq`, not by `ts`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import time

log = logging.getLogger(__name__)

TIMESYNC_FLAG = "/run/systemd/timesync/synchronized"  # touched by systemd-timesyncd on sync
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
STA_UNSYNC = 0x0040  # <linux/timex.h>: the kernel's "clock not synchronised" status bit
TIME_ERROR = 5  # adjtimex() return value while unsynchronised


class _Timex(ctypes.Structure):
    # The leading fields of struct timex (<sys/timex.h>); `long` follows the platform, so this is
    # right on 32-bit ARM and aarch64 alike. The tail is padding the kernel may write into.
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("_rest", ctypes.c_byte * 256)]


_libc = None


def _adjtimex_synced() -> bool | None:
    """True/False from the kernel's NTP state, None when adjtimex is not available."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()  # modes = 0: read only
        state = _libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError) as e:
        log.debug("adjtimex unavailable: %s", e)
        return None
    if state < 0:
        return None
    return state != TIME_ERROR and not (tx.status & STA_UNSYNC)


def clock_synced() -> bool:
    """True once NTP (timesyncd, chrony, ntpd) has disciplined the clock."""
    if os.path.exists(TIMESYNC_FLAG):
        return True
    return bool(_adjtimex_synced())


class SyncState:
    """clock_synced() cached for a few seconds: the outbox stamps tens of thousands of events a
    second and the answer changes once per boot."""

    def __init__(self, ttl_s: float = 5.0, probe=clock_synced):
        self._ttl = ttl_s
        self._probe = probe
        self._value = False
        self._checked = float("-inf")

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self._checked >= self._ttl:
            self._value = bool(self._probe())
            self._checked = now
        return self._value


def boot_id() -> str:
    """The kernel's random id of this boot (a UUID); "unknown" when /proc is not there."""
    try:
        with open(BOOT_ID_PATH) as f:
            return f.read().strip() or "unknown"
    except OSError:
        return "unknown"
