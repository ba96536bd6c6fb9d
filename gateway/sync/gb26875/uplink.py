"""The GB/T 26875.3 uplink: this gateway as the user information transmission device of a fire
remote-monitoring centre, over TCP.

Send/confirm (§6.2.3, §6.5): one event at a time as command 2 (send data); the centre answers 3
(confirm) or 6 (deny) with the same serial number. No answer within `confirm_timeout_s` (the standard:
"should not exceed 10 s") or a deny: resent with the same serial, at most `resends` times (the
standard: "3"). Denied every time: the event is marked failed for this centre and a `fault` event
declares it (MQTT carries it). Never confirmed: a keep-alive asks whether the centre is there. Not
confirmed either: the session ends, the event stays pending and is sent again after the reconnect
(GB 26875.1: keep trying), and a `fault` event declares the outage once. Confirmed: the centre is
alive and ignores this event; after 3 such rounds it is marked failed for this centre and declared,
so one event the centre will not take cannot wedge the ones behind it.

From the centre: 1 control (89 initialise, 90 clock sync, 91 duty check) is confirmed; 4 request
(81 device state, 88 device time) is answered with 5; anything unreadable with a readable serial is
denied, as §6.5 says; frames not from the configured centre to this device are dropped. Answers are rate-limited.
Alarms go first (the cursor's order); when idle a keep-alive (command 2, no data) is sent every
`heartbeat_s` and must be confirmed like any frame.
"""

from __future__ import annotations

import logging
import time

from gateway.record import envelope
from gateway.sync.centre_link import CentreLink, LinkError
from gateway.sync.gb26875 import codec, datatypes as dt
from gateway.sync.gb26875.mapping import Gb26875Mapping

log = logging.getLogger(__name__)
CARRIED = (envelope.ALARM, envelope.FAULT, envelope.TELEMETRY)




class _Inflight:
    __slots__ = ("row", "frame", "serial", "attempts", "deadline", "denied", "probe_for")

    def __init__(self, row, frame: bytes, serial: int, deadline: float, probe_for=None):
        self.row, self.frame, self.serial, self.deadline = row, frame, serial, deadline
        self.attempts, self.denied = 1, 0
        self.probe_for = probe_for  # a keep-alive asking "are you there?" after `probe_for` went unanswered


class Gb26875Uplink(CentreLink):
    name = "gb26875"

    def __init__(self, cfg, cursor, mapping: Gb26875Mapping, *, record=None, **kw):
        super().__init__(cfg.host, cfg.port, cursor, record=record, **kw)
        self.cfg = cfg
        self.source = codec.address(cfg.source)
        self.destination = codec.address(cfg.destination)
        self.mapping = mapping
        self._serial = 0
        self.inflight: _Inflight | None = None
        self._idle_since = time.monotonic()
        self.last_duty_check: str | None = None
        self.clock_offset_s: float | None = None

    def status(self) -> dict:
        f = self.inflight  # read once: the uplink thread may clear it meanwhile
        return dict(super().status(), source=self.cfg.source, destination=self.cfg.destination,
                    inflight_seq=None if f is None or f.row is None else f.row.seq,
                    last_duty_check=self.last_duty_check, centre_clock_offset_s=self.clock_offset_s)

    # -- session -------------------------------------------------------------------------------
    def _on_connect(self) -> None:
        self.reader = codec.FrameReader()
        self._serial = 0  # §8.1: the serial number starts at 0 when the connection is made
        self.inflight = None
        self._idle_since = time.monotonic()

    def _frame(self, command: int, data: bytes = b"", serial: int | None = None) -> tuple[bytes, int]:
        if serial is None:
            self._serial = (self._serial + 1) & 0xFFFF
            serial = self._serial
        f = codec.Frame(serial=serial, command=command, source=self.source, destination=self.destination,
                        data=data, time_label=codec.time_label())
        return f.encode(), serial

    def _step(self, now: float) -> None:
        if self.inflight is not None:
            if now >= self.inflight.deadline:
                self._resend_or_give_up(now, "no confirmation")
            return
        got = self.cursor.next_row()
        while got is not None:
            row, replay = got
            data, why = self.mapping.unit_of(row.type, row.body)
            if data is not None:
                frame, serial = self._frame(codec.SEND, data)
                self.inflight = _Inflight(row, frame, serial, now + self.cfg.confirm_timeout_s)
                self.send(frame)
                self.count("sent")
                return
            self.cursor.skipped(row.seq, why)
            got = self.cursor.next_row()
        if self.cfg.heartbeat_s and now - self._idle_since >= self.cfg.heartbeat_s:
            frame, serial = self._frame(codec.SEND)
            self.inflight = _Inflight(None, frame, serial, now + self.cfg.confirm_timeout_s)
            self.send(frame)
            self.count("heartbeats")

    def _resend_or_give_up(self, now: float, why: str) -> None:
        f = self.inflight
        if f.attempts <= self.cfg.resends:
            f.attempts += 1
            f.deadline = now + self.cfg.confirm_timeout_s
            self.send(f.frame)
            self.count("resent")
            return
        self.inflight = None
        what = "keep-alive" if f.row is None else f"event seq {f.row.seq} ({f.row.type})"
        if f.row is not None and f.denied == f.attempts:
            # denied every time: the centre will not take it; say so and move on
            self.cursor.failed(f.row.seq, f"denied {f.denied} times")
            self.count("failed")
            log.error("gb26875 centre %s denied %s %d times: marked failed for this centre", self.address,
                      what, f.denied)
            self.record(envelope.FAULT, {"component": self.name, "state": "fault", "reason": "denied",
                                         "detail": f"{f.denied} denials", "centre": self.address,
                                         "failed_seq": f.row.seq, "failed_type": f.row.type})
            self._idle_since = now
            return
        if f.row is not None:
            # Is it the centre or this event? A keep-alive tells: confirmed, the centre is alive and
            # ignores this one event (a head-of-line wedge if nothing is done); unconfirmed, it is down.
            frame, serial = self._frame(codec.SEND)
            self.inflight = _Inflight(None, frame, serial, now + self.cfg.confirm_timeout_s, probe_for=f.row)
            self.send(frame)
            self.count("probes")
            return
        self.count("unconfirmed")
        if f.probe_for is not None:
            what = f"event seq {f.probe_for.seq} ({f.probe_for.type}), then a keep-alive"
        detail = f"{what}: {why} after {f.attempts} sends, {self.cfg.confirm_timeout_s:g} s apart"
        self.declare_outage("unconfirmed", detail)
        raise LinkError(f"centre {self.address}: {detail}", "unconfirmed")


    # -- from the centre -----------------------------------------------------------------------
    def _on_frame(self, item) -> None:
        if isinstance(item, codec.FrameError):
            self.count("bad_frames")
            # loud the first time, then only counted (status shows it): garbage must not flood the journal
            (log.warning if self.counts["bad_frames"] == 1 else log.debug)(
                "gb26875 centre %s sent a bad frame: %s", self.address, item)
            if item.serial is not None:
                self._answer(codec.DENY, serial=item.serial)  # §6.5: a check error is denied
            return
        if item.destination != self.source or item.source != self.destination:
            self.count("misaddressed")
            if self.counts["misaddressed"] == 1:  # a wrong [gb26875] address: say it once, plainly
                log.warning("gb26875: a frame from %s to %s is not from the configured centre %s to this "
                            "device %s: dropped (check [gb26875] source/destination)",
                            codec.address_text(item.source), codec.address_text(item.destination),
                            self.cfg.destination, self.cfg.source)
            return
        self.count("frames_in")
        if item.command in (codec.CONFIRM, codec.DENY):
            self._reply(item)
        elif item.command == codec.CONTROL:
            self._control(item)
        elif item.command == codec.REQUEST:
            self._request(item)
        else:
            self.count("ignored")

    def _reply(self, item: codec.Frame) -> None:
        f = self.inflight
        if f is None or item.serial != f.serial:
            self.count("stray_replies")
            return
        if item.command == codec.DENY and f.row is None:
            # a centre that does not take empty send-data frames still answered: it is there
            self.count("keepalives_denied")
        elif item.command == codec.DENY:
            f.denied += 1
            self.count("denied")
            self._resend_or_give_up(time.monotonic(), "denied")
            return
        self.inflight = None
        self._idle_since = time.monotonic()
        self.declare_recovered()
        if f.probe_for is not None:
            self.ignored(f.probe_for, "keep-alives", 1 + self.cfg.resends)
        if f.row is not None:
            self.confirmed_row(f.row)
            self.count("confirmed")
            if f.attempts > 1:
                self.count("confirmed_after_resend")

    def _unit(self, item: codec.Frame):
        try:
            return dt.decode(item.data)
        except dt.DataError as e:
            log.warning("gb26875 centre %s: %s", self.address, e)
            return None

    def _control(self, item: codec.Frame) -> None:
        unit = self._unit(item)
        if unit is None or unit["type"] not in (dt.INIT_DEVICE, dt.SYNC_CLOCK, dt.DUTY_CHECK):
            self._answer(codec.DENY, serial=item.serial)
            return
        if unit["type"] == dt.SYNC_CLOCK:
            centre = codec.time_of(unit["time_label"])
            if centre is None:
                self._answer(codec.DENY, serial=item.serial)
                return
            # the Pi's clock belongs to NTP: the centre's time is kept as an offset, not set
            self.clock_offset_s = round(centre - time.time(), 3)
            self.count("clock_syncs")
        elif unit["type"] == dt.DUTY_CHECK:
            self.last_duty_check = envelope.iso_ms(time.time())
            self.count("duty_checks")
        if not self._answer(codec.CONFIRM, serial=item.serial):
            return
        if unit["type"] == dt.DUTY_CHECK:
            # an unattended gateway answers the duty check itself: operation record, 查岗应答 bit
            frame, serial = self._frame(codec.SEND, dt.device_operation(dt.OP_DUTY_ANSWER, 0, codec.time_label()))
            if self.inflight is None:
                self.inflight = _Inflight(None, frame, serial, time.monotonic() + self.cfg.confirm_timeout_s)
            self.send(frame)

    def _request(self, item: codec.Frame) -> None:
        unit = self._unit(item)
        label = codec.time_label()
        if unit is not None and unit["type"] == dt.READ_DEVICE_STATE:
            self._answer(codec.ANSWER, dt.device_state(self._device_bits(), label), serial=item.serial)
        elif unit is not None and unit["type"] == dt.READ_DEVICE_TIME:
            self._answer(codec.ANSWER, dt.device_time(label), serial=item.serial)
        else:
            self._answer(codec.DENY, serial=item.serial)

    def _device_bits(self) -> int:
        return self.mapping.device_bits

    def _answer(self, command: int, data: bytes = b"", *, serial: int) -> bool:
        if not self.answer_bucket.take():
            self.count("answers_dropped")  # a flood of requests must not starve the alarms
            return False
        frame, _ = self._frame(command, data, serial=serial)
        self.send(frame)
        self.count("answered")
        return True
