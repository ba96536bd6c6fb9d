"""A reference SL 651-2014 centre (`gateway-platform sl651-centre`): accepts stations over TCP,
confirms each report (M2: same function and serial, end ESC = stay online), decodes it to a JSON
line, and can be told to misbehave: deny=N (answer N reports with a wrong serial: not a
confirmation), stall=N (answer nothing to N reports; -1: never), drop=N (close the line on N reports),
cut=N (send half of the confirm to N reports, then close: a line lost mid-frame).
A keep-alive (2F) has no answer, as the standard says."""

from __future__ import annotations

import json
import socket
import threading
import time

from gateway.sync.sl651 import codec


class Sl651Centre:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, deny: int = 0, stall: int = 0, drop: int = 0,
                 cut: int = 0, end: int = codec.ESC, echo=None):
        self.deny, self.stall, self.drop, self.cut, self.end = deny, stall, drop, cut, end
        self.echo = echo
        self.ignore = None  # callable(decoded report) -> True: never confirm such reports (tests)
        self.lines: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._srv = socket.create_server((host, port))
        self._srv.settimeout(0.2)
        self.port = self._srv.getsockname()[1]

    def confirmed(self, function: str | None = None) -> list[dict]:
        with self._lock:
            return [ln["report"] | {"function": ln["frame"]["function"]} for ln in self.lines
                    if ln.get("answer") == "confirm" and "report" in ln
                    and (function is None or ln["frame"]["function"] == function)]

    def of(self, function: str) -> list[dict]:
        with self._lock:
            return [ln for ln in self.lines if ln.get("frame", {}).get("function") == function]

    def connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def start(self) -> "Sl651Centre":
        t = threading.Thread(target=self._accept, name="sl651-centre", daemon=True)
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

    def send_raw(self, data: bytes) -> None:
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.sendall(data)
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn, f"{peer[0]}:{peer[1]}"), daemon=True)
            t.start()
            self._threads.append(t)

    def _log(self, line: dict) -> None:
        line = {"t": time.strftime("%Y-%m-%dT%H:%M:%S"), **line}
        with self._lock:
            self.lines.append(line)
        if self.echo is not None:
            self.echo(json.dumps(line, ensure_ascii=False))

    def _take(self, name: str) -> bool:
        n = getattr(self, name)
        if n == 0:
            return False
        if n > 0:
            setattr(self, name, n - 1)
        return True

    def _serve(self, conn: socket.socket, peer: str) -> None:
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
                if conn in self._conns:
                    self._conns.remove(conn)
            conn.close()

    def _handle(self, conn, peer: str, item) -> bool:
        if isinstance(item, codec.FrameError):
            self._log({"peer": peer, "error": str(item)})  # invalid: not answered (M2)
            return True
        line = {"peer": peer, "frame": item.as_dict()}
        if item.function == codec.KEEPALIVE or not item.up:
            self._log(line | {"answer": "none"})
            return True
        try:
            line["report"] = codec.parse_report(item.body)
        except codec.FrameError as e:
            line["report_error"] = str(e)
            self._log(line | {"answer": "none"})
            return True
        if self.ignore is not None and self.ignore(line["report"] | {"function": line["frame"]["function"]}):
            self._log(line | {"answer": "ignored"})
            return True
        if self._take("drop"):
            self._log(line | {"answer": "dropped"})
            return False
        if self._take("stall"):
            self._log(line | {"answer": "none"})
            return True
        serial = item.serial or 0
        answer = "confirm"
        if self._take("deny"):
            serial, answer = (serial + 1) & 0xFFFF, "wrong-serial"
        # §6.6.4.5-7 down body: the report's serial and the centre's send time
        body = serial.to_bytes(2, "big") + codec.bcd_time()
        down = codec.Frame(item.centre, item.station, item.password, item.function, body, up=False, end=self.end)
        cut = self._take("cut")
        self._log(line | {"answer": "cut" if cut else answer})
        raw = down.encode()
        try:
            conn.sendall(raw[:len(raw) // 2] if cut else raw)
        except OSError:
            return False
        return not cut
