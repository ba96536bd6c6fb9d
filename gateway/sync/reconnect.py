"""When a link that failed tries again: the one rule for the MQTT uplink and the centre uplinks
(GB/T 26875.3, SL 651).

Two kinds of failure, two answers:
- *No answer* (connection refused, timed out, closed before the protocol's first answer): the other
  end is not there. The link probes it with a plain TCP connect (no TLS, no MQTT: a SYN and, when it
  is back, a handshake closed at once) every `probe_s`, scaled by a random factor in [1 - jitter, 1]
  — a fixed interval that does not grow through the outage, so the link is back within one interval
  of the other end's return. Only when a probe connects is the full session tried. After
  `slow_after_s` of one outage the interval becomes `slow_probe_s` (a metered 4G SIM pays for every
  probe: ~100 bytes each against a host that refuses, see docs/fleet.md).
- *Something answers TCP and closes before the protocol's first answer* (a balancer or TLS terminator
  before a broker that is down, a broker at max_connections): once a probe connected and the session
  after it still got no answer, the link treats it as below until a session goes online.
- *The other end answered no* (refused credentials, a TLS failure, MQTT 5 "server busy", "quota
  exceeded", "connection rate exceeded", an unexpected error): retrying at once cannot help and a
  fleet doing it would storm a broker that is shedding load. Exponential backoff with jitter (the
  `Backoff` of pacing.py, `backoff_initial_s` to `backoff_max_s`), reset when a session goes online.

The random phase of each link's probes is what spreads a fleet: gateways that lost the broker
together probe at independent instants, so their reconnects land spread over one interval after the
broker's return instead of in the same 100 ms.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time

from gateway.sync.pacing import Backoff

log = logging.getLogger(__name__)

# failure kinds after which the other end is known to be there and to have said no
ANSWERED = frozenset({"refused", "tls_error", "busy", "error"})


class Redial:
    """The reconnect schedule of one link. `wait(kind, stop, tick)` blocks the link's own thread until
    the next full session is due; `next_retry` (monotonic) and `probes` are for its status."""

    def __init__(self, host: str, port: int, *, probe_s: float = 1.0, jitter: float = 0.5,
                 slow_after_s: float = 600.0, slow_probe_s: float = 5.0, probe_timeout_s: float = 2.0,
                 backoff_initial_s: float = 1.0, backoff_max_s: float = 60.0, rng=random.random,
                 clock=time.monotonic, probe=True):
        if not 0 < probe_s <= slow_probe_s:
            raise ValueError("need 0 < probe_s <= slow_probe_s")
        self.host, self.port = host, port
        self.probe_s, self.slow_probe_s, self.slow_after_s = probe_s, slow_probe_s, slow_after_s
        self.jitter = jitter
        self.probe_timeout_s = probe_timeout_s
        self.backoff = Backoff(backoff_initial_s, backoff_max_s, jitter=jitter, rng=rng)
        self._rng = rng
        self._clock = clock
        # True: a TCP connect; a callable: that; False: the session's own connect is the probe (a
        # centre link's session is a plain TCP connect: probing first would only double it)
        self._probe = self._tcp_probe if probe is True else probe or None
        self.down_since: float | None = None  # monotonic start of this outage
        # the last probe connected and the session after it still got no answer: something accepts TCP
        # there and closes (a balancer or TLS terminator before a broker that is down, a broker at
        # max_connections): that is an answer too, and gets the backoff, not a session a second
        self._probed = False
        self._closing = False
        self.next_retry: float | None = None
        self.probes = 0

    # -- the schedule (pure: `now` passed in) ---------------------------------------------------
    def online(self) -> None:
        """A session went online: the next outage starts from scratch."""
        self.backoff.reset()
        self.down_since = None
        self._probed = self._closing = False

    def delay(self, kind: str, now: float) -> float:
        """Seconds to wait after a failure of `kind` before the next probe or session."""
        if self.down_since is None:
            self.down_since = now
        if kind in ANSWERED:
            return self.backoff.next()
        return self.probe_delay(now)

    def probe_delay(self, now: float) -> float:
        slow = self.down_since is not None and now - self.down_since >= self.slow_after_s
        base = self.slow_probe_s if slow else self.probe_s
        return base * (1.0 - self.jitter * self._rng())

    # -- on the link's thread -------------------------------------------------------------------
    def wait(self, kind: str, stop: threading.Event, tick=None) -> None:
        """Block until the next full session is due (or `stop`): after an answered failure the
        backoff; after no answer, TCP probes at the fixed interval until one connects. `tick()` is
        called at least every 0.25 s (the link's heartbeat and status snapshot)."""
        if self._probed and kind not in ANSWERED:
            self._closing = True  # the probe got through and the session did not
        self._probed = False
        if self._closing and kind not in ANSWERED:
            kind = "error"  # until a session goes online: back off, as for any answer
        self._sleep(self.delay(kind, self._clock()), stop, tick)
        if kind in ANSWERED or self._probe is None:
            return
        while not stop.is_set():
            self.probes += 1
            if self._probe():
                self._probed = True
                return
            self._sleep(self.probe_delay(self._clock()), stop, tick)

    def _sleep(self, seconds: float, stop: threading.Event, tick) -> None:
        self.next_retry = self._clock() + seconds
        while not stop.is_set():
            left = self.next_retry - self._clock()
            if tick is not None:
                tick()
            if left <= 0:
                break
            stop.wait(min(0.25, left))
        self.next_retry = None

    def _tcp_probe(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=self.probe_timeout_s):
                return True
        except OSError as e:
            log.debug("probe of %s:%s: %s", self.host, self.port, e)
            return False
