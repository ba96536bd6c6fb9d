"""`gateway run`: wires the flow together.

    bus loops ─► SafetyLoop (rules, sirens)            the safety path: no disk, no network
       │              └─► sinks ─► Recorder ─► Outbox ─► Uplink
       └─► Recorder (telemetry)
    control socket ─► the same SafetyLoop commands;  watchdog fed only while every loop beats
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time

from gateway import __version__
from gateway.acquire import Acquisition
from gateway.acquire.quality import QualityWatch
from gateway.act.alarm_state import AlarmStateFile
from gateway.config.model import Config
from gateway.errors import GatewayError, OutboxError
from gateway.record.events import event_of

log = logging.getLogger("gateway.service.daemon")
SUPERVISE_S = 0.5
CERT_WARN_DAYS = 30
# Patterns, buttons and debounce ends are ticked this often. 50 ms keeps a 50 ms button debounce and
# a 0.25 s fast pulse honest and costs a Pi 3 a third of what a 20 ms tick does; readings and
# commands do not wait for the tick (they wake the loop at once).
SAFETY_TICK_S = 0.05
SAFETY_ALLOWANCE_S = 3.0  # the safety loop ticks every 20 ms: 3 s without a beat is a hang


class Daemon:
    def __init__(self, cfg: Config, gpio=None):
        self.cfg = cfg
        self.started_mono = time.monotonic()
        try:
            os.makedirs(cfg.gateway.data_dir, exist_ok=True)
        except OSError as e:
            raise GatewayError(f"data_dir {cfg.gateway.data_dir} cannot be created: {e.strerror}") from e
        self.events = collections.deque(maxlen=1000)
        self.events_total = 0  # events ever appended: `events --follow` slices by it, the deque rotates
        self._events_cv = threading.Condition()
        self.state_file = AlarmStateFile(cfg.gateway.data_dir)
        self._gpio = gpio
        self.recorder = self.outbox = self.uplink = self.control = None
        self.centres: dict = {}  # the city-protocol uplinks ([gb26875], [sl651]) by name
        self.cert_expiry = None
        self.started = False  # every part is up (config push's health check waits for this)
        self.safety = self.acquisition = self.watchdog = None
        # Events before the outbox opened (bounded: an outbox that never opens must not grow memory).
        self._early: collections.deque = collections.deque(maxlen=10_000)
        self._record_lock = threading.Lock()
        self._stop = threading.Event()
        self.request_reload = None  # set by run_daemon: callable(new_config)
        self.on_command = None  # set by run_daemon: callable(name, payload) from the uplink thread
        self._supervisor: threading.Thread | None = None

    # -- wiring ---------------------------------------------------------------------------
    def start(self) -> "Daemon":
        from drivers.gpio import open_gpio
        from gateway.act.loop import SafetyLoop
        from gateway.act.safety import SafetyCore
        from gateway.service.notify import Watchdog

        try:
            return self._start(open_gpio, SafetyLoop, SafetyCore, Watchdog)
        except BaseException:
            self.stop()
            raise

    def _start(self, open_gpio, SafetyLoop, SafetyCore, Watchdog) -> "Daemon":  # noqa: N803
        cfg = self.cfg
        self.watchdog = Watchdog()
        if self._gpio is None:
            self._gpio = open_gpio(cfg.gpio)
        # Sirens first: what was sounding before a crash sounds again before anything touches the
        # outbox (an SD card that is slow to recover its WAL must not delay a restored siren).
        self.safety = SafetyLoop(SafetyCore.from_config(cfg, self._gpio),
                                 on_transition=self._on_transition, on_state=self.state_file.save,
                                 tick_s=SAFETY_TICK_S)
        self.safety.start()
        snapshot = self.state_file.load()
        if snapshot:
            try:
                self.safety.restore(snapshot).result(10)  # problems (a rule that is gone) are logged by the loop
            except TimeoutError:
                raise GatewayError("the safety loop did not restore the saved alarms within 10 s") from None
            log.warning("restored active alarms from %s: %s", self.state_file.path,
                        ", ".join(a["id"] for a in self.safety.status().get("alarms", [])) or "none active")
        self._open_outbox()
        self._quality = QualityWatch({(r.sensor, r.point) for r in cfg.rules})
        self.acquisition = Acquisition(cfg, self._on_reading)
        self.acquisition.start()
        self._start_uplink()
        self._start_centres()
        self._start_control()
        allow = dict(self.acquisition.allowances(), safety=SAFETY_ALLOWANCE_S)
        self._hearts = {name: self.watchdog.register(name, period_s=1.0, allowed_s=a) for name, a in allow.items()}
        self._allow = allow
        self.watchdog.start()
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        self._supervisor.start()
        self.watchdog.ready(f"{len(cfg.sensors)} sensors on {len(self.acquisition.loops)} buses")
        self.started = True
        log.info("gateway %s %s running: %d sensors, %d rules, %d outputs", cfg.gateway.id, __version__,
                 len(cfg.sensors), len(cfg.rules), len(cfg.outputs))
        return self

    def _open_outbox(self) -> None:
        from gateway.record import Outbox, Recorder, TelemetryAggregator
        from gateway.record.health import Health

        path = os.path.join(self.cfg.gateway.data_dir, "outbox.sqlite")
        try:
            self.outbox = Outbox(path, self.cfg.gateway.id, self.cfg.outbox)
        except OutboxError as e:  # sirens must not depend on the disk: run, say it loudly
            log.error("OUTBOX UNAVAILABLE, events are not being kept: %s", e)
            return
        tele = TelemetryAggregator(self.cfg.outbox.telemetry_period_s, self.cfg.outbox.deadband)
        health = Health(self.outbox, self.cfg.gateway.data_dir)
        recorder = Recorder(self.outbox, tele, health=lambda: self._with_centres(health()),
                            status_period_s=self.cfg.outbox.status_period_s).start()
        with self._record_lock:
            for type_, fields, ts in self._early:
                recorder.submit(type_, fields, ts)
            self._early.clear()
            self.recorder = recorder

    def _start_uplink(self) -> None:
        if self.cfg.uplink is None or self.outbox is None:
            return
        from gateway.sync.uplink import Uplink

        from gateway.sync.tls import certificate_expiry

        tls = self.cfg.uplink.tls
        self.cert_expiry = certificate_expiry(tls.cert) if tls and tls.cert else None
        if self.cert_expiry and self.cert_expiry.get("days_left", CERT_WARN_DAYS) < CERT_WARN_DAYS:
            log.warning("client certificate %s expires on %s (%.0f days): renew it before the uplink stops",
                        tls.cert, self.cert_expiry["not_after"], self.cert_expiry["days_left"])
        birth = {"firmware": __version__, "config_hash": self.cfg.text_hash, "sensors": list(self.cfg.sensors)}
        self.uplink = Uplink(self.cfg.uplink, self.outbox, self.cfg.gateway.id, birth, on_command=self.on_command)
        self.uplink.start()

    def _start_centres(self) -> None:
        from gateway.service.centres import start_centres

        self.centres = start_centres(self.cfg, self.outbox, self.recorder,
                                     record=lambda t, f: self._record(t, f, time.time()), latest=self._latest)

    def _with_centres(self, fields: dict) -> dict:
        from gateway.service.centres import brief

        return dict(fields, uplinks=brief(self.centres)) if self.centres else fields

    def _latest(self, sensor: str | None):
        """The newest reading of `sensor` (SL 651's timed and hourly reports), or None."""
        if sensor is None or self.acquisition is None:
            return None
        return next((r for r in self.acquisition.latest(time.monotonic()) if r.sensor == sensor), None)

    def _start_control(self) -> None:
        from gateway.control import ControlServer, default_socket_path
        from gateway.control.handlers import handlers

        path = self.cfg.gateway.control_socket or default_socket_path(self.cfg.gateway.data_dir)
        plain, streams = handlers(self)
        try:
            self.control = ControlServer(path, plain, streams).start()
        except (OSError, GatewayError) as e:
            log.error("control socket %s unavailable (%s): the CLI cannot reach this daemon", path, e)

    # -- the flow ------------------------------------------------------------------------
    def _on_reading(self, r) -> None:
        self.safety.submit(r)  # first: the siren does not wait for the telemetry queue
        if self.recorder is not None:
            self.recorder.reading(r)
        change = self._quality.change(r)
        if change is not None:
            self._record("fault", change, r.ts)

    def _record(self, type_: str, fields: dict, ts: float) -> None:
        if self.recorder is not None:
            self.recorder.submit(type_, fields, ts)
        else:
            with self._record_lock:
                if self.recorder is None:
                    self._early.append((type_, fields, ts))
                else:
                    self.recorder.submit(type_, fields, ts)
        with self._events_cv:
            self.events.append({"type": type_, "ts": _iso(ts), **fields})
            self.events_total += 1
            self._events_cv.notify_all()

    def _on_transition(self, t) -> None:
        """Runs on the safety loop's transition sink thread, never on the safety loop."""
        type_, fields = event_of(t)
        self._record(type_, fields, t.ts)

    def _supervise(self) -> None:
        while not self._stop.wait(SUPERVISE_S):
            now = time.monotonic()
            beats = dict(self.acquisition.heartbeats(), safety=self.safety.heartbeat)
            for name, last in beats.items():
                if now - last < self._allow[name]:
                    self._hearts[name].beat()

    # -- queries for the control socket ---------------------------------------------------
    def status(self) -> dict:
        now = time.monotonic()
        sensors = []
        for r in self.acquisition.latest(now):
            d = r.as_dict()
            d["age_s"] = round(now - r.mono, 1)
            sensors.append(d)
        order = {n: i for i, n in enumerate(self.cfg.sensors)}
        sensors.sort(key=lambda d: order.get(d["sensor"], 0))
        safety = self.safety.status()
        st = {"gateway": self.cfg.gateway.id, "firmware": __version__, "config_hash": self.cfg.text_hash,
              "uptime_s": round(now - self.started_mono, 1), "sensors": sensors,
              "alarms": safety.get("alarms", []), "outputs": safety.get("outputs", {}),
              "devices": {n: s.as_dict() for n, s in self.acquisition.stats().items()},
              "uplink": (dict(self.uplink.status(), certificate=self.cert_expiry) if self.uplink
                         else {"state": "offline (no [uplink])"}),
              "outbox": self._outbox_stats(),
              "uplinks": {name: u.status() for name, u in self.centres.items()},
              "watchdog_stale": [n for n, _ in self.watchdog.stale()] if self.watchdog else []}
        return st

    def _outbox_stats(self) -> dict:
        if self.outbox is None:
            return {"state": "unavailable"}
        try:
            return self.outbox.stats()
        except OutboxError as e:
            return {"state": "error", "last_error": str(e)}

    def wait_events(self, after_total: int, timeout: float) -> tuple[list[dict], int]:
        """Events appended after the `after_total`-th (as many as the ring still holds), and the new total."""
        with self._events_cv:
            self._events_cv.wait_for(lambda: self.events_total > after_total or self._stop.is_set(), timeout)
            new = min(self.events_total - after_total, len(self.events))
            return (list(self.events)[len(self.events) - new:] if new > 0 else []), self.events_total

    # -- shutdown -----------------------------------------------------------------------
    def stop(self, reloading: bool = False) -> None:
        """Everything stopped, in flow order. Safe after a start() that failed halfway."""
        from gateway.service.notify import sd_notify

        self._stop.set()
        if reloading:
            sd_notify("RELOADING=1")  # STOPPING=1 would start systemd's stop timer and kill us
        elif self.watchdog:
            self.watchdog.stopping()
        if self.control:
            self.control.stop()
        if self.acquisition:
            self.acquisition.stop()
        # A clean stop must not forget what was sounding: the state file is left as it is so the
        # next start sounds it again (a stop is not an acknowledgement).
        if self.safety:
            self.safety.stop()
        if self.uplink:
            self.uplink.stop()
        for centre in self.centres.values():
            centre.stop()
        if self.recorder:
            self.recorder.stop()
        if self.outbox:
            self.outbox.close()
        if self.watchdog:
            self.watchdog.stop()
        cleanup = getattr(self._gpio, "cleanup", None)
        if cleanup:
            cleanup()
        log.info("gateway stopped")


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
