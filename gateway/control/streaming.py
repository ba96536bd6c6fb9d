"""One client connection's writing side: the stream a streaming handler writes to, and the polite
hang-up after an error reply."""

from __future__ import annotations

import logging
import select
import socket
import threading
import time

from . import protocol as p

log = logging.getLogger("gateway.control")


class Stream:
    """What a stream handler writes to: `stream(item) -> bool` sends one item and says whether the
    client is still there. `alive()` and `wait(seconds)` let a quiet follow notice a client that hung
    up (or a server that stops) without having anything to send."""

    def __init__(self, conn: socket.socket, stopping: threading.Event, send_timeout_s: float):
        self._conn = conn
        self._stopping = stopping
        self._send_timeout_s = send_timeout_s
        self._gone = False

    def __call__(self, item: object) -> bool:
        if not self.alive():
            return False
        return self.send(p.ok(item))

    def send(self, message: dict) -> bool:
        data = p.encode(message)  # a TypeError here is the handler's bug: it surfaces as "internal error"
        if self._gone:
            return False
        try:
            self._conn.settimeout(self._send_timeout_s)
            self._conn.sendall(data)
            return True
        except OSError as exc:  # timeout (client not reading), EPIPE, reset: drop the client, keep serving
            log.info("control client dropped while streaming: %s", exc)
            self._gone = True
            return False

    def alive(self) -> bool:
        if self._gone or self._stopping.is_set():
            return False
        return self._peer_still_there(0)

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, returning early (False) when the client hangs up or the server stops."""
        if self._gone or self._stopping.is_set():
            return False
        return self._peer_still_there(seconds) and not self._stopping.is_set()

    def _peer_still_there(self, seconds: float) -> bool:
        try:
            readable, _, _ = select.select([self._conn], [], [], seconds)
            # Readable on a stream we never read from again means EOF (hang-up) or junk; peek to tell
            if readable and self._conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                self._gone = True
        except (OSError, ValueError):  # reset, or the socket was shut down by stop()
            self._gone = True
        return not self._gone


def hang_up(conn: socket.socket, linger_s: float = 0.5, drain_max: int = 1 << 20) -> None:
    """Close after an error reply without losing it: closing with unread input makes the kernel
    send a reset, which throws away the reply the client has not read yet. So stop writing, and
    swallow what the client still sends for a moment before the caller closes."""
    try:
        conn.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + linger_s
        drained = 0
        while drained < drain_max and (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            chunk = conn.recv(65536)
            if not chunk:
                return
            drained += len(chunk)
    except OSError as exc:  # timed out or reset while draining: the reply went out as far as it could
        log.debug("control client hang-up: %s", exc)
