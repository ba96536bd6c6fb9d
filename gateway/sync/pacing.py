"""Pacing: a token bucket for backlog replay (a community that was offline for a day must not flood
the city platform the moment it returns) and exponential backoff with jitter for reconnects (a
thousand gateways behind one failed link must not reconnect in lock-step)."""

from __future__ import annotations

import random
import time


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: float | None = None, clock=time.monotonic):
        if rate <= 0:
            raise ValueError("replay rate must be > 0 events/s")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, min(rate, 20.0)))
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self, n: float = 1.0) -> bool:
        self._refill()
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def wait_s(self, n: float = 1.0) -> float:
        """Seconds until `n` tokens are there."""
        self._refill()
        return max(0.0, (n - self._tokens) / self.rate)


class Backoff:
    """Delays of initial, 2x, 4x ... capped at `maximum`, each scaled by a random factor in
    [1 - jitter, 1] so gateways that lost the broker together do not come back together."""

    def __init__(self, initial: float = 1.0, maximum: float = 60.0, factor: float = 2.0,
                 jitter: float = 0.5, rng=random.random):
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._rng = rng
        self.attempt = 0

    def next(self) -> float:
        base = min(self.maximum, self.initial * self.factor ** self.attempt)
        self.attempt += 1
        return base * (1.0 - self.jitter * self._rng())

    def reset(self) -> None:
        self.attempt = 0
