"""Hostile Modbus peers: a real TCP server (and, for RTU, the slave end of a socat pty pair)
whose every reply is written by the test. `answer(request) -> [(delay_s, bytes), ...]` is
called for each request the peer reads; the chunks are sent in order, each after its delay,
so a test can send a wrong frame, a trickle, or nothing."""

from __future__ import annotations

import socket
import struct
import threading

from pymodbus.framer import FramerRTU


def rtu_crc(body: bytes) -> bytes:
    return FramerRTU.compute_CRC(body).to_bytes(2, "big")


def registers_reply_pdu(function: int, values: list[int]) -> bytes:
    return bytes([function, 2 * len(values)]) + b"".join(struct.pack(">H", v) for v in values)


def tcp_reply(request: bytes, values: list[int]) -> bytes:
    """The valid Modbus TCP answer to an FC03/FC04 `request` frame."""
    tid, unit, function = request[0:2], request[6], request[7]
    pdu = registers_reply_pdu(function, values)
    return tid + b"\0\0" + struct.pack(">H", len(pdu) + 1) + bytes([unit]) + pdu


def rtu_reply(request: bytes, values: list[int]) -> bytes:
    body = bytes([request[0]]) + registers_reply_pdu(request[1], values)
    return body + rtu_crc(body)


class TcpPeer:
    """A Modbus TCP server on 127.0.0.1:<free port>; one thread per connection."""

    def __init__(self, answer):
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.address = self._listener.getsockname()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()

    def __enter__(self) -> TcpPeer:
        t = threading.Thread(target=self._accept, name="hostile-tcp-peer", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._socks.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), name="hostile-tcp-conn", daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        buf = b""
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except (TimeoutError, socket.timeout):
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 12:  # an FC03/FC04 request is 12 bytes
                    request, buf = buf[:12], buf[12:]
                    with self._lock:
                        self.requests.append(request)
                    for delay, data in self.answer(request):
                        if delay and self._stop.wait(delay):
                            return
                        try:
                            conn.sendall(data)
                        except OSError:
                            return  # the master hung up on us (it reset the connection)


def trickle(data: bytes, every_s: float) -> list[tuple[float, bytes]]:
    """One byte at a time, `every_s` apart."""
    return [(every_s if i else 0.0, data[i:i + 1]) for i in range(len(data))]


class RtuPeer:
    """The slave end of a pty pair: reads each 8-byte request frame and writes `answer`'s
    chunks. A pty ignores the baud rate, so delays are the test's own."""

    def __init__(self, path: str, answer):
        import serial

        self.answer = answer
        self.requests: list[bytes] = []
        self.port = serial.serial_for_url(path, baudrate=9600, timeout=0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="hostile-rtu-peer", daemon=True)

    def __enter__(self) -> RtuPeer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.port.close()

    def _serve(self) -> None:
        buf = b""
        while not self._stop.is_set():
            buf += self.port.read(8 - len(buf))
            if len(buf) < 8:
                continue
            request, buf = buf, b""
            self.requests.append(request)
            for delay, data in self.answer(request):
                if delay and self._stop.wait(delay):
                    return
                self.port.write(data)
                self.port.flush()
