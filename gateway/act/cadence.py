"""GB 50116-2013 §4.8 on the safety loop: the outputs of an area start and stop together, and where
the area has voice, each siren burst (8-20 s) alternates with one or two spoken messages (10-30 s
each), over and over while the alarm sounds.

Pure timing, like the pulse patterns: `Cadence.plan(...)` is told the level each output is asked
to sound and `now`, and says, per output, whether a siren is quiet for a voice slot and which voice
slot is due. The clock of an area starts when its first output is asked to sound and starts over
when the area's level rises (a worse warning starts with a siren burst at once)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.model import Area
from gateway.decide.transition import rank


@dataclass
class _AreaClock:
    area: Area
    started: float | None = None
    rank: int = 0


class Cadence:
    """Per-area clocks for a set of outputs (gateway.config.model.Output)."""

    def __init__(self, outputs, areas: dict[str, Area] | None = None):
        areas = areas or {}
        self._kind = {o.name: o.kind for o in outputs}
        self._area_of = {o.name: o.area for o in outputs}
        self._pattern_of = {o.name: o.pattern for o in outputs}
        self._clocks: dict[str, _AreaClock] = {}
        for o in outputs:
            key = o.area or f"\0{o.name}"  # an output of no area is an area of its own
            if key not in self._clocks:
                self._clocks[key] = _AreaClock(areas.get(o.area) or Area(name=o.area or o.name))
        self._key = {o.name: o.area or f"\0{o.name}" for o in outputs}

    def plan(self, levels: dict[str, str | None], voiced: set[str], now: float) -> dict[str, dict]:
        """`levels`: output -> the level it is asked to sound (None: nothing); `voiced`: the voice
        outputs that have a message for it. Returns output -> keyword arguments for its drive()."""
        members: dict[str, list[str]] = {}
        for name, key in self._key.items():
            members.setdefault(key, []).append(name)
        plans: dict[str, dict] = {}
        for key, names in members.items():
            clock = self._clocks[key]
            sounding = [n for n in names if levels.get(n) and levels[n] in self._pattern_of[n]]
            if not sounding:
                clock.started, clock.rank = None, 0
                continue
            top = max(rank(levels[n]) for n in sounding)
            if clock.started is None or top > clock.rank:
                clock.started = now  # start together; a worse level starts over with a burst
            clock.rank = top
            speakers = [n for n in sounding if n in voiced]
            sirens = [n for n in sounding if self._kind[n] != "voice"]
            once = bool(speakers) and all(self._pattern_of[n][levels[n]].name == "once" for n in speakers)
            burst_start, slot = self._phase(clock, bool(speakers), bool(sirens), once, now)
            for n in names:
                if self._kind[n] == "voice":
                    plans[n] = {"slot": slot if n in speakers else None}
                else:
                    plans[n] = {"quiet": slot is not None, "burst_start": burst_start}
        return plans

    @staticmethod
    def _phase(clock: _AreaClock, voice: bool, sirens: bool, once: bool, now: float):
        """(start of the current siren burst, the voice slot due or None)."""
        a, t0 = clock.area, clock.started
        if not voice:
            return t0, None
        burst = a.burst_s if sirens else 0.0  # voice alone: no silent "burst" before the first message
        cycle = burst + a.messages * a.message_s
        n, into = divmod(now - t0, cycle)
        if once and n >= 1:
            return t0 + cycle, None  # the one message was said: the sirens carry on alone
        if into < burst:
            return t0 + n * cycle, None
        k = int((into - burst) // a.message_s)
        return t0 + n * cycle, (t0, int(n), min(k, a.messages - 1))
