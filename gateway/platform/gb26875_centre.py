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

import json
import socket
import threading
import time

from gateway.sync.gb26875 import codec, datatypes as dt


class Gb26875Centre:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, address: str = "000000000000",
                 device: str = "000000000000", deny: int = 0, stall: int = 0, drop: int = 0, cut: int = 0,
                 echo=None):
        self.host = host
        self.address = codec.address(address)
        self.device = codec.address(device)  # whom requests go to until a device has sent a frame
        self._devices: dict = {}  # connection -> the source address its frames carry
        self.deny, self.stall, self.drop, self.cut = deny, stall, drop, cut
        self.echo = echo  # callable(str) for each JSON line
        self.ignore = None  # callable(decoded unit) -> True: never answer such data frames (tests)
        self.deny_keepalives = False  # some centres deny a send-data frame without a data unit
        self.lines: list[dict] = []  # everything decoded, in order
        self._lock = threading.Lock()
        self._serial = 0
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self.sessions: list[list] = []  # [opened, closed] (monotonic; closed None while open), per connection
        self._srv = socket.create_server((host, port))
        self._srv.settimeout(0.2)
        self.port = self._srv.getsockname()[1]
        self._threads: list[threading.Thread] = []

    # -- what the tests read -------------------------------------------------------------------
    def confirmed(self) -> list[dict]:
        """Decoded data units the centre confirmed, in order (keep-alives left out)."""
        with self._lock:
            return [ln["unit"] for ln in self.lines if ln.get("answer") == "confirm" and ln.get("unit")]

    def of(self, command: str) -> list[dict]:
        with self._lock:
            return [ln for ln in self.lines if ln.get("frame", {}).get("command") == command]

    def connections(self) -> int:
        with self._lock:
            return len(self._conns)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "Gb26875Centre":
        t = threading.Thread(target=self._accept, name="gb26875-centre", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._srv.close()
        with self._lock:
            for c in self._conns:
                try:
                    c.close()
                except OSError:
                    pass
        for t in self._threads:
            t.join(2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

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

    def send_raw(self, data: bytes) -> None:
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.sendall(data)
            except OSError:
                pass

    # -- internals -----------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            session = [time.monotonic(), None]
            with self._lock:
                self._conns.append(conn)
                self.sessions.append(session)
            t = threading.Thread(target=self._serve, args=(conn, f"{peer[0]}:{peer[1]}", session), daemon=True)
            t.start()
            self._threads.append(t)

    def _log(self, line: dict) -> None:
        line = {"t": time.strftime("%Y-%m-%dT%H:%M:%S"), **line}
        with self._lock:
            self.lines.append(line)
        if self.echo is not None:
            self.echo(json.dumps(line, ensure_ascii=False))

    def _send(self, conn, frame: codec.Frame, device: bytes | None) -> None:
        if device is not None:
            frame = codec.Frame(frame.serial, frame.command, self.address, device, frame.data, frame.time_label)
        try:
            conn.sendall(frame.encode())
        except OSError:
            pass

    def _take(self, name: str) -> bool:
        n = getattr(self, name)
        if n == 0:
            return False
        if n > 0:
            setattr(self, name, n - 1)
        return True

    def _serve(self, conn: socket.socket, peer: str, session: list) -> None:
        reader = codec.FrameReader()
        conn.settimeout(0.2)
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                for item in reader.feed(data):
                    if not self._handle(conn, peer, item):
                        return
        finally:
            with self._lock:
                session[1] = time.monotonic()
                if conn in self._conns:
                    self._conns.remove(conn)
                self._devices.pop(conn, None)
            conn.close()

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
