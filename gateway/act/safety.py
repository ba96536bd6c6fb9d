"""The safety path as plain calls: reading -> rule -> relay, silence, acknowledge, self-test.

SafetyCore owns the AlarmBook, the Sirens and the buttons and is driven by exactly one
thread (SafetyLoop); tests drive it directly with explicit monotonic times. Every call
returns a Step: what changed, to be logged and recorded by somebody else, later."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from gateway.act.buttons import SilenceButton
from gateway.act.sirens import RelayChange, SirenReport, Sirens
from gateway.decide.alarm_book import AlarmBook
from gateway.decide.transition import FAULT, RECOVERED, Transition
from gateway.errors import ConfigError, OutputError


@dataclass
class Step:
    transitions: list[Transition] = field(default_factory=list)
    relays: list[RelayChange] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # for the log: a relay that failed, a skipped restore

    def add(self, rep: SirenReport) -> None:
        self.relays += rep.changes
        self.problems += rep.problems

    @property
    def alarms_changed(self) -> bool:
        return any(t.kind not in (FAULT, RECOVERED) for t in self.transitions)


class SafetyCore:
    """Decide and act, synchronously. Not thread-safe on purpose: one owner thread."""

    def __init__(self, book: AlarmBook, sirens: Sirens, buttons=()):
        self.check(book, sirens.names)
        self.book = book
        self.sirens = sirens
        self.drill = None  # a running drill's alarm (gateway/act/drill.py)
        self._drills = 0
        self.buttons: list[SilenceButton] = list(buttons)

    @staticmethod
    def check(book: AlarmBook, output_names) -> None:
        unknown = [f"[[rules]] {r.name}: sound names unknown output {n!r}" for r in book.rules
                   for n in r.sound if n not in output_names]
        if unknown:
            raise ConfigError(unknown)

    @classmethod
    def from_config(cls, cfg, gpio, outlets=None) -> "SafetyCore":
        """From a validated gateway.config.model.Config and an open GpioBackend; `outlets`: the
        started workers of the voice and Modbus outputs, by output name."""
        sirens = Sirens(cfg.outputs, gpio, outlets, cfg.areas)
        buttons = [SilenceButton(i, gpio) for i in cfg.inputs.values()]
        return cls(alarm_book_of(cfg), sirens, buttons)

    def reconfigure(self, book: AlarmBook, outputs: dict, inputs: dict, now: float | None = None, *,
                    outlets: dict | None = None, areas: dict | None = None) -> Step:
        """A reload, in place: `book` (new, built and checked by the caller) takes over the
        active alarms, the outputs and buttons are handed over pin by pin, and every relay is
        driven from the new rules before the ones that went away are switched off. A relay that
        stays where it was is never touched: make before break. `outlets`: the workers of the new
        config's voice and Modbus outputs (adopted or new: gateway/act/outlets.py), `areas` its
        cadence areas."""
        now = time.monotonic() if now is None else now
        self.check(book, [o.name for o in outputs.values()])
        gpio = self.sirens._gpio
        sirens = Sirens(outputs, gpio, outlets, areas, adopt=self.sirens)  # sets up only pins that are new
        kept = {b.input: b for b in self.buttons}
        buttons = [kept.get(i) or SilenceButton(i, gpio) for i in inputs.values()]
        step = Step(problems=[f"reload: {m}" for m in book.adopt(self.book)])
        self.book, self.sirens, self.buttons = book, sirens, buttons
        self._sound(step, now)
        step.add(sirens.release_left_over(now))
        return step

    def feed(self, reading) -> Step:
        step = Step(self.book.feed(reading))
        if step.alarms_changed:
            self._sound(step, reading.mono)  # the relay switches in this same call
        return step

    def tick(self, now: float, ts: float | None = None) -> Step:
        """Debounce ends, buttons, pulse patterns, max_on_s: call every 20-50 ms."""
        ts = time.time() if ts is None else ts
        step = Step(self.book.tick(now, ts))
        if self.drill is not None and now >= self.drill.until:
            step.transitions.append(self._end_drill("timeout", now))
        for b in self.buttons:
            try:
                action = b.poll(now)
            except OutputError as e:
                step.problems.append(f"input {b.name}: {e}")
                continue
            if action == "silence":
                step.transitions += self.book.silence(None, by=f"button:{b.name}", now_mono=now, now_ts=ts)
            elif action == "ack":
                step.transitions += self.book.acknowledge(None, by=f"button:{b.name}", now_mono=now, now_ts=ts)
        self._sound(step, now)
        return step

    def silence(self, alarm_id: str | None = None, by: str = "remote", now: float | None = None) -> Step:
        now = time.monotonic() if now is None else now
        step = Step(self.book.silence(alarm_id, by=by, now_mono=now))
        if self.drill is not None and alarm_id is None:
            step.transitions.append(self._end_drill(by, now))  # silencing everything ends a drill too
        self._sound(step, now)
        return step

    def acknowledge(self, alarm_id: str | None = None, by: str = "remote", now: float | None = None) -> Step:
        now = time.monotonic() if now is None else now
        step = Step(self.book.acknowledge(alarm_id, by=by, now_mono=now))
        self._sound(step, now)
        return step

    def siren_test(self, name: str, seconds: float, now: float | None = None) -> Step:
        now = time.monotonic() if now is None else now
        step = Step()
        step.add(self.sirens.self_test(name, seconds, now))
        return step

    def drill_start(self, area: str | None, minutes: float, by: str = "remote", now: float | None = None) -> Step:
        """Sound `area` (None: every output) as a drill for `minutes`; a running drill is replaced."""
        from gateway.act.drill import plan_drill, transition

        now = time.monotonic() if now is None else now
        step = Step()
        alarm = plan_drill({n: self.sirens[n].output for n in self.sirens.names}, self.book.rules, area,
                           self._drills + 1, now, minutes)
        if self.drill is not None:
            step.transitions.append(self._end_drill(by, now))
        self._drills += 1
        self.drill = alarm
        step.transitions.append(transition(alarm, "raised", now, by))
        self._sound(step, now)
        return step

    def drill_stop(self, by: str = "remote", now: float | None = None) -> Step:
        now = time.monotonic() if now is None else now
        step = Step()
        if self.drill is not None:
            step.transitions.append(self._end_drill(by, now))
        self._sound(step, now)
        return step

    def _end_drill(self, by: str, now: float):
        from gateway.act.drill import transition

        alarm, self.drill = self.drill, None
        return transition(alarm, "cleared", now, by)

    def restore(self, snapshot: dict, now: float | None = None) -> Step:
        """Bring back the alarms of the last run and sound them at once."""
        now = time.monotonic() if now is None else now
        step = Step(problems=[f"restore: {m}" for m in self.book.restore(snapshot)])
        self._sound(step, now)
        return step

    def shutdown(self, now: float | None = None) -> Step:
        """Every output off. The backend's cleanup is the caller's (it opened it)."""
        step = Step()
        step.add(self.sirens.off(time.monotonic() if now is None else now))
        return step

    def _sound(self, step: Step, now: float) -> None:
        rep = self.sirens.update(self.book.active(), now, drill=self.drill)
        step.add(rep)
        for t in step.transitions:
            if t.kind == "cleared":
                rule = next((r for r in self.book.rules if r.name == t.rule), None)
                step.add(self.sirens.announce_clear(rule, now, t.value, t.unit))
        if rep.expired:
            # max_on_s is a silence by the clock: the alarms stay active and an escalation
            # sounds again, as after a silence by hand.
            for alarm_id in rep.expired:
                step.transitions += self.book.silence(alarm_id, by="max_on_s", now_mono=now)
            step.add(self.sirens.update(self.book.active(), now, drill=self.drill))

    def status(self) -> dict:
        st = {"alarms": [a.as_dict() for a in self.book.active()], "outputs": self.sirens.status(),
              "points": self.book.points()}
        if self.drill is not None:
            st["drill"] = {"id": self.drill.id, "area": self.drill.area, "level": self.drill.level,
                           "ends_ts": round(time.time() + self.drill.until - time.monotonic(), 1)}
        return st


def alarm_book_of(cfg) -> AlarmBook:
    """The alarm book of a validated Config: its rules, the profiles' state names (for causes and
    status) and each point's stale limit."""
    from gateway.acquire.quality import stale_limits

    labels = {(s.name, pt.name): dict(pt.states) for s in cfg.sensors.values()
              for pt in s.profile.points if pt.states}
    return AlarmBook(cfg.rules, labels, stale_limits(cfg))
