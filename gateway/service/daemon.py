"""`gateway run`: wires the flow together.

    bus loops ─► SafetyLoop (rules, sirens)            the safety path: no disk, no network
       │              └─► sinks ─► Recorder ─► Outbox ─► Uplink
       └─► Recorder (telemetry)
    control socket ─► the same SafetyLoop commands;  watchdog fed only while every loop beats
"""

from __future__ import annotations

import faulthandler
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
from gateway.service.event_ring import EventRing

log = logging.getLogger("gateway.service.daemon")
SUPERVISE_S = 0.5
CERT_WARN_DAYS = 30
# Patterns, buttons and debounce ends are ticked this often. 50 ms keeps a 50 ms button debounce and
# a 0.25 s fast pulse honest and costs a Pi 3 a third of what a 20 ms tick does; readings and
# commands do not wait for the tick (they wake the loop at once).
SAFETY_TICK_S = 0.05
SAFETY_ALLOWANCE_S = 3.0  # the safety loop ticks every 20 ms: 3 s without a beat is a hang
UPDATE_DRAIN_S = 1.0  # an update restart's bound on the uplink's drain (the relays stay driven meanwhile)


class Daemon:
    def __init__(self, cfg: Config, gpio=None):
        self.cfg = cfg
        self.started_mono = time.monotonic()
        try:
            os.makedirs(cfg.gateway.data_dir, exist_ok=True)
        except OSError as e:
            raise GatewayError(f"data_dir {cfg.gateway.data_dir} cannot be created: {e.strerror}") from e
        self.events = EventRing(1000)  # for `events --follow`; the history is the outbox file
        self.state_file = AlarmStateFile(cfg.gateway.data_dir)
        from gateway.update.audit import UpdateAudit  # update steps -> audit events (docs/updates.md)

        self._update_audit = UpdateAudit(cfg.gateway.data_dir, lambda f, ts: self._record("audit", f, ts or time.time()))
        self._gpio = gpio
        self.outbox = self.uplink = self.control = None
        self.centres: dict = {}  # the city-protocol uplinks ([gb26875], [sl651]) by name
        self.cert_expiry = None
        self.started = False  # every part is up (config push's health check waits for this)
        self.safety = self.acquisition = self.watchdog = None
        self.ownership = None  # the data dir, ports and GPIO chip this daemon holds (gateway.service.ownership)
        # The outbox's one writer, from the start: events before the outbox opens (at start, or the
        # moment of a reload between two outboxes) wait in its lanes, bounded.
        from gateway.record import Recorder, TelemetryAggregator
        ob = cfg.outbox  # a group commit never holds telemetry or status longer than their own period
        self.recorder = Recorder(None, TelemetryAggregator(ob.telemetry_period_s, ob.deadband),
                                 status_period_s=ob.status_period_s,
                                 commit_s=min(ob.commit_s, ob.telemetry_period_s, ob.status_period_s))
        self.outlets: dict = {}  # voice and Modbus output workers (gateway/act/outlets.py)
        self._writes: dict = {}  # bus -> OutputWrites of its Modbus outputs
        self._outlet_cfg = cfg  # the config the outlets were built from (a failed reload keeps the old ones)
        self._stop = threading.Event()
        self.request_reload = None  # set by run_daemon: callable(new_config)
        self.on_command = None  # set by run_daemon: callable(name, payload) from the uplink thread
        self._supervisor: threading.Thread | None = None

    # -- wiring ---------------------------------------------------------------------------
    def start(self, handover: "Daemon | None" = None) -> "Daemon":
        """Start every part. With `handover` (a reload), the running daemon's safety loop and
        relays are taken over, reconfigured in place and never stopped (make before break); its
        other parts are stopped here, each just before its successor starts. If this fails
        after the take-over, the safety loop is left running for the next attempt to adopt."""
        from drivers.gpio import open_gpio
        from gateway.act.loop import SafetyLoop
        from gateway.act.safety import SafetyCore
        from gateway.service.notify import Watchdog
        from gateway.service.ownership import Ownership

        try:
            # Before anything is touched: a second daemon on this site is refused with the outbox,
            # the ports and the relays of the first untouched (a reload's successor shares the
            # process's locks, counted).
            self.ownership = Ownership.of(self.cfg).acquire()
            if handover is None:
                self._start_safety(open_gpio, SafetyLoop, SafetyCore)
            else:
                self._take_over(handover)
            return self._start(Watchdog)
        except BaseException:
            # after a take-over the safety loop and GPIO stay up for the next taker (the rollback)
            self.stop(reloading=handover is not None)
            raise

    def _start_safety(self, open_gpio, SafetyLoop, SafetyCore) -> None:  # noqa: N803
        cfg = self.cfg
        if self._gpio is None:
            self._gpio = open_gpio(cfg.gpio)
        # Sirens first: what was sounding before a crash sounds again before anything touches the
        # outbox (an SD card that is slow to recover its WAL must not delay a restored siren).
        from gateway.act.outlets import modbus_outlets, start_voice_workers

        self.outlets.update(start_voice_workers(cfg, self._on_output_problem))
        modbus, self._writes = modbus_outlets(cfg, self._on_output_problem)
        self.outlets.update(modbus)
        self.safety = SafetyLoop(SafetyCore.from_config(cfg, self._gpio, self.outlets),
                                 on_transition=self._on_transition, on_state=self.state_file.save,
                                 tick_s=SAFETY_TICK_S)
        self.safety.start()
        snapshot = self.state_file.load()  # checked; a damaged file is moved aside, never a crash
        self.state_file.reserve()
        if self.state_file.fault_event():
            self._record("fault", self.state_file.fault_event(), time.time())
        if snapshot:
            try:
                self.safety.restore(snapshot).result(10)  # problems (a rule that is gone) are logged by the loop
            except TimeoutError:
                raise GatewayError("the safety loop did not restore the saved alarms within 10 s") from None
            log.warning("restored active alarms from %s: %s", self.state_file.path,
                        ", ".join(a["id"] for a in self.safety.status().get("alarms", [])) or "none active")

    def _take_over(self, old: "Daemon") -> None:
        """The reload's make before break: the old daemon lets go of its ports (acquisition,
        control socket), the safety loop switches to the new rules and outputs without letting
        a relay drop, readings flow again, and only then do the old recorder and uplink stop
        (a slow SD commit there no longer silences anything)."""
        if old.safety is None:
            raise GatewayError("nothing to take over: the running daemon has no safety loop")
        if old.cfg.gpio != self.cfg.gpio:
            raise GatewayError("[gpio] changed: restart the gateway to switch GPIO backends")
        old.stop_inputs(reloading=True)
        if os.path.realpath(old.cfg.gateway.data_dir) == os.path.realpath(self.cfg.gateway.data_dir):
            # one writer of the slot file: its generation counter must go on, not start again at 0
            self.state_file = old.state_file
        else:
            self.state_file.load()
            self.state_file.reserve()
        # The voice and Modbus outputs of the new config: a voice worker whose output did not change
        # is adopted (taken out of old.outlets), the rest start here; old.stop stops what is left
        # there once the loop drives the new ones. The Modbus writes are new queues for the new bus
        # loops (the old loops are stopped), and what the new config took away is written OFF.
        from gateway.act.outlets import modbus_outlets, release_removed_modbus, start_voice_workers

        left = dict(old.outlets)
        self.outlets = {}
        try:
            # inside the try: a worker that fails to start must not leave adopted ones to be stopped
            # by this daemon's stop while the old loop still drives them
            self.outlets = start_voice_workers(self.cfg, self._on_output_problem, adopt=(old._outlet_cfg, left))
            modbus, self._writes = modbus_outlets(self.cfg, self._on_output_problem)
            self.outlets.update(modbus)
            for stranded in release_removed_modbus(old._outlet_cfg, self.cfg, self._writes,
                                                   self._on_output_problem):
                log.error("reload: Modbus output %s", stranded)
            old.safety.reconfigure(self.cfg, on_transition=self._on_transition,
                                   on_state=self.state_file.save, outlets=self.outlets).result(10)
        except BaseException as e:
            # The loop still drives the old outlets: they stay, with the loop, for the next taker;
            # the workers started for the new config go.
            for name, worker in self.outlets.items():
                if worker is not old.outlets.get(name):
                    worker.stop(2.0)
            self.outlets, self._writes, self._outlet_cfg = old.outlets, old._writes, old._outlet_cfg
            old.outlets, old._writes = {}, {}
            old.stop(reloading=True)  # whoever adopts the loop next opens the outbox again
            if isinstance(e, TimeoutError):
                raise GatewayError("the safety loop did not take the new configuration within 10 s") from None
            raise
        finally:
            # The loop is ours now, whatever happened: a failed start leaves it for the next taker.
            # The GPIO comes with it, never before: a stop() of a half-started successor must not
            # clean up (switch off) the relays the old loop is driving.
            self.safety, self._gpio, old.safety, old._gpio = old.safety, old._gpio, None, None
        # Not adopted: hushed now (one voice per loudspeaker: the loop drives the new workers),
        # joined and closed by old.stop.
        from gateway.act.voice import Hush, VoiceWorker

        for worker in left.values():
            if isinstance(worker, VoiceWorker):
                worker.put(Hush("reload", time.monotonic()))
        old.outlets = left
        # Transitions from now on reach this daemon (in its Recorder's lanes until its outbox opens).
        try:
            self._start_acquisition()
        finally:
            old.stop(reloading=True)  # its outbox (held exclusively), uplink and centres, whatever happened

    def _start(self, Watchdog) -> "Daemon":  # noqa: N803
        cfg = self.cfg
        # A fatal signal (SIGBUS from a disk that went away under a mapping, SIGSEGV in a C library)
        # prints every thread's stack to the journal before the process dies; systemd restarts it
        # and the saved alarm state sounds the sirens again.
        faulthandler.enable()
        self.watchdog = Watchdog()
        if self.acquisition is None:
            self._start_acquisition()
        # after the buses: checking a big outbox on a slow card takes seconds, and new alarms must not
        # wait for it (their events wait in the Recorder's lanes meanwhile)
        self._open_outbox()
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

    def _start_acquisition(self) -> None:
        self._quality = QualityWatch({(r.sensor, r.point) for r in self.cfg.rules})
        self.acquisition = Acquisition(self.cfg, self._on_reading, writes=self._writes, gpio=self._gpio)
        self.acquisition.start()

    def _open_outbox(self) -> None:
        from gateway.record import Outbox
        from gateway.record.health import Health
        from gateway.record.seqmark import SeqMark

        data_dir = self.cfg.gateway.data_dir
        try:  # recover=True: a damaged or unwritable file is moved aside or retried, never raised
            self.outbox = Outbox(os.path.join(data_dir, "outbox.sqlite"), self.cfg.gateway.id, self.cfg.outbox,
                                 mark=SeqMark(data_dir), recover=True)
        except (OutboxError, OSError) as e:  # sirens must not depend on the disk: run, say it loudly
            log.error("OUTBOX UNAVAILABLE, events wait in memory (bounded): %s", e)
            return
        health = Health(self.outbox, data_dir, recorder=self.recorder, state_file=self.state_file)
        self.recorder.attach(self.outbox, lambda: self._with_centres(health())).start()

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
        self.uplink = Uplink(self.cfg.uplink, self.outbox, self.cfg.gateway.id, birth, on_command=self.on_command,
                             writer=self.recorder, record=self._record)
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
            # A daemon nobody can silence, acknowledge or reload is not run (systemd says why).
            raise GatewayError(f"control socket {path} unavailable: {e}; nothing can reach a daemon "
                               f"without it, so it does not run") from e

    # -- the flow ------------------------------------------------------------------------
    def _on_reading(self, r) -> None:
        self.safety.submit(r)  # first: the siren does not wait for the telemetry queue
        self.recorder.reading(r)
        change = self._quality.change(r)
        if change is not None:
            self._record("fault", change, r.ts)

    def _record(self, type_: str, fields: dict, ts: float) -> None:
        self.recorder.submit(type_, fields, ts)  # never blocks; alarms have a lane of their own
        self.events.append(type_, fields, ts)

    # -- the public face the process side uses (gateway/service/process.py) -------------------
    def record(self, type_: str, fields: dict, ts: float | None = None) -> None:
        """An event into the outbox (an audit of a platform command, say), and the events ring."""
        self._record(type_, fields, time.time() if ts is None else ts)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def healthy(self) -> bool:
        """Fully up: every bus port open and its loop beating, the safety loop beating, and the
        uplink online when the config has one."""
        if not self.started or self.stopping or self.acquisition is None or self.safety is None:
            return False
        now = time.monotonic()
        for lp in self.acquisition.loops:
            if lp.port_error is not None or now - lp.heartbeat > lp.allowance_s:
                return False
        if not self.safety.alive(SAFETY_ALLOWANCE_S):
            return False
        if self.cfg.uplink is None:
            return True
        return self.uplink is not None and self.uplink.status().get("state") == "online"

    def _on_transition(self, t) -> None:
        """Runs on the safety loop's transition sink thread, never on the safety loop."""
        type_, fields = event_of(t)
        self._record(type_, fields, t.ts)

    def _on_output_problem(self, output: str, text: str | None) -> None:
        """A voice or Modbus output failed (or works again): a fault event. Its worker's thread."""
        kind = self.cfg.outputs[output].kind if output in self.cfg.outputs else "output"
        fields = {"component": "output", "output": output, "state": "fault" if text else "recovered",
                  "reason": kind, "detail": text or "working again"}
        self._record("fault", fields, time.time())

    def _supervise(self) -> None:
        while not self._stop.wait(SUPERVISE_S):
            now = time.monotonic()
            acquisition, safety = self.acquisition, self.safety
            if acquisition is None or safety is None:
                return  # handed over or stopping
            for bus, why in acquisition.revive(now):
                # The watchdog stays the last line: a loop that keeps dying stops beating for good.
                ts = time.time()
                self._record("fault", {"bus": bus, "component": "bus-loop", "state": "fault", "reason":
                                       f"the bus loop died ({why}); restarted"}, ts)
                self._record("fault", {"bus": bus, "component": "bus-loop", "state": "recovered",
                                       "reason": "restarted"}, ts)
            try:
                self._update_audit.poll()
            except Exception as e:  # a bad journal must not stop the supervision
                log.error("update journal not audited: %s", e)
            beats = dict(acquisition.heartbeats(), safety=safety.heartbeat)
            for name, last in beats.items():
                if now - last < self._allow[name]:
                    self._hearts[name].beat()

    # -- queries for the control socket ---------------------------------------------------
    def status(self) -> dict:
        from gateway.service.status import daemon_status

        return daemon_status(self)

    # -- shutdown -----------------------------------------------------------------------
    def stop_inputs(self, reloading: bool = False) -> None:
        """A reload's first step: give up the control socket and the bus ports (their next owner
        is the new daemon); the safety loop keeps sounding what it sounds."""
        from gateway.service.notify import sd_notify

        if reloading and not self._stop.is_set():
            sd_notify("RELOADING=1")  # STOPPING=1 would start systemd's stop timer and kill us
        self._stop.set()
        self.events.close()
        control, self.control = self.control, None
        if control:
            control.stop()
        acquisition, self.acquisition = self.acquisition, None
        if acquisition:
            acquisition.stop()

    def stop(self, reloading: bool = False) -> None:
        """Everything stopped, in flow order. Safe after a start() that failed halfway, and twice.
        `reloading`: the safety loop and the GPIO stay up for the next daemon to take over."""
        if not reloading and not self._stop.is_set() and self.watchdog:
            self.watchdog.stopping()
        if self._writes and self.safety and not reloading:
            self.safety.stop()  # its outputs-off reaches the Modbus outputs while their bus loops still run
        self.stop_inputs(reloading)
        # A clean stop must not forget what was sounding: the state file is left as it is so the
        # next start sounds it again (a stop is not an acknowledgement).
        if self.safety and not reloading:
            self.safety.stop()
            self.safety = None
        if self.safety is None:  # a loop kept for the next taker keeps driving its outlets
            for worker in self.outlets.values():
                worker.stop(2.0)  # a hung backend is left behind (daemon thread), never waited for long
            self.outlets = {}
        self._stop_records()
        if self._gpio is not None and self.safety is None:
            cleanup = getattr(self._gpio, "cleanup", None)
            if cleanup:
                cleanup()
        if self.ownership:
            self.ownership.release()
            self.ownership = None
        log.info("gateway stopped" if self.safety is None else "gateway parts stopped; the safety loop runs on")

    def stop_for_update(self, drain_s: float = UPDATE_DRAIN_S) -> None:
        """An update's restart (SIGUSR2, then exec of the launcher in this process): the slow parts
        first - control socket, bus ports, the uplink's drain (bounded by `drain_s`), the centres,
        the recorder, the outbox - while the safety loop keeps the relays as they are; the safety
        loop (relays off), the outlets and the GPIO last, right before the exec, so the relays are
        undriven only for the exec and the new release's start up to its restore (docs/updates.md).
        A Modbus output is left as it was (its bus port is closed by then): the new release's
        restore drives it again."""
        from gateway.service.notify import sd_notify

        if not self._stop.is_set():
            sd_notify("RELOADING=1")  # STOPPING=1 would start systemd's stop timer and kill us
        self.stop_inputs(reloading=True)
        self._stop_records(uplink_timeout=drain_s)
        if self.safety:
            self.safety.stop(2.0)
            self.safety = None
        for worker in self.outlets.values():
            worker.stop(0.2)  # a hung backend is left behind (daemon thread), never waited for
        self.outlets = {}
        if self._gpio is not None:
            cleanup = getattr(self._gpio, "cleanup", None)
            if cleanup:
                cleanup()
        if self.ownership:
            self.ownership.release()
            self.ownership = None
        log.info("gateway stopped for an update restart")

    def _stop_records(self, uplink_timeout: float | None = None) -> None:
        if self.uplink:
            if uplink_timeout is not None:
                self.uplink._drain_s = min(self.uplink._drain_s, uplink_timeout / 2)
                self.uplink.stop(uplink_timeout + 0.5)
            else:
                self.uplink.stop()
        # the centres mark through the Recorder: they stop before it (a reload's old centres stop
        # here, before the new daemon starts its own on the same cursors)
        centres, self.centres = self.centres, {}
        for centre in centres.values():
            centre.stop()
        if self.recorder.alive():
            self.recorder.stop()
        if self.outbox:
            self.outbox.close()
        if self.watchdog:
            self.watchdog.stop()
        self.uplink = self.outbox = self.watchdog = None  # the (stopped) Recorder stays: late events are dropped there

