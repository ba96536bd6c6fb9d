"""Sirens and strobes on relay contacts: which alarm sounds which output, in which pattern.

An output sounds the highest level among the active, non-silenced alarms whose rule names
it in `sound`; the output's `pattern` table says how (steady, pulse); a level missing from
the table leaves it off. Patterns advance on `update(..., now)`, called every few tens of
milliseconds by the safety loop, so on/off timing needs no thread of its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.config.model import Output, Pattern
from gateway.decide.transition import level_at, rank
from gateway.errors import OutputError
from gateway.act.drill import ANNOUNCEMENT as DRILL_ANNOUNCEMENT
from gateway.act.voice import message_text


@dataclass(frozen=True, slots=True)
class RelayChange:
    """A relay switched (logical state; the backend applied active_low)."""
    output: str
    pin: int
    on: bool
    level: str | None
    pattern: str | None
    reason: str  # alarm (the demand changed) | pulse | silenced | test | no pattern | shutdown
    mono: float

    def describe(self) -> str:
        why = f" ({self.level} {self.pattern})" if self.on and self.level and self.reason != "test" else ""
        return f"relay {self.output} GPIO{self.pin} {'ON' if self.on else 'off'}{why} [{self.reason}]"


@dataclass
class SirenReport:
    changes: list[RelayChange] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)  # alarm ids to silence: an output hit max_on_s
    problems: list[str] = field(default_factory=list)


def _phase_on(pattern: Pattern, elapsed: float) -> bool:
    if pattern.on_s <= 0 or pattern.off_s <= 0:
        return True  # steady
    return elapsed % (pattern.on_s + pattern.off_s) < pattern.on_s


class Siren:
    """One sounder (or strobe) on a relay. It starts OFF: the backend sets the OFF level
    before the pin becomes an output."""

    def __init__(self, output: Output, gpio, adopt: "Siren | None" = None):
        self.output = output
        self._gpio = gpio
        self.on = False
        self.level: str | None = None
        self.pattern: Pattern | None = None
        self.phase_start = 0.0
        self.sounding_since: float | None = None  # for max_on_s
        self.test_until: float | None = None
        if adopt is not None and (adopt.output.pin, adopt.output.active_low) == (output.pin, output.active_low):
            # A reload: the relay is already an output and may be ON. Setting it up again would
            # switch it OFF for a moment (a siren blip); take over its state instead. The same
            # output keeps its pattern phase and max_on_s count as well.
            self.on = adopt.on
            if adopt.name == output.name:
                self.level, self.pattern = adopt.level, adopt.pattern
                self.phase_start, self.sounding_since = adopt.phase_start, adopt.sounding_since
                self.test_until = adopt.test_until
        else:
            gpio.setup_output(output.pin, output.active_low)

    @property
    def name(self) -> str:
        return self.output.name

    def drive(self, level: str | None, now: float, silenced: bool = False, quiet: bool = False,
              burst_start: float | None = None) -> RelayChange | None:
        """Sound `level` (None: nothing asks for this output; `silenced`: because the alarms
        that would are silenced). `quiet`: the area's voice slot (gateway/act/cadence.py), off
        while the alarm keeps counting; `burst_start`: a siren burst began then, and its pattern
        with it. Raises OutputError if the relay
        cannot be switched; `on` then keeps the old state, so the next call retries."""
        if self.test_until is not None and now >= self.test_until:
            self.test_until = None
        pattern = self.output.pattern.get(level) if level else None
        if pattern is None:
            self.sounding_since = None
        elif self.pattern is None or rank(level) > rank(self.level):
            # Starting, or a worse level: the pattern starts with ON now and max_on_s starts over.
            self.sounding_since = now
            self.phase_start = now
        elif pattern != self.pattern:
            self.phase_start = now  # a milder pattern; the on-time keeps counting
        if pattern is not None and burst_start is not None and burst_start > self.phase_start:
            self.phase_start = burst_start
        self.level, self.pattern = level, pattern
        if self.test_until is not None:
            want, reason = True, "test"
        elif pattern is None:
            want, reason = False, "silenced" if silenced else "alarm" if level is None else "no pattern"
        else:
            want = _phase_on(pattern, now - self.phase_start)
            reason = "pulse" if now > self.phase_start else "alarm"
            if quiet:
                want, reason = False, "cadence"
        return self._switch(want, reason, now)

    def _switch(self, want: bool, reason: str, now: float) -> RelayChange | None:
        if want == self.on:
            return None
        self._gpio.set_output(self.output.pin, want)
        self.on = want
        return RelayChange(self.name, self.output.pin, want, self.level,
                           self.pattern.name if self.pattern else None, reason, now)

    def expired(self, now: float) -> bool:
        return (self.test_until is None and self.sounding_since is not None and self.output.max_on_s > 0
                and now - self.sounding_since >= self.output.max_on_s)

    def off(self, reason: str, now: float) -> RelayChange | None:
        self.test_until = None
        self.level = self.pattern = self.sounding_since = None
        return self._switch(False, reason, now)

    def status(self) -> dict:
        return {"pin": self.output.pin, "on": self.on, "level": self.level,
                "pattern": self.pattern.name if self.pattern else None, "testing": self.test_until is not None,
                # monotonic times, for status to say how long is left (max_on_s, the test)
                "sounding_since_mono": self.sounding_since, "test_until_mono": self.test_until,
                "max_on_s": self.output.max_on_s}


class Sirens:
    """Every configured output, driven from the active alarms."""

    def __init__(self, outputs, gpio, outlets=None, areas=None, adopt: "Sirens | None" = None):
        """`outlets`: output name -> the worker of a voice or Modbus output (gateway/act/outlets.py).
        `adopt`: on a reload, the Sirens of the config before, whose relays are taken over."""
        from gateway.act.cadence import Cadence
        from gateway.act.outlets import make_output

        outputs = list(outputs.values()) if isinstance(outputs, dict) else list(outputs)
        self._gpio = gpio
        relays = [o for o in outputs if o.kind == "relay"]
        old = {} if adopt is None else {s.output.pin: s for s in adopt._sirens.values()
                                        if isinstance(s, Siren) and s.output.kind == "relay"}
        self._sirens = {o.name: make_output(o, gpio, outlets or {}, old.get(o.pin) if o.kind == "relay" else None)
                        for o in outputs}
        # The old relays this set does not drive any more: the caller switches them off once the
        # new ones are driven (make before break: a pin that moved is ON at its new place first).
        used = {o.pin for o in relays}
        # (A pin whose active_low changed was set up again by its new Siren: that one break
        # cannot be avoided, the same level now means the opposite.)
        self.left_over = [s for pin, s in old.items() if pin not in used]
        self._demand: dict[str, tuple[str | None, list[str]]] = {}
        self._muted: set[str] = set()
        self._top: dict = {}  # output -> the alarm its level comes from (whose message a voice says)
        self._cadence = Cadence(outputs, areas)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._sirens)

    def __getitem__(self, name: str) -> Siren:
        return self._sirens[name]

    def update(self, alarms, now: float, drill=None) -> SirenReport:
        """Drive every output from `alarms` (gateway.decide.Alarm); a running `drill`
        (gateway/act/drill.py) sounds the outputs no real alarm is using."""
        demand: dict[str, tuple[int, list[str]]] = {}
        muted: set[str] = set()
        self._top = {}
        for a in alarms:
            if a.silenced:
                muted.update(a.rule.sound)
                continue
            r = rank(a.level)
            for name in a.rule.sound:
                best, ids = demand.setdefault(name, (0, []))
                ids.append(a.id)
                if r > best:
                    demand[name] = (r, ids)
                    self._top[name] = a
        if drill is not None:
            for name in drill.rule.sound:
                if name not in demand and name not in muted:
                    demand[name] = (rank(drill.level), [drill.id])
                    self._top[name] = drill
        self._demand = {n: (level_at(r), ids) for n, (r, ids) in demand.items()}
        self._muted = muted
        return self._drive(now)

    def _drive(self, now: float) -> SirenReport:
        rep = SirenReport()
        levels = {name: self._demand.get(name, (None, []))[0] for name in self._sirens}
        voiced = set()
        for name, siren in self._sirens.items():
            if hasattr(siren, "message"):  # a voice output: has it something to say?
                siren.alarm = self._top.get(name)
                siren.prefix = DRILL_ANNOUNCEMENT if getattr(siren.alarm, "drill", False) else None
                if siren.message(levels[name], siren.alarm):
                    voiced.add(name)
        plans = self._cadence.plan(levels, voiced, now)
        for name, siren in self._sirens.items():
            level, ids = self._demand.get(name, (None, []))
            try:
                change = siren.drive(level, now, silenced=name in self._muted, **plans.get(name, {}))
            except OutputError as e:
                rep.problems.append(f"output {name}: {e}")
                continue
            if change:
                rep.changes.append(change)
            if siren.expired(now):
                rep.expired += [i for i in ids if i not in rep.expired and not i.startswith("drill#")]
        return rep

    def announce_clear(self, rule, now: float, value=None, unit: str = "") -> SirenReport:
        """A rule's alarm cleared: its voice outputs say its `say_clear` once, if it has one."""
        rep = SirenReport()
        if rule is None or not rule.say_clear:
            return rep
        for name in rule.sound:
            out = self._sirens.get(name)
            if hasattr(out, "announce"):
                change = out.announce(message_text(rule.say_clear, "", value, unit), now)
                if change:
                    rep.changes.append(change)
        return rep

    def check_test(self, name: str, seconds: float) -> Siren:
        siren = self._sirens.get(name)
        if siren is None:
            raise OutputError(f"no output {name!r}; outputs: {', '.join(self._sirens) or 'none configured'}")
        limit = siren.output.max_on_s
        if not 0 < seconds <= limit:
            raise OutputError(f"siren test {name}: seconds must be > 0 and at most max_on_s = {limit:g}")
        return siren

    def self_test(self, name: str, seconds: float, now: float) -> SirenReport:
        """Sound `name` steadily for `seconds` whatever the alarms say, then go back to them."""
        self.check_test(name, seconds).test_until = now + seconds
        return self._drive(now)

    def off(self, now: float, reason: str = "shutdown") -> SirenReport:
        """Every output off (shutdown). Keeps going past a relay that fails."""
        self._demand = {}
        return _all_off(self._sirens.values(), now, reason)

    def release_left_over(self, now: float) -> SirenReport:
        """Switch off the relays a reload took away (after the new set was driven)."""
        rep = _all_off(self.left_over, now, "handed over")
        self.left_over = []
        return rep

    def status(self) -> dict[str, dict]:
        """Each output, with the alarms that ask for it and whether a silence is keeping it off."""
        return {name: dict(s.status(), alarms=list(self._demand.get(name, (None, []))[1]),
                           silenced=name in self._muted and name not in self._demand)
                for name, s in self._sirens.items()}


def _all_off(sirens, now: float, reason: str) -> SirenReport:
    rep = SirenReport()
    for siren in sirens:
        try:
            change = siren.off(reason, now)
        except OutputError as e:
            rep.problems.append(f"output {siren.name}: {e}")
            continue
        if change:
            rep.changes.append(change)
    return rep
