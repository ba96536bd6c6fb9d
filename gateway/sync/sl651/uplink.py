"""The SL 651-2014 uplink: this gateway as a telemetry station (遥测站) of the flood office, HEX/BCD
frames over TCP, mode M2 (send / confirm).

- 33 加报 (extra report): each water-level alarm event of the configured sensor, from the outbox with
  this uplink's own cursor (at-least-once, backlog paced, in order). Elements: 39 water level (m),
  45 status with the "water level over limit" bit while the alarm is active.
- 32 timed report every `timed_report_s` and 34 hourly report at the top of each hour, from the
  current reading (`latest()`): they carry the state of now, so they are not kept for replay.
- 2F keep-alive after `keepalive_s` idle, with the last data serial (§6.6.4.2); it has no answer.

M2 (§6.3.1.2 b): the centre confirms a valid report with a down frame of the same function and
serial (end EOT or ESC); it does not answer an invalid one. Unconfirmed within `confirm_timeout_s`:
resent with the same serial at most `resends` times; then a test report (30) asks whether the centre
is there. Unconfirmed too: the link is reset (§6.3.2.3) and the report sent again after the reconnect.
Confirmed: the centre is alive and ignores this 加报; after 3 such rounds it is marked failed for this
centre and declared (a `fault` event), so it cannot wedge the reports behind it. Frames from the centre are checked whole (length, CRC, addresses);
a bad one is dropped and counted, never answered (§6.3.1.2 b, d).
"""

from __future__ import annotations

import json
import logging
import time

from gateway.record import envelope
from gateway.sync.centre_link import CentreLink, LinkError, epoch_of
from gateway.sync.sl651 import codec

log = logging.getLogger(__name__)
CARRIED = (envelope.ALARM,)
_TO_M = {"m": 1.0, "cm": 0.01, "mm": 0.001}
_ACTIVE = {"active", "silenced", "acknowledged"}




class _Inflight:
    __slots__ = ("row", "frame", "function", "serial", "attempts", "deadline", "probe_for")

    def __init__(self, row, frame: bytes, function: int, serial: int, deadline: float, probe_for=None):
        self.row, self.frame, self.function, self.serial, self.deadline = row, frame, function, serial, deadline
        self.attempts = 1
        self.probe_for = probe_for  # a test report asking "are you there?" after `probe_for` went unconfirmed


class Sl651Uplink(CentreLink):
    name = "sl651"

    def __init__(self, cfg, cursor, level_sensor: str | None, *, latest=None, record=None, **kw):
        super().__init__(cfg.host, cfg.port, cursor, record=record, **kw)
        self.cfg = cfg
        self.station = codec.bcd(cfg.station)
        self.password = bytes.fromhex(cfg.password)
        self.station_type = int(cfg.station_type, 16)
        self.level_sensor = level_sensor
        self.latest = latest  # () -> Reading | None of the level sensor
        self._serial = 0
        self.inflight: _Inflight | None = None
        self._idle_since = time.monotonic()
        self._next_timed = time.monotonic() + cfg.timed_report_s if cfg.timed_report_s else None
        self._over_limit = False
        self._slots: dict[int, int] = {}  # 5-minute slot of the current hour -> level in cm
        self._hour = None

    def status(self) -> dict:
        f = self.inflight  # read once: the uplink thread may clear it meanwhile
        return dict(super().status(), station=self.cfg.station, centre_address=self.cfg.centre,
                    inflight=None if f is None else codec.FUNCTIONS.get(f.function),
                    level_over_limit=self._over_limit)

    def _on_connect(self) -> None:
        self.reader = codec.FrameReader()
        self.inflight = None
        self._idle_since = time.monotonic()

    def _next_serial(self) -> int:
        self._serial = self._serial % 0xFFFF + 1  # 1..65535 (§6.6.2.4)
        return self._serial

    def _up(self, function: int, body: bytes) -> bytes:
        return codec.Frame(self.cfg.centre, self.station, self.password, function, body).encode()

    def _send_report(self, function: int, elements: bytes, obs_ts: float, row=None, probe_for=None) -> None:
        serial = self._next_serial()
        body = codec.report_body(serial, self.station, self.station_type, obs_ts, elements)
        frame = self._up(function, body)
        self.inflight = _Inflight(row, frame, function, serial, time.monotonic() + self.cfg.confirm_timeout_s,
                                  probe_for)
        self.send(frame)
        self.count({codec.EXTRA: "extra_reports", codec.TIMED: "timed_reports", codec.HOURLY: "hourly_reports",
                    codec.TEST: "probes"}[function])

    # -- what is due -----------------------------------------------------------------------------
    def _step(self, now: float) -> None:
        self._sample()
        if self.inflight is not None:
            if now >= self.inflight.deadline:
                self._resend_or_reset(now)
            return
        got = self.cursor.next_row()
        while got is not None:
            row, _replay = got
            elements, obs, why = self._extra(row.body)
            if elements is not None:
                self._send_report(codec.EXTRA, elements, obs, row)
                return
            self.cursor.skipped(row.seq, why)
            got = self.cursor.next_row()
        if self._next_timed is not None and now >= self._next_timed:
            self._next_timed = now + self.cfg.timed_report_s
            self._send_report(codec.TIMED, self._current_elements(), time.time())
            return
        if self._hourly_due():
            return
        if now - self._idle_since >= self.cfg.keepalive_s:
            self._idle_since = now
            body = max(self._serial, 1).to_bytes(2, "big") + codec.bcd_time()
            self.send(self._up(codec.KEEPALIVE, body))
            self.count("keepalives")

    def _resend_or_reset(self, now: float) -> None:
        f = self.inflight
        if f.attempts <= self.cfg.resends:
            f.attempts += 1
            f.deadline = now + self.cfg.confirm_timeout_s
            self.send(f.frame)
            self.count("resent")
            return
        self.inflight = None
        if f.row is not None:
            # the centre or this report? A test report (30H, written to the centre's test database, §6.6.4.3)
            # tells: confirmed, the centre is alive and ignores this one; unconfirmed, it is down
            status = codec.hex_element(codec.STATUS, codec.LEVEL_OVER_LIMIT if self._over_limit else 0, 4)
            self._send_report(codec.TEST, status, time.time(), probe_for=f.row)
            return
        self.count("unconfirmed")
        what = codec.FUNCTIONS[f.function] + (f" report of event seq {f.row.seq}" if f.row else " report")
        if f.probe_for is not None:
            what = f"extra report of event seq {f.probe_for.seq}, then a test report"
        detail = f"{what}: no confirmation after {f.attempts} sends, {self.cfg.confirm_timeout_s:g} s apart"
        self.declare_outage("unconfirmed", detail)
        raise LinkError(f"centre {self.address}: {detail}", "unconfirmed")

    def _extra(self, body: str):
        try:
            e = json.loads(body)
        except ValueError:
            return None, None, "not JSON"
        if e.get("sensor") != self.level_sensor:
            return None, None, "not the station's water-level sensor"
        active = e.get("state") in _ACTIVE
        self._over_limit = active
        elements = b""
        value, unit = e.get("value"), e.get("unit", "")
        if value is not None and unit in _TO_M:
            elements += codec.element(codec.WATER_LEVEL, value * _TO_M[unit], 4, 3)  # the trigger element
        elements += codec.hex_element(codec.STATUS, codec.LEVEL_OVER_LIMIT if active else 0, 4)
        ts = epoch_of(e.get("ts")) or time.time()
        return elements, ts, None

    def _current_elements(self) -> bytes:
        r = self.latest() if self.latest else None
        bits = codec.LEVEL_OVER_LIMIT if self._over_limit else 0
        out = b""
        if r is not None and r.quality == "good" and r.value is not None and r.unit in _TO_M:
            out += codec.element(codec.WATER_LEVEL, r.value * _TO_M[r.unit], 4, 3)
        else:
            bits |= codec.LEVEL_METER_FAULT  # a failed read is a fault, never a value
        return out + codec.hex_element(codec.STATUS, bits, 4)

    def _sample(self) -> None:
        """Keep the level of each 5-minute slot of the hour for the hourly report (F5, cm, FFFF = none)."""
        if not self.cfg.hourly or self.latest is None:
            return
        t = time.localtime()
        hour = (t.tm_year, t.tm_yday, t.tm_hour)
        if self._hour is None:
            self._hour = hour
        slot = t.tm_min // 5
        if hour == self._hour and slot not in self._slots:
            r = self.latest()
            if r is not None and r.quality == "good" and r.value is not None and r.unit in _TO_M:
                self._slots[slot] = max(0, min(0xFFFE, int(round(r.value * _TO_M[r.unit] * 100))))

    def _hourly_due(self) -> bool:
        if not self.cfg.hourly or self.latest is None or self._hour is None:
            return False
        t = time.localtime()
        if (t.tm_year, t.tm_yday, t.tm_hour) == self._hour:
            return False
        slots, self._slots = self._slots, {}
        start = time.mktime(time.localtime()[:4] + (0, 0, 0, 0, -1)) - 3600  # the hour just ended
        self._hour = (t.tm_year, t.tm_yday, t.tm_hour)
        groups = b"".join(slots.get(i, 0xFFFF).to_bytes(2, "big") for i in range(12))
        elements = bytes([codec.LEVEL_5MIN, 24 << 3]) + groups + self._current_elements()
        self._send_report(codec.HOURLY, elements, start)
        return True

    # -- from the centre -------------------------------------------------------------------------
    def _on_frame(self, item) -> None:
        if isinstance(item, codec.FrameError):
            self.count("bad_frames")  # invalid: not answered (M2/M4)
            # loud the first time, then only counted (status shows it): garbage must not flood the journal
            (log.warning if self.counts["bad_frames"] == 1 else log.debug)(
                "sl651 centre %s sent a bad frame: %s", self.address, item)
            return
        if item.up or item.station != self.station or item.centre != self.cfg.centre:
            self.count("misaddressed")
            return
        self.count("frames_in")
        f = self.inflight
        if f is None or item.function != f.function or (item.serial is not None and item.serial != f.serial):
            self.count("ignored")  # queries and settings (M4) are not implemented: see docs/sl651.md
            return
        self.inflight = None
        self._idle_since = time.monotonic()
        self.declare_recovered()
        self.count("confirmed")
        if f.probe_for is not None:
            self.ignored(f.probe_for, "test reports", 1 + self.cfg.resends)
        if f.row is not None:
            self.confirmed_row(f.row)


