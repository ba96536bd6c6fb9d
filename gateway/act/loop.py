"""SafetyLoop: the one thread of the safety path.

It takes readings and commands from a queue, feeds the AlarmBook, switches relays in the
same iteration, and ticks patterns, buttons and debounces every `tick_s`. It performs no
disk or network I/O and waits on nobody: transitions, relay changes and state snapshots
leave through sinks, each on its own thread, so a hung outbox or uplink cannot delay a
siren. Not even logging happens on this thread (stdout may be a pipe that is full)."""

from __future__ import annotations

import queue
import threading
import time
import traceback
from concurrent.futures import Future

from gateway.act.safety import SafetyCore, Step
from gateway.act.sinks import LatestSink, QueueSink, log
from gateway.decide.transition import FAULT, RECOVERED, Transition
from gateway.errors import GatewayError, OutputError
from gateway.reading import Reading

_STOP = object()


class SafetyLoop:
    """Runs a SafetyCore on its own thread. `submit`, `silence`, `acknowledge`,
    `siren_test` and `restore` may be called from any thread and never block on the loop;
    the commands return a Future with the resulting transitions (or the error)."""

    def __init__(self, core: SafetyCore, *, on_transition=None, on_state=None, tick_s: float = 0.02,
                 clock=time.monotonic, name: str = "safety"):
        self.core = core
        self.tick_s = tick_s
        self._clock = clock
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._log = QueueSink(f"{name}-log", _log_item)
        # The consumers are looked up at each item, so a reload can hand them to the next daemon
        # (rewire) while this loop and its relays keep running.
        self.on_transition, self.on_state = on_transition, on_state
        self._transitions = QueueSink(f"{name}-transitions", lambda t: self.on_transition(t)) if on_transition else None
        self._state = LatestSink(f"{name}-state", lambda s: self.on_state(s)) if on_state else None
        self._status = {"alarms": [], "outputs": core.sirens.status(), "points": {}}
        self.heartbeat = clock()  # monotonic time of the last iteration, for the watchdog
        self.errors = 0
        self._stopped = False

    # -- any thread ------------------------------------------------------------------------
    def start(self) -> "SafetyLoop":
        for sink in (self._log, self._transitions, self._state):
            if sink:
                sink.start()
        self._thread.start()
        return self

    def submit(self, reading: Reading) -> None:
        if not isinstance(reading, Reading):  # caught here, in the caller, not in the safety thread
            raise TypeError(f"submit() takes a Reading, not {type(reading).__name__}")
        self._inbox.put(reading)

    def silence(self, alarm_id: str | None = None, by: str = "remote") -> Future:
        return self._command(self.core.silence, alarm_id, by)

    def acknowledge(self, alarm_id: str | None = None, by: str = "remote") -> Future:
        return self._command(self.core.acknowledge, alarm_id, by)

    def drill_start(self, area: str | None, minutes: float, by: str = "remote") -> Future:
        """A drill (gateway/act/drill.py) in `area` (None: every output) for `minutes`."""
        self._log.put(("warning", f"drill started by {by}: area {area or 'all'}, {minutes:g} min"))
        return self._command(self.core.drill_start, area, minutes, by)

    def drill_stop(self, by: str = "remote") -> Future:
        return self._command(self.core.drill_stop, by)

    def siren_test(self, name: str, seconds: float = 5.0, by: str = "remote") -> Future:
        self.core.sirens.check_test(name, seconds)  # a typo fails here, in the caller's thread
        self._log.put(("info", f"siren test {name} for {seconds:g} s by {by}"))
        return self._command(self.core.siren_test, name, seconds)

    def restore(self, snapshot: dict) -> Future:
        """Queue the last run's alarms; they sound on the loop's next iteration (or its first)."""
        return self._command(self.core.restore, snapshot)

    def reconfigure(self, cfg, *, on_transition=None, on_state=None, outlets=None) -> Future:
        """Apply a reloaded configuration to the running loop (see SafetyCore.reconfigure); the
        relays keep sounding throughout. The rules are built and checked here, in the caller's
        thread (a ConfigError changes nothing); the hand-over happens on the loop's thread. From
        the hand-over on, transitions and state snapshots go to the new consumers. `outlets`: the
        workers of the new config's voice and Modbus outputs."""
        from gateway.act.safety import alarm_book_of

        book = alarm_book_of(cfg)
        SafetyCore.check(book, list(cfg.outputs))

        def apply() -> Step:
            step = self.core.reconfigure(book, cfg.outputs, cfg.inputs, self._clock(), outlets=outlets,
                                         areas=cfg.areas)
            if on_transition is not None:
                self.on_transition = on_transition
            if on_state is not None:
                self.on_state = on_state
            if self._state:
                self._state.put(self.core.book.snapshot())  # the new data_dir gets the alarms at once
            return step

        return self._command(apply)

    def status(self) -> dict:
        """Alarms and outputs as of the last change (a copy the loop published)."""
        return dict(self._status, heartbeat_age_s=self._clock() - self.heartbeat)

    def alive(self, max_age_s: float = 1.0) -> bool:
        return self._thread.is_alive() and self._clock() - self.heartbeat <= max_age_s

    def stop(self, timeout: float = 5.0) -> bool:
        """Outputs off, threads ended. False if something did not end within `timeout`
        (a sink still stuck in its consumer)."""
        if self._stopped:
            return True
        self._stopped = True
        self._inbox.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)
        ok = not self._thread.is_alive()
        for sink in (self._transitions, self._state, self._log):
            if sink:
                ok = sink.stop(timeout) and ok
        return ok

    def _command(self, fn, *args) -> Future:
        if self._stopped:
            raise OutputError("the safety loop is not running")
        fut: Future = Future()
        self._inbox.put((fn, args, fut))
        return fut

    # -- the loop thread -------------------------------------------------------------------
    def _run(self) -> None:
        clock, inbox = self._clock, self._inbox
        next_tick = clock()
        try:
            while True:
                try:
                    item = inbox.get(timeout=max(0.0, next_tick - clock()))
                except queue.Empty:
                    item = None
                burst = 0
                while item is not None:
                    if item is _STOP:
                        return
                    self._handle(item)
                    burst += 1
                    if burst >= 256:
                        break  # a flood of readings must not starve the tick and the heartbeat
                    try:
                        item = inbox.get_nowait()  # take a burst before the tick
                    except queue.Empty:
                        item = None
                now = clock()
                if now >= next_tick:
                    self._guarded(self.core.tick, now)
                    next_tick = now + self.tick_s
                self.heartbeat = now
        finally:
            self._guarded(self.core.shutdown, clock())

    def _handle(self, item) -> None:
        if isinstance(item, Reading):
            self._guarded(self.core.feed, item)
            return
        fn, args, fut = item
        try:
            step = fn(*args)
        except GatewayError as e:  # an unknown alarm id, an output that cannot be driven
            fut.set_exception(e)
            return
        except Exception as e:  # a bug: the caller hears about it and the loop carries on
            self._report_bug(fn, args)
            fut.set_exception(e)
            return
        self._publish(step)
        self._status = self.core.status()  # a restore or a test changes what status shows
        fut.set_result(step.transitions)

    def _guarded(self, fn, arg) -> None:
        try:
            step = fn(arg)
        except Exception:  # one malformed reading must not end the safety path: logged, counted
            self._report_bug(fn, (arg,))
            return
        self._publish(step)

    def _report_bug(self, fn, args) -> None:
        self.errors += 1
        self._log.put(("error", f"safety loop: {getattr(fn, '__name__', fn)}{args!r} failed\n"
                                f"{traceback.format_exc()}"))

    def _publish(self, step: Step) -> None:
        """After the relays switched: hand the news to the sinks (queue puts only)."""
        for t in step.transitions:
            self._log.put(t)
            if self._transitions:
                self._transitions.put(t)
        for r in step.relays:
            # A pulse's edges are the pattern, not news: its start and end are logged, not the
            # 14,400 edges an hour a pulsing siren makes (journald on an SD card).
            if r.reason != "pulse":
                self._log.put(r)
        for p in step.problems:
            self._log.put(("warning", p))
        if step.transitions or step.relays:
            self._status = self.core.status()  # replaced whole: readers never see it half-built
        if step.alarms_changed and self._state:
            self._state.put(self.core.book.snapshot())


def _log_item(item) -> None:
    if isinstance(item, Transition):
        if item.kind in (FAULT, RECOVERED) and not item.alarm_id:
            # The bus loop has said it once for the bus or the device; one line per point would
            # repeat it for every point of every sensor on a dead bus.
            log.debug(item.describe())
        elif item.kind == FAULT:
            log.warning(item.describe())  # an active alarm just went blind: worth its own line
        else:
            log.info(item.describe())
    elif isinstance(item, tuple):
        level, text = item
        getattr(log, level)(text)
    else:
        log.info(item.describe())
