"""Spoken warnings: a voice output on the safety side (`VoiceOutput`, driven like a siren) and
the worker that talks to the backend on a thread of its own (`VoiceWorker`).

The safety loop never calls a voice backend. It decides *what* should be said *when* (the
cadence, gateway/act/cadence.py) and hands a command to the output's worker through a
LatestSink: a put that never blocks, and only the newest command matters (a message that was
superseded before the backend got to it is not worth saying). A hung backend therefore delays
only its own messages."""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

from gateway.act.sinks import LatestSink
from gateway.decide.transition import rank

log = logging.getLogger("gateway.voice")
LEVEL_NAMES = {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"}
TEST_MESSAGE = "语音播报测试。"


def message_text(template: str, level: str, value=None, unit: str = "") -> str:
    """A rule's `say` with its placeholders filled ({place} was filled at load)."""
    if value is None:
        shown = "未知"
    elif isinstance(value, float):
        shown = f"{value:.{0 if value.is_integer() else 1}f}"
    else:
        shown = str(value)
    return template.format(level=LEVEL_NAMES.get(level, level), value=shown, unit=unit, place="")


def fixed_texts(rules, output_name: str, announcement: str | None = None) -> list[str]:
    """Every message `output_name` may say that can be rendered before any value is known."""
    from gateway.act.drill import ANNOUNCEMENT

    out = [announcement or ANNOUNCEMENT]  # a drill may come at any time: rendered with the rest
    for rule in rules:
        if output_name not in rule.sound:
            continue
        for level, template in rule.say.items():
            if "{value}" not in template and "{unit}" not in template:
                out.append(message_text(template, level))
        if rule.say_clear and "{value}" not in rule.say_clear:
            out.append(message_text(rule.say_clear, ""))
    return out


# -- the worker thread -------------------------------------------------------------------------
@dataclass(frozen=True)
class Speak:
    text: str
    prefix: str | None
    mono: float  # when the safety loop asked


@dataclass(frozen=True)
class Hush:
    reason: str
    mono: float


class _Prepare:
    pass


class VoiceWorker:
    """One voice output's backend, on its own thread. `on_problem(output, text | None)` is told of
    a failure (a fault event) and, with None, of the first success after one (recovered)."""

    def __init__(self, name: str, backend, texts=(), on_problem=None):
        self.name = name
        self.backend = backend
        self._texts = list(texts)
        self._on_problem = on_problem
        self._sink = LatestSink(f"voice-{name}", self._handle)
        self._prepared = False
        self.problem: str | None = None
        self._played_wrong = False  # the last message the backend reported on did not play
        self.prepare_problems: list[str] = []
        self.started: deque[tuple[float, float, str]] = deque(maxlen=100)  # (asked mono, started mono, text)
        self.speaking: str | None = None
        self.spoken = 0  # messages started, ever (started is bounded)

    def start(self) -> "VoiceWorker":
        self._sink.start()
        self._sink.put(_Prepare())  # the first job: render the clips (a Speak that comes first does it too)
        return self

    def put(self, command) -> None:
        """Never blocks (any thread, the safety loop included)."""
        self._sink.put(command)

    def stop(self, timeout: float = 2.0) -> bool:
        self._sink.put(Hush("shutdown", time.monotonic()))
        ok = self._sink.stop(timeout)
        if ok:
            try:
                self.backend.close()
            except Exception as e:  # noqa: BLE001 - a backend failing at close must not stop the others
                log.warning("voice %s: closing: %s", self.name, e)
        return ok

    def backend_problem(self, text: str | None) -> None:
        """The backend's asynchronous verdict on a message (aplay exited with an error: text; played to
        the end: None): any thread. Such a failure is cleared only by a message that really played,
        not by the next one merely starting (that flapped fault/recovered at every message)."""
        self._played_wrong = text is not None
        self._set_problem(text)

    def _handle(self, item) -> None:
        from drivers.voice import VoiceError

        if not self._prepared:
            self._prepared = True
            self.prepare_problems = self.backend.prepare(self._texts)
            for p in self.prepare_problems:
                self._set_problem(p)
        try:
            if isinstance(item, Speak):
                self.backend.speak(item.text, item.prefix)
                self.started.append((item.mono, time.monotonic(), item.text))
                self.spoken += 1
                self.speaking = item.text
                if not self.prepare_problems and not self._played_wrong:
                    self._set_problem(None)
            elif isinstance(item, Hush):
                self.backend.stop()
                self.speaking = None
        except VoiceError as e:
            self._set_problem(str(e))

    def _set_problem(self, text: str | None) -> None:
        if text == self.problem:
            return
        was, self.problem = self.problem, text
        if text:
            log.warning("voice %s: %s", self.name, text)
        elif was:
            log.warning("voice %s: speaking again", self.name)
        if self._on_problem and (text or was):
            self._on_problem(self.name, text)

    def status(self) -> dict:
        return {"backend": getattr(self.backend, "name", "?"), "speaking": self.speaking,
                "problem": self.problem}


# -- the safety side ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VoiceChange:
    """A voice output started or stopped a message (the safety loop's record of what it asked)."""
    output: str
    on: bool
    level: str | None
    pattern: str | None
    reason: str  # alarm | cadence | silenced | test | clear | shutdown
    mono: float
    text: str | None = None
    pin: None = None

    def describe(self) -> str:
        if self.on:
            return f"voice {self.output} says \"{self.text}\" ({self.level}) [{self.reason}]"
        return f"voice {self.output} stops [{self.reason}]"


class VoiceOutput:
    """A voice output as the safety loop sees it: which message is due, handed to its worker.
    Quacks like a Siren (drive, expired, off, status) so Sirens drives both."""

    def __init__(self, output, worker: VoiceWorker):
        self.output = output
        self.worker = worker
        self.on = False
        self.level: str | None = None
        self.pattern = None
        self.sounding_since: float | None = None
        self.test_until: float | None = None
        self.alarm = None  # the alarm whose message is due (set by Sirens before drive)
        self.prefix: str | None = None  # the drill announcement, while a drill alarm speaks
        self._slot = None  # the voice slot now being spoken, as the cadence names it
        self.text: str | None = None

    @property
    def name(self) -> str:
        return self.output.name

    def message(self, level: str | None, alarm) -> str | None:
        """What this output would say for `alarm` at `level`, or None."""
        if alarm is None or level is None or level not in self.output.pattern:
            return None
        template = alarm.rule.say.get(level)
        return None if template is None else message_text(template, level, alarm.value, alarm.unit)

    def drive(self, level: str | None, now: float, silenced: bool = False, slot=None, **_) -> VoiceChange | None:
        if self.test_until is not None and now >= self.test_until:
            self.test_until = None
        pattern = self.output.pattern.get(level) if level else None
        if pattern is None:
            self.sounding_since = None
        elif self.pattern is None or rank(level) > rank(self.level):
            self.sounding_since = now
        self.level, self.pattern = level, pattern
        if self.test_until is not None:
            return self._say(("test", self.test_until), TEST_MESSAGE, "test", now)
        text = self.message(level, self.alarm) if pattern is not None else None
        if text is None or slot is None:
            reason = "silenced" if silenced else "cadence" if text else "alarm"
            return self._hush(reason, now)
        return self._say(slot, text, "alarm", now)

    def announce(self, text: str, now: float) -> VoiceChange | None:
        """Say `text` once now (an alarm cleared), unless an alarm's message is being spoken."""
        if self._slot is not None or self.pattern is not None:
            return None
        self.worker.put(Speak(text, None, now))
        return VoiceChange(self.name, True, None, None, "clear", now, text)

    def _say(self, slot, text: str, reason: str, now: float) -> VoiceChange | None:
        if slot == self._slot:
            return None
        self._slot, self.on, self.text = slot, True, text
        self.worker.put(Speak(text, self.prefix if reason != "test" else None, now))
        return VoiceChange(self.name, True, self.level, self.pattern.name if self.pattern else None,
                           reason, now, text)

    def _hush(self, reason: str, now: float) -> VoiceChange | None:
        if self._slot is None:
            return None
        self._slot, self.on, self.text = None, False, None
        self.worker.put(Hush(reason, now))
        return VoiceChange(self.name, False, self.level, None, reason, now)

    def expired(self, now: float) -> bool:
        return (self.test_until is None and self.sounding_since is not None and self.output.max_on_s > 0
                and now - self.sounding_since >= self.output.max_on_s)

    def off(self, reason: str, now: float) -> VoiceChange | None:
        self.test_until = None
        self.level = self.pattern = self.sounding_since = None
        return self._hush(reason, now)

    def status(self) -> dict:
        return {"kind": "voice", "pin": None, "on": self.on, "level": self.level,
                "pattern": self.pattern.name if self.pattern else None, "testing": self.test_until is not None,
                "saying": self.text}

