"""A streaming serial sensor served on a TCP port, for configs whose serial bus is a
`socket://host:port` URL (the demo): pyserial's socket:// client on the gateway side reads
exactly what a UART would deliver."""

from __future__ import annotations

import socket
import threading

from drivers.sim.serial_emitter import A02yyuwEmitter
from gateway.errors import BusError


class _Fanout:
    """Looks like the serial port the emitter writes to; sends to every connected reader."""

    def __init__(self, host: str, port: int):
        self._srv = socket.create_server((host, port), reuse_port=False)
        self._srv.settimeout(0.2)
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=f"sim-serial-{port}", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(1.0)
            with self._lock:
                self._clients.append(conn)

    def write(self, data: bytes) -> int:
        with self._lock:
            for c in list(self._clients):
                try:
                    c.sendall(data)
                except OSError:  # the reader went away; a UART would not care either
                    self._clients.remove(c)
                    c.close()
        return len(data)

    def close(self) -> None:
        self._stop.set()
        self._srv.close()
        self._thread.join(2)
        with self._lock:
            for c in self._clients:
                c.close()
            self._clients.clear()


class SocketA02yyuw(A02yyuwEmitter):
    """An A02YYUW streaming to whoever connects to host:port."""

    def __init__(self, host: str, port: int, distance_mm: int, hz: float = 10.0):
        super().__init__(f"socket://{host}:{port}", distance_mm, hz)
        self._addr = (host, port)

    def start(self):
        if self._thread is not None:
            return self
        try:
            self._serial = _Fanout(*self._addr)
        except OSError as e:
            raise BusError(f"simulated sensor cannot listen on {self._addr[0]}:{self._addr[1]}: {e}") from e
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"sim-a02yyuw-{self._addr[1]}")
        self._thread.start()
        return self
