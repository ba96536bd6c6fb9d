"""Talking to systemd: readiness, status, and a watchdog that is fed only while the gateway's loops
are really making progress.

A thread that merely exists proves nothing: a bus loop stuck in a serial read, or a decision loop
blocked on a lock, would keep a naive "send WATCHDOG=1 every N seconds" timer going while no siren
can sound. So every loop that matters registers a `Heart` and beats it once per iteration; the
feed goes out only while every heart is fresh, and systemd restarts the daemon when it stops.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("gateway.service.notify")


def sd_notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one sd_notify datagram ("READY=1", "WATCHDOG=1", "STATUS=..."). Returns False, doing
    nothing, when not started by systemd (no $NOTIFY_SOCKET) or when the send fails: a notify
    problem must never stop the gateway itself."""
    address = (os.environ if env is None else env).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace (systemd uses it in containers and tests)
    elif not address.startswith("/"):
        log.warning("NOTIFY_SOCKET=%s is not a UNIX socket address this gateway can use", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
        return True
    except OSError as exc:
        log.warning("sd_notify %r failed: %s", message.split("=", 1)[0], exc)
        return False


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Half of systemd's WatchdogSec= (as $WATCHDOG_USEC), or None when the watchdog is off or meant
    for another process ($WATCHDOG_PID)."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not a number", usec)
        return None
    return value / 2e6 if value > 0 else None


class Heart:
    """The pulse of one loop (a bus poll loop, the decision loop). Call `beat()` once per iteration."""

    def __init__(self, name: str, period_s: float, allowed_s: float, clock: Callable[[], float]):
        self.name = name
        self.period_s = period_s
        self.allowed_s = allowed_s  # how stale the last beat may be before the feed stops
        self._clock = clock
        self.last = clock()  # registering counts as a beat: the loop is just starting
        self.retired = False

    def beat(self) -> None:
        self.last = self._clock()  # a float store: atomic under the GIL, no lock on the hot path

    def retire(self) -> None:
        """The loop ended on purpose (bus removed by a reload): stop counting it."""
        self.retired = True

    def age(self) -> float:
        return self._clock() - self.last


class Watchdog:
    """The daemon's link to systemd. `register()` a heart per loop, `start()`, `ready()` once the
    buses are up, `stopping()` at shutdown. Without $WATCHDOG_USEC (and no `interval_s`) nothing is
    fed, but hearts still work, so `stale()` can feed `gateway status`."""

    def __init__(self, notify: Callable[[str], bool] = sd_notify, interval_s: float | None = None,
                 min_allowed_s: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self.notify = notify
        self.interval_s = watchdog_interval() if interval_s is None else interval_s
        self.min_allowed_s = min_allowed_s
        self.clock = clock
        self._hearts: list[Heart] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._withholding = False
        self.feeds = 0  # WATCHDOG=1 sent so far (for status and tests)

    @property
    def enabled(self) -> bool:
        return self.interval_s is not None

    def register(self, name: str, period_s: float = 1.0, allowed_s: float | None = None) -> Heart:
        """A heart for a loop that beats every `period_s`. It may miss a couple of beats (a slow
        Modbus retry) before it counts as hung: max(3 x period, min_allowed_s) unless `allowed_s`."""
        allowed = allowed_s if allowed_s is not None else max(3 * period_s, self.min_allowed_s)
        heart = Heart(name, period_s, allowed, self.clock)
        with self._lock:
            self._hearts.append(heart)
        return heart

    def stale(self) -> list[tuple[str, float]]:
        """(name, seconds since last beat) of every loop past its allowance."""
        with self._lock:
            hearts = [h for h in self._hearts if not h.retired]
        return [(h.name, age) for h in hearts if (age := h.age()) > h.allowed_s]

    def start(self) -> "Watchdog":
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="systemd-watchdog", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        self.stop()
        return self.notify("STOPPING=1")

    def feed_once(self) -> bool:
        """One watchdog decision: feed if every loop is alive, else withhold (logged once per outage)."""
        stale = self.stale()
        if stale:
            if not self._withholding:
                self._withholding = True
                names = ", ".join(f"'{name}' silent for {age:.1f} s" for name, age in stale)
                log.error("withholding the systemd watchdog: loop %s; systemd will restart the gateway "
                          "if it does not recover", names)
            return False
        if self._withholding:
            self._withholding = False
            log.warning("all loops are beating again; feeding the systemd watchdog")
        self.notify("WATCHDOG=1")
        self.feeds += 1
        return True

    def _run(self) -> None:
        while True:
            self.feed_once()
            if self._stop.wait(self.interval_s):
                return
