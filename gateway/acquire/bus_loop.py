"""One thread per bus: one transaction at a time, each device on its own cadence.

A bus loop never blocks on anything but its own port, and hands readings to a sink that
must not block either (the safety loop's queue)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from gateway.acquire.device import Device, DeviceStats
from gateway.acquire.quality import stale_limits
from gateway.config.model import Bus, Config
from gateway.errors import BusError, DeviceFault
from gateway.reading import FAULT, GOOD, STALE, Reading

log = logging.getLogger("gateway.acquire")

PORT_RETRY_MIN_S = 0.5
PORT_RETRY_MAX_S = 10.0
BEAT_S = 0.5  # a loop waiting for its next due time still wakes this often to beat
RESTART_MIN_S = 0.5  # a loop that died is restarted after this, doubling while it keeps dying
RESTART_MAX_S = 30.0

Sink = Callable[[Reading], None]


def _open_transport(bus: Bus, devices: list[Device]):
    if bus.type == "serial":
        from drivers.serial_sensor import SerialSensorPort

        prof = devices[0].sensor.profile
        return SerialSensorPort(bus.port, bus.baudrate, bus.parity, bus.bytesize, bus.stopbits,
                                prof.frame, prof.pattern)
    from drivers.modbus import open_link

    return open_link(bus)


def _on_bus(name: str, e: Exception) -> str:
    text = str(e)
    return text if text.startswith(f"bus {name}") else f"bus {name}: {text}"


class BusLoop:
    """Polls every device of one bus, in due order, one transaction at a time."""

    def __init__(self, bus: Bus, devices: list[Device], sink: Sink, transport_factory=_open_transport,
                 writes=None):
        self.bus = bus
        self.devices = devices
        self.writes = writes  # gateway/acquire/writes.py: output writes, served ahead of the polls
        self.sink = sink
        self.transport = transport_factory(bus, devices)
        self.heartbeat = time.monotonic()
        self.port_error: str | None = None
        self._port_retry_s = PORT_RETRY_MIN_S
        self._next_open = 0.0
        self._point_faults: set[tuple[str, str]] = set()  # points logged as faulting (their device answers)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.died: str | None = None  # what ended the thread, if something did
        self.restarts = 0
        self._restart_at: float | None = None

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        self.died = None
        self._thread = threading.Thread(target=self._guarded_run, name=f"bus-{self.bus.name}", daemon=True)
        self._thread.start()

    @property
    def dead(self) -> bool:
        """The thread ended without being asked to."""
        return self._thread is not None and not self._thread.is_alive() and not self._stop.is_set()

    def revive(self, now: float) -> str | None:
        """Called by the daemon's supervisor: restart a dead loop (the port is closed and opened
        again, as after a port error), backing off if it keeps dying. Returns why it died when it
        was restarted now."""
        if not self.dead:
            return None
        if self._restart_at is None:
            self._restart_at = now + min(RESTART_MIN_S * 2 ** min(self.restarts, 6), RESTART_MAX_S)
        if now < self._restart_at:
            return None
        why = self.died or "the loop thread ended"
        self._restart_at = None
        self.restarts += 1
        self._close()
        self.start()
        return why

    def _guarded_run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - kept for the report; the supervisor restarts us
            self.died = f"{type(e).__name__}: {e}"
            log.critical("bus %s: the loop thread died (%s); the daemon restarts it", self.bus.name, self.died)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self.writes is not None:
            self.writes.ready.set()
        if self._thread:
            self._thread.join(timeout)
        if self.writes is not None and self.writes.next_due() is not None and self.transport.is_open:
            try:  # the outputs-off of a clean stop: one last try, so a sounder is not left sounding
                self.writes.serve(self.transport)
            except BusError as e:
                log.error("%s", _on_bus(self.bus.name, e))
        self._close()

    def _close(self) -> None:
        try:
            self.transport.close()
        except (OSError, BusError) as e:
            log.debug("closing %s: %s", self.bus.name, e)

    # -- the loop -------------------------------------------------------------------
    def _run(self) -> None:
        now = time.monotonic()
        for d in self.devices:
            d.next_due = now
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            self._serve_writes()
            if not self.devices:  # a bus of outputs only
                self._idle(BEAT_S)
                continue
            dev = min(self.devices, key=lambda d: d.next_due)
            wait = dev.next_due - time.monotonic()
            if wait > 0:
                self._idle(min(wait, BEAT_S))
                continue
            try:
                self.poll(dev)
            except Exception as e:  # noqa: BLE001 - a bug in one poll must not end every sensor of the bus
                log.exception("bus %s: polling %s failed unexpectedly", self.bus.name, dev.name)
                for r in dev.fault_readings(DeviceFault("internal", str(e) or type(e).__name__), time.monotonic()):
                    self.sink(r)
                dev.next_due = time.monotonic() + max(dev.sensor.poll_s, 1.0)

    def _idle(self, seconds: float) -> None:
        """Wait for the next poll, woken early by an output write (or stop)."""
        if self.writes is None:
            self._stop.wait(seconds)
            return
        due = self.writes.next_due()
        if due is not None:
            seconds = min(seconds, max(0.0, due - time.monotonic()))
        self.writes.ready.wait(seconds)

    def _serve_writes(self) -> None:
        """Output writes go ahead of the polls: called before every poll transaction."""
        w = self.writes
        if w is None or self._stop.is_set():
            return
        due = w.next_due()
        if due is None or due > time.monotonic():
            return
        if self.bus.type == "serial" or not self._ensure_open(time.monotonic()):
            return  # the port is down: tried again when it is back (next_open)
        try:
            w.serve(self.transport)
        except BusError as e:
            log.error("%s", _on_bus(self.bus.name, e))
            self.port_error = str(e)
            self._close()

    @property
    def allowance_s(self) -> float:
        """How long this loop may go without a heartbeat before it counts as hung (for the watchdog)."""
        return max(3.0, 2 * max((d.worst_poll_s() for d in self.devices), default=1.0))

    def poll(self, dev: Device) -> list[Reading]:
        """One poll of one device: readings go to the sink and are returned."""
        started = time.monotonic()
        if not self._ensure_open(started):
            readings = dev.fault_readings(BusError(self.port_error or "port closed"), started)
            # Until the port is back, devices wait for the next open attempt, not their cadence.
            dev.next_due = max(self._next_open, started + dev.sensor.poll_s)
        else:
            readings = self._transact(dev, started)
            dev.schedule_after(started)
        dev.stats.last_poll_s = time.monotonic() - started
        for r in readings:
            self.sink(r)
        return readings

    def _ensure_open(self, now: float) -> bool:
        if self.transport.is_open:
            return True
        if now < self._next_open:
            return False
        try:
            self.transport.open()
        except BusError as e:
            if self.port_error != str(e):
                log.error("%s (retrying every %.0f s at most)", _on_bus(self.bus.name, e), PORT_RETRY_MAX_S)
            self.port_error = str(e)
            self._next_open = now + self._port_retry_s
            self._port_retry_s = min(self._port_retry_s * 2, PORT_RETRY_MAX_S)
            return False
        if self.port_error:
            log.info("bus %s: port is back", self.bus.name)
        self.port_error = None
        self._port_retry_s = PORT_RETRY_MIN_S
        return True

    def _transact(self, dev: Device, started: float) -> list[Reading]:
        try:
            if self.bus.type == "serial":
                fields = self.transport.read(timeout=dev.timeout)
                values = dev.decode_fields(fields)
            else:
                regs: dict[int, int] = {}
                for req in dev.requests:
                    self._serve_writes()  # between two transactions of one device too
                    if req.function in (1, 2):  # coils, discrete inputs (drivers/modbus_bits.py)
                        bits = self.transport.read_bits(dev.sensor.unit, req.function, req.address, req.count,
                                                        timeout=dev.timeout, retries=dev.attempt_retries())
                        regs.update({(req.function, req.address + i): b for i, b in enumerate(bits)})
                        continue
                    words = self.transport.read_registers(
                        dev.sensor.unit, req.function, req.address, req.count,
                        timeout=dev.timeout, retries=dev.attempt_retries())
                    if len(words) != req.count:
                        raise DeviceFault("bytecount", f"asked {req.count} registers, got {len(words)}")
                    regs.update(zip(range(req.address, req.address + req.count), words))
                values = dev.decode_registers(regs)
        except DeviceFault as f:
            if dev.stats.consecutive == 0:
                log.warning("%s: %s", dev.name, f)
            return dev.fault_readings(f, time.monotonic())
        except BusError as e:
            log.error("%s", _on_bus(self.bus.name, e))
            self.port_error = str(e)
            self._close()
            self._next_open = time.monotonic() + self._port_retry_s
            return dev.fault_readings(e, time.monotonic())
        if dev.stats.consecutive:
            log.info("%s: answering again", dev.name)
        readings = dev.good_readings(values, time.monotonic())
        self._log_point_faults(readings)
        return readings

    def _log_point_faults(self, readings: list[Reading]) -> None:
        """A point that faults while its device answers (out of range, undecodable): one line when
        it starts and one when it ends, not one per poll."""
        for r in readings:
            key = (r.sensor, r.point)
            if r.quality == FAULT and key not in self._point_faults:
                self._point_faults.add(key)
                log.warning("%s.%s: %s", r.sensor, r.point, r.fault)
            elif r.quality == GOOD and key in self._point_faults:
                self._point_faults.discard(key)
                log.info("%s.%s: good again", r.sensor, r.point)


class Acquisition:
    """All bus loops of a configuration, and the latest reading of every point."""

    def __init__(self, cfg: Config, sink: Sink | None = None, transport_factory=_open_transport,
                 writes: dict | None = None, gpio=None):
        """`writes`: bus name -> OutputWrites of its Modbus outputs (gateway/acquire/writes.py);
        `gpio`: the GPIO backend the dry contacts of a `gpio` bus are read from (gateway/acquire/contacts.py)."""
        self.cfg = cfg
        self._latest: dict[tuple[str, str], Reading] = {}
        self._last_good: dict[tuple[str, str], Reading] = {}  # for status: the value before a fault
        self._lock = threading.Lock()
        self._sink = sink
        self.stale_limits = stale_limits(cfg)
        self.loops: list[BusLoop] = []
        writes = writes or {}
        for bus in cfg.buses.values():
            if bus.type == "gpio":
                contacts = [s for s in cfg.sensors.values() if s.bus == bus.name]
                if contacts and gpio is not None:
                    from gateway.acquire.contacts import ContactLoop

                    self.loops.append(ContactLoop(bus, contacts, gpio, self._on_reading))
                continue
            devices = [Device(s, bus) for s in cfg.sensors.values() if s.bus == bus.name]
            if devices or bus.name in writes:
                self.loops.append(BusLoop(bus, devices, self._on_reading, transport_factory, writes.get(bus.name)))

    def _on_reading(self, r: Reading) -> None:
        with self._lock:
            self._latest[(r.sensor, r.point)] = r
            if r.quality == GOOD:
                self._last_good[(r.sensor, r.point)] = r
        if self._sink is not None:
            self._sink(r)

    def start(self) -> None:
        for lp in self.loops:
            lp.start()

    def stop(self) -> None:
        for lp in self.loops:
            lp.stop()

    def read_once(self, sensors: list[str] | None = None) -> list[Reading]:
        """Poll each (selected) device once, in config order, without threads."""
        out = []
        for lp in self.loops:
            for d in lp.devices:
                if sensors is None or d.name in sensors:
                    out.extend(lp.poll(d))
        for lp in self.loops:
            lp._close()
        order = {name: i for i, name in enumerate(self.cfg.sensors)}
        return sorted(out, key=lambda r: order[r.sensor])

    def latest(self, now: float | None = None) -> list[Reading]:
        """Latest reading of every point; a good value older than its stale limit is `stale`
        (the same limit the alarm book holds alarms by)."""
        now = time.monotonic() if now is None else now
        out = []
        with self._lock:
            items = list(self._latest.values())
        for r in items:
            limit = self.stale_limits.get((r.sensor, r.point))
            if r.quality != FAULT and limit is not None and now - r.mono > limit:
                r = Reading(r.sensor, r.point, r.value, r.unit, STALE, r.ts, r.mono, r.fault)
            out.append(r)
        return out

    def last_good(self) -> dict[tuple[str, str], Reading]:
        with self._lock:
            return dict(self._last_good)

    def stats(self) -> dict[str, DeviceStats]:
        return {d.name: d.stats for lp in self.loops for d in lp.devices}

    def revive(self, now: float | None = None) -> list[tuple[str, str]]:
        """Restart the bus loops that died: [(bus name, why it died)] of those restarted now."""
        now = time.monotonic() if now is None else now
        out = []
        for lp in self.loops:
            why = lp.revive(now)
            if why is not None:
                out.append((lp.bus.name, why))
        return out

    def restarts(self) -> dict[str, int]:
        return {lp.bus.name: lp.restarts for lp in self.loops}

    def heartbeats(self) -> dict[str, float]:
        return {f"bus-{lp.bus.name}": lp.heartbeat for lp in self.loops}

    def allowances(self) -> dict[str, float]:
        return {f"bus-{lp.bus.name}": lp.allowance_s for lp in self.loops}
