"""What one rule sees on its point: the level the latest good value asks for (thresholds
with hysteresis, state codes, rate of rise/drop) and whether that has lasted `debounce_s`.

Time is the readings' own monotonic clock (Reading.mono), never the wall clock: a Pi
without an RTC can jump years when NTP syncs."""

from __future__ import annotations

from collections import deque

from gateway.config.model import RateSpec, Rule
from gateway.decide.transition import rank


class RateWindow:
    """Rise (or drop) of the value within the last `within_s` seconds, over good readings.
    A monotonic deque keeps the window's minimum (maximum for a drop) in O(1) per sample."""

    def __init__(self, spec: RateSpec, rising: bool):
        self.spec = spec
        self.rank = rank(spec.level)
        self.rising = rising
        self._extremes: deque[tuple[float, float]] = deque()  # (mono, value)
        self.change = 0.0  # rise (or drop) over the window at the last sample: the alarm's cause

    def add(self, mono: float, value: float) -> bool:
        """Add a sample; True if the rate condition holds now."""
        q = self._extremes
        if self.rising:
            while q and q[-1][1] >= value:
                q.pop()
        else:
            while q and q[-1][1] <= value:
                q.pop()
        q.append((mono, value))
        horizon = mono - self.spec.within_s
        while q[0][0] < horizon:
            q.popleft()
        change = self.change = value - q[0][1] if self.rising else q[0][1] - value
        # A small epsilon: 0.15 - 0.10 is 0.04999999999999999 in floating point.
        return change >= self.spec.amount - 1e-9


class PointCondition:
    """The rule's view of its point. `observe` a good value, then ask `settled` which level
    the alarm should be at: debounce means a level is taken only after the condition has
    held it for `debounce_s` (going up) or stayed below it for `debounce_s` (going down)."""

    def __init__(self, rule: Rule):
        self.rule = rule
        self._above = sorted((rank(lv), th) for lv, th in rule.above.items())
        self._below = sorted((rank(lv), th) for lv, th in rule.below.items())
        self._equals = sorted((rank(lv), frozenset(codes)) for lv, codes in rule.equals.items())
        self._rates = [RateWindow(rule.rise, True)] if rule.rise else []
        if rule.drop:
            self._rates.append(RateWindow(rule.drop, False))
        # (mono, condition rank) over the debounce window, plus the one sample before it
        # (the condition it held at the window's start).
        self._seen: deque[tuple[float, int]] = deque()
        # rank -> what asked for it the last time something did: ("above", level, threshold, value),
        # ("equals", level, code), ("rise"/"drop", level, change, spec). Names an alarm's cause.
        self._causes: dict[int, tuple] = {}
        # The highest rank each side's thresholds reached during the alarm now held: a side's
        # hysteresis holds only what that side raised (low pressure must not be held by the band
        # under an over-pressure threshold the value never came near). None: not known yet.
        self._reached: dict[str, int] | None = None

    def _want(self, value: float, mono: float, held: int) -> int:
        """The rank the value asks for (and feeds the rate windows). `held` (the alarm's rank) brings in hysteresis: a
        level already held stays until the value is back past threshold -/+ hysteresis, on the side that raised it."""
        hyst = self.rule.hysteresis
        if held == 0 or self._reached is None:
            # No alarm: nothing reached. An alarm this condition never saw (restored after a restart):
            # either side may have raised it, as before the split.
            self._reached = {"above": held, "below": held}
        reached = self._reached
        raw_above = max((r for r, th in self._above if value >= th), default=0)
        raw_below = max((r for r, th in self._below if value <= th), default=0)
        reached["above"] = max(reached["above"], raw_above)
        reached["below"] = max(reached["below"], raw_below)
        hold_above, hold_below = min(held, reached["above"]), min(held, reached["below"])
        want = 0
        causes = {}
        for r, th in self._above:
            if value >= th or (r <= hold_above and value > th - hyst):
                want = max(want, r)
                causes.setdefault(r, ("above", r, th, value))
        for r, th in self._below:
            if value <= th or (r <= hold_below and value < th + hyst):
                want = max(want, r)
                causes.setdefault(r, ("below", r, th, value))
        for r, codes in self._equals:
            if value in codes:
                want = max(want, r)
                causes.setdefault(r, ("equals", r, value))
        for w in self._rates:
            if w.add(mono, value):
                want = max(want, w.rank)
                causes.setdefault(w.rank, ("rise" if w.rising else "drop", w.rank, w.change, w.spec))
        self._causes.update(causes)
        return want

    def cause(self, r: int) -> tuple | None:
        """What last asked for rank `r` (see _causes), None if nothing ever did."""
        return self._causes.get(r)

    def observe(self, value: float, mono: float, held: int) -> int:
        want = self._want(value, mono, held)
        seen = self._seen
        if seen and mono < seen[-1][0]:
            seen.clear()  # a clock that goes back (another boot's restore): start over
        seen.append((mono, want))
        self._prune(mono)
        return want

    def _prune(self, now: float) -> None:
        start = now - self.rule.debounce_s
        seen = self._seen
        while len(seen) > 1 and seen[1][0] <= start:
            seen.popleft()

    def settled(self, now: float, held: int) -> int:
        """The rank the alarm should move to now (`held` if it should not move)."""
        seen = self._seen
        if not seen:
            return held
        if self.rule.debounce_s <= 0:
            return seen[-1][1]
        self._prune(now)
        if seen[0][0] > now - self.rule.debounce_s:
            return held  # not watched for a whole debounce period yet
        ranks = [r for _, r in seen]
        low, high = min(ranks), max(ranks)
        if low > held:
            return low  # every sample in the window asks for at least this much
        if high < held:
            return high  # nothing in the window still asks for the held level
        return held

    def current(self) -> int | None:
        """What the latest sample asked for, None before the first."""
        return self._seen[-1][1] if self._seen else None

    def forget(self) -> None:
        """The point went blind (fault/stale): a debounce restarts from the next good value,
        it never bridges the gap. Rate windows are kept: a rise across a gap is still a rise."""
        self._seen.clear()
