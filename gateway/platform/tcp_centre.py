"""What the reference centres (gb26875_centre.py, sl651_centre.py) share: a TCP server that accepts
devices, reads each connection through the protocol's frame reader, logs every decoded frame as a
JSON line, and counts down the misbehaviours a test asks for (deny/stall/drop/cut=N; -1: always).

A subclass gives `name`, `reader()` (a fresh codec.FrameReader: `.feed(bytes)` -> frames and
FrameErrors) and `_handle(conn, peer, item) -> bool` (False: close the connection)."""

from __future__ import annotations

import json
import socket
import threading
import time


class TcpCentre:
    name = "centre"

    def __init__(self, host: str, port: int, *, deny: int = 0, stall: int = 0, drop: int = 0, cut: int = 0,
                 echo=None):
        self.host = host
        self.deny, self.stall, self.drop, self.cut = deny, stall, drop, cut
        self.echo = echo  # callable(str) for each JSON line
        self.ignore = None  # callable(decoded data) -> True: never answer such frames (tests)
        self.lines: list[dict] = []  # everything decoded, in order
        self.sessions: list[list] = []  # [opened, closed] (monotonic; closed None while open), per connection
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._srv = socket.create_server((host, port))
        self._srv.settimeout(0.2)
        self.port = self._srv.getsockname()[1]

    # -- what the subclass gives ---------------------------------------------------------------
    def reader(self):
        raise NotImplementedError

    def _handle(self, conn, peer: str, item) -> bool:
        raise NotImplementedError

    def _closed(self, conn) -> None:
        """A connection ended (under the lock)."""

    # -- lifecycle -----------------------------------------------------------------------------
    def connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def start(self):
        t = threading.Thread(target=self._accept, name=self.name, daemon=True)
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

    def _serve(self, conn: socket.socket, peer: str, session: list) -> None:
        reader = self.reader()
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
                self._closed(conn)
            conn.close()

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
