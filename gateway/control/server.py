"""The daemon's end of the control socket: the CLI's way into the running gateway.

Each client gets its own thread, so a slow, silent or vanished client only ever stalls itself:
a whole request has a deadline (not each recv: a byte every few seconds does not keep a slot),
writes have deadlines, one user holds at most a quarter of the slots, `silence` and `ack` get a
reserved slot when the others are taken (peers.py), the accept loop never talks to clients, and no
lock of the server is held while a handler runs. Handlers run in the client's thread; they must be
thread-safe and must never block the safety path (read a snapshot, queue a command). Every
request's `args["by"]` is the kernel's word for who asked (SO_PEERCRED), whatever the client sent.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import selectors
import socket
import stat
import threading
import time
from collections.abc import Callable

from gateway import __version__
from gateway.errors import ControlError, GatewayError

from . import protocol as p
from .peers import GENERAL, RESERVED, Peer, Slots, peer_of
from .streaming import Stream, hang_up

log = logging.getLogger("gateway.control")

Handler = Callable[[dict], object]
StreamHandler = Callable[[dict, Stream], None]
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes including the NUL


class _TooLarge(Exception):
    """Internal signal: the client sent more than MAX_REQUEST_BYTES without a newline."""


class ControlServer:
    """The daemon's control socket. `handlers` answer one request with one result; `stream_handlers`
    write many (``events --follow``). Both receive the request's `args` dict. GatewayErrors raised by
    a handler reach the technician as their message; anything else as "internal error" plus a
    traceback in the journal."""

    def __init__(self, path: str, handlers: dict[str, Handler],
                 stream_handlers: dict[str, StreamHandler] | None = None,
                 mode: int = 0o660, group: str | int | None = None, *,
                 max_clients: int = 16, request_timeout_s: float = 10.0, send_timeout_s: float = 2.0,
                 per_peer_max: int | None = None, reserved_timeout_s: float = 2.0):
        self.path = path
        self.handlers = {"ping": self._ping, **handlers}
        self.stream_handlers = dict(stream_handlers or {})
        self.mode = mode
        self.group = group
        self.max_clients = max_clients
        self.request_timeout_s = request_timeout_s  # for a whole request line, from when we wait for it
        self.send_timeout_s = send_timeout_s
        self.reserved_timeout_s = reserved_timeout_s
        self._slots = Slots(max_clients, per_peer_max or max(1, max_clients // 4))
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._accept_thread: threading.Thread | None = None
        self._clients: dict[threading.Thread, socket.socket] = {}
        self._clients_lock = threading.Lock()
        self._refusing = 0
        self._threads: set[threading.Thread] = set()  # every client thread not yet joined, for stop()

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> "ControlServer":
        self._listener = self._bind()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="control-accept", daemon=True)
        self._accept_thread.start()
        log.info("control socket listening on %s", self.path)
        return self

    def stop(self, timeout: float = 2.0) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._wake_w.send(b"x")
        if self._accept_thread:
            self._accept_thread.join(timeout)
        with self._clients_lock:
            conns = list(self._clients.values())
            threads = list(self._threads)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes the client thread out of recv/select
            except OSError:
                log.debug("control client already gone at stop")
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("control client thread %s did not finish within %.1f s (a stream handler "
                            "that never checks stream.alive()?)", thread.name, timeout)
        if self._listener:
            self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        self._unlink_if_ours()

    def __enter__(self) -> "ControlServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def client_count(self) -> int:
        with self._clients_lock:
            return len(self._clients)

    # -- the socket file ----------------------------------------------------------------------
    def _bind(self) -> socket.socket:
        if len(os.fsencode(self.path)) > _SUN_PATH_MAX:
            raise ControlError(f"control socket path too long ({len(os.fsencode(self.path))} bytes, the "
                               f"limit is {_SUN_PATH_MAX}): set [gateway] control_socket to a shorter path")
        parent = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(parent, mode=0o750, exist_ok=True)
        except OSError as exc:
            raise ControlError(f"cannot create the directory for the control socket {self.path}: {exc}") from exc
        self._refuse_if_taken()
        gid = self._gid()
        # Bind under a temporary name, set mode and group, then rename into place: the socket is
        # never reachable with the wrong permissions, and we never touch the process-wide umask
        # while other threads (the outbox) create files.
        tmp = os.path.join(parent, f".control-{os.getpid()}.tmp")
        if len(os.fsencode(tmp)) > _SUN_PATH_MAX:
            tmp = self.path  # rare: a very long directory; fall back to binding in place
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            sock.bind(tmp)
            os.chmod(tmp, self.mode)
            if gid is not None:
                os.chown(tmp, -1, gid)
            sock.listen(self.max_clients)
            if tmp != self.path:
                os.replace(tmp, self.path)  # atomically replaces a stale socket left by a crash
            st = os.stat(self.path)
            self._inode = (st.st_dev, st.st_ino)
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot create the control socket {self.path}: {exc}") from exc
        return sock

    def _refuse_if_taken(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(f"{self.path} exists and is not a socket; refusing to replace it "
                               f"(remove it, or set [gateway] control_socket to another path)")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(0.5)
        try:
            probe.connect(self.path)
        except (ConnectionRefusedError, FileNotFoundError):
            log.info("replacing stale control socket %s (left by a daemon that did not stop cleanly)", self.path)
            return
        except OSError as exc:
            raise ControlError(f"cannot probe the existing control socket {self.path}: {exc}") from exc
        finally:
            probe.close()
        raise ControlError(f"another gateway daemon is already listening on {self.path}; "
                           f"stop it first (sudo systemctl stop community-gateway)")

    def _gid(self) -> int | None:
        if self.group is None or isinstance(self.group, int):
            return self.group
        try:
            return grp.getgrnam(self.group).gr_gid
        except KeyError:
            raise ControlError(f"group '{self.group}' for the control socket does not exist "
                               f"(sudo groupadd --system {self.group})") from None

    def _unlink_if_ours(self) -> None:
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass  # already gone (someone cleaned /run): nothing to remove

    # -- serving --------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r or self._stopping.is_set():
                        return
                    try:
                        conn, _ = self._listener.accept()
                    except OSError as exc:  # EMFILE and friends: back off instead of spinning
                        log.warning("control socket accept failed: %s", exc)
                        self._stopping.wait(0.2)
                        continue
                    self._admit(conn)

    def _admit(self, conn: socket.socket) -> None:
        peer = peer_of(conn)  # one getsockopt: the name lookup (NSS) waits for the client's thread
        kind = self._slots.take(peer)
        with self._clients_lock:
            if kind is None:
                full = True
            else:
                full = False
                thread = threading.Thread(target=self._serve, args=(conn, peer, kind), daemon=True,
                                          name=f"control-client-{conn.fileno()}")
                self._clients[thread] = conn
                self._threads = {t for t in self._threads if t.is_alive()}
                self._threads.add(thread)
        if full:
            self._refuse(conn)
            return
        thread.start()

    def _refuse(self, conn: socket.socket) -> None:
        """Tell a client over the limit that we are busy. The reply is sent and the connection drained
        in a short-lived thread (closing on unread input would reset the reply away); past a second
        limit of such threads, a flood just gets closed."""
        with self._clients_lock:
            if self._refusing >= self.max_clients:
                conn.close()
                return
            self._refusing += 1

        def refuse() -> None:
            try:
                self._reply(conn, p.error("the gateway daemon is busy serving other clients; try again", p.BUSY))
                hang_up(conn)
            finally:
                conn.close()
                with self._clients_lock:
                    self._refusing -= 1

        threading.Thread(target=refuse, name="control-busy", daemon=True).start()

    def _serve(self, conn: socket.socket, peer: Peer, kind: str = GENERAL) -> None:
        buf = bytearray()
        who = peer.label()
        reserved = kind == RESERVED
        timeout = self.reserved_timeout_s if reserved else self.request_timeout_s
        try:
            while not self._stopping.is_set():
                try:
                    line = self._read_line(conn, buf, timeout)
                except _TooLarge:
                    self._reply(conn, p.error(f"request larger than {p.MAX_REQUEST_BYTES} bytes", p.TOO_LARGE))
                    hang_up(conn)  # no way to find the next request boundary in a flood
                    return
                except OSError as exc:  # idle past the deadline, reset, shut down by stop()
                    log.debug("control client read ended: %s", exc)
                    return
                if line is None:
                    return
                if not line.strip():
                    continue
                if reserved:
                    # a reserved slot serves one request: it is free again before the answer leaves, so
                    # the technician's next silence/ack (sent as soon as this one is answered) gets it
                    self._slots.give_back(kind, peer)
                    kind = None
                if not self._dispatch(conn, line, who, p.RESERVED_COMMANDS if reserved else None) or reserved:
                    return
        finally:
            with self._clients_lock:
                self._clients.pop(threading.current_thread(), None)
            if kind is not None:
                self._slots.give_back(kind, peer)
            conn.close()

    def _read_line(self, conn: socket.socket, buf: bytearray, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout  # for the whole line: a trickle does not renew it
        while True:
            end = buf.find(b"\n")
            if end >= 0:
                if end > p.MAX_REQUEST_BYTES:
                    raise _TooLarge()
                line = bytes(buf[:end])
                del buf[:end + 1]
                return line
            if len(buf) > p.MAX_REQUEST_BYTES:
                raise _TooLarge()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no whole request within {timeout:g} s")
            conn.settimeout(left)
            chunk = conn.recv(65536)
            if not chunk:
                if buf:
                    log.debug("control client hung up mid-request (%d bytes unanswered)", len(buf))
                return None
            buf += chunk

    def _dispatch(self, conn: socket.socket, line: bytes, who: str = "cli:unknown", only=None) -> bool:
        """Serve one request line, as asked by `who`; with `only`, just those commands (a reserved
        slot). Returns False when the connection is finished."""
        try:
            req = json.loads(line)
        except (UnicodeDecodeError, ValueError) as exc:
            return self._reply(conn, p.error(f"malformed request (not JSON): {exc}", p.BAD_JSON))
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            return self._reply(conn, p.error('a request is a JSON object like {"cmd": "status", "args": {}}',
                                             p.BAD_REQUEST))
        cmd, args = req["cmd"], req.get("args") or {}
        if not isinstance(args, dict):
            return self._reply(conn, p.error("'args' must be a JSON object", p.BAD_REQUEST))
        if only is not None and cmd not in only:
            return self._reply(conn, p.error(f"the gateway daemon is busy serving other clients (only "
                                             f"{' and '.join(only)} are served now); try again", p.BUSY))
        args = dict(args, by=who)  # not what the client claims
        if cmd in self.stream_handlers:
            self._stream(conn, cmd, args)
            return False
        handler = self.handlers.get(cmd)
        if handler is None:
            known = ", ".join(sorted([*self.handlers, *self.stream_handlers]))
            return self._reply(conn, p.error(f"unknown command '{cmd}' (known: {known})", p.UNKNOWN_COMMAND))
        try:
            reply = p.ok(handler(args))
            data = p.encode(reply)
        except GatewayError as exc:
            data = p.encode(_error_reply(exc))
        except Exception:  # a bug in a handler must not take the control socket (or the daemon) down
            log.exception("control command '%s' failed", cmd)
            data = p.encode(p.error("internal error", p.INTERNAL))
        return self._send(conn, data)

    def _stream(self, conn: socket.socket, cmd: str, args: dict) -> None:
        stream = Stream(conn, self._stopping, self.send_timeout_s)
        if not stream.send(p.STREAM_HEADER):
            return
        try:
            self.stream_handlers[cmd](args, stream)
        except GatewayError as exc:
            stream.send(_error_reply(exc))
            return
        except Exception:  # same as for one-shot handlers: log it, tell the client, keep serving others
            log.exception("control stream '%s' failed", cmd)
            stream.send(p.error("internal error", p.INTERNAL))
            return
        if stream.alive():
            stream.send(p.STREAM_END)

    def _reply(self, conn: socket.socket, message: dict) -> bool:
        return self._send(conn, p.encode(message))

    def _send(self, conn: socket.socket, data: bytes) -> bool:
        try:
            conn.settimeout(self.send_timeout_s)
            conn.sendall(data)
            return True
        except OSError as exc:  # the client is gone or not reading: its problem, not the daemon's
            log.info("control client dropped: %s", exc)
            return False

    def _ping(self, args: dict) -> dict:
        return {"pid": os.getpid(), "version": __version__}


def _error_reply(exc: GatewayError) -> dict:
    return p.error(str(exc), getattr(exc, "code", None) or type(exc).__name__)
