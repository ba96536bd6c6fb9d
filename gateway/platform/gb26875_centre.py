"""A reference GB/T 26875.3 monitoring centre (`gateway-platform gb26875-centre`): accepts devices
over TCP, confirms each send-data frame, decodes it to a JSON line, and can be told to misbehave so
the gateway's uplink is tested against a real peer:

    deny=N   deny (command 6) the next N data frames (-1: all)
    stall=N  never answer the next N data frames (-1: none ever)
    drop=N   close the connection on the next N data frames, without answering
    cut=N    send half of the confirm to the next N data frames, then close (a line lost mid-frame)

Keep-alives (send-data without a data unit) are confirmed unless stalling all. `request()` sends the
centre's own commands (duty check, clock sync, read device state/time) to every connected device.
"""

from __future__ import annotations

from gateway.sync.gb26875 import codec, datatypes as dt

from .tcp_centre import TcpCentre


class Gb26875Centre(TcpCentre):
    name = "gb26875-centre"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, address: str = "000000000000",
                 device: str = "000000000000", deny: int = 0, stall: int = 0, drop: int = 0, cut: int = 0,
                 echo=None):
        super().__init__(host, port, deny=deny, stall=stall, drop=drop, cut=cut, echo=echo)
        self.address = codec.address(address)
        self.device = codec.address(device)  # whom requests go to until a device has sent a frame
        self._devices: dict = {}  # connection -> the source address its frames carry
        self.deny_keepalives = False  # some centres deny a send-data frame without a data unit
        self._serial = 0

    # -- what the tests read -------------------------------------------------------------------
    def confirmed(self) -> list[dict]:
        """Decoded data units the centre confirmed, in order (keep-alives left out)."""
        with self._lock:
            return [ln["unit"] for ln in self.lines if ln.get("answer") == "confirm" and ln.get("unit")]

    def of(self, command: str) -> list[dict]:
        with self._lock:
            return [ln for ln in self.lines if ln.get("frame", {}).get("command") == command]

    def reader(self):
        return codec.FrameReader()

    def _closed(self, conn) -> None:
        self._devices.pop(conn, None)

    # -- the centre's own commands -------------------------------------------------------------
    def request(self, kind: str, minutes: int = 10) -> int:
        """Send duty_check | sync_clock | init | read_state | read_time | unknown_request to every device."""
        label = codec.time_label()
        command, data = {
            "duty_check": (codec.CONTROL, bytes([dt.DUTY_CHECK, 1, minutes])),
            "sync_clock": (codec.CONTROL, bytes([dt.SYNC_CLOCK, 1]) + bytes(label)),
            "init": (codec.CONTROL, bytes([dt.INIT_DEVICE, 1, 0])),
            "read_state": (codec.REQUEST, bytes([dt.READ_DEVICE_STATE, 1, 0])),
            "read_time": (codec.REQUEST, bytes([dt.READ_DEVICE_TIME, 1, 0])),
            "unknown_request": (codec.REQUEST, bytes([0x7F, 1, 0])),
        }[kind]
        with self._lock:
            self._serial = (self._serial + 1) & 0xFFFF
            serial = self._serial
            conns = list(self._conns)
        for c in conns:
            device = self._devices.get(c, self.device)
            self._send(c, codec.Frame(serial, command, self.address, device, data, label), None)
        return serial

    # -- internals -----------------------------------------------------------------------------
    def _send(self, conn, frame: codec.Frame, device: bytes | None) -> None:
        if device is not None:
            frame = codec.Frame(frame.serial, frame.command, self.address, device, frame.data, frame.time_label)
        try:
            conn.sendall(frame.encode())
        except OSError:
            pass

    def _handle(self, conn, peer: str, item) -> bool:
        if isinstance(item, codec.FrameError):
            self._log({"peer": peer, "error": str(item)})
            if item.serial is not None:
                self._send(conn, codec.Frame(item.serial, codec.DENY, self.address, b"\x00" * 6), None)
            return True
        self._devices[conn] = item.source
        line = {"peer": peer, "frame": item.as_dict()}
        if item.data:
            try:
                line["unit"] = dt.decode(item.data)
            except dt.DataError as e:
                line["unit_error"] = str(e)
        if item.command != codec.SEND:
            self._log(line | {"answer": "none"})  # the device's confirm/answer to our request
            return True
        data_frame = bool(item.data)
        if data_frame and self._take("drop"):
            self._log(line | {"answer": "dropped"})
            return False
        if data_frame and self.ignore is not None and "unit" in line and self.ignore(line["unit"]):
            self._log(line | {"answer": "ignored"})
            return True
        if (data_frame or self.stall < 0) and self._take("stall"):
            self._log(line | {"answer": "none"})
            return True
        if data_frame and self._take("cut"):
            half = codec.Frame(item.serial, codec.CONFIRM, self.address, item.source, b"", codec.time_label()).encode()
            self._log(line | {"answer": "cut"})
            try:
                conn.sendall(half[:len(half) // 2])
            except OSError:
                pass
            return False
        deny = self._take("deny") if data_frame else self.deny_keepalives
        answer = codec.DENY if deny else codec.CONFIRM
        self._log(line | {"answer": "deny" if answer == codec.DENY else "confirm"})
        self._send(conn, codec.Frame(item.serial, answer, self.address, item.source, b"", codec.time_label()),
                   None)
        return True
