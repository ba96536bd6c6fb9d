"""The CLI's end of the control socket. Every failure is a ControlError whose message says what to
do next: start the daemon, join the group, read the journal."""

from __future__ import annotations

import errno
import grp
import json
import os
import socket
import time
from collections.abc import Iterator

from gateway.errors import ControlError

from . import protocol as p
from .errors import ControlTimeout, DaemonNotRunning, RemoteError, SocketPermissionDenied

_MAX_REPLY_BYTES = 16 * 1024 * 1024  # a status of a few hundred sensors is ~100 KiB


def call(path: str, cmd: str, args: dict | None = None, timeout: float = 5.0):
    """Send one command to the running daemon and return its result."""
    sock = _connect(path, timeout)
    try:
        deadline = time.monotonic() + timeout
        _send(sock, path, cmd, args, timeout)
        reply = _LineReader(sock, path, timeout).next(deadline)
    finally:
        sock.close()
    if reply is None:
        raise ControlError(f"the gateway daemon closed the connection on {path} without answering "
                           f"(see journalctl -u community-gateway -n 50)")
    if reply.get("stream"):
        raise ControlError(f"'{cmd}' is a streaming command: use stream(), not call()")
    return _result(reply)


def stream(path: str, cmd: str, args: dict | None = None, timeout: float = 5.0) -> Iterator[object]:
    """Items of a streaming command, until the daemon ends it. Connects and waits for the daemon's
    first answer now (so "not running" is raised here, not at the first item); `timeout` applies to
    that first answer only: a follow may then stay quiet for hours. Closing the iterator (or Ctrl-C)
    hangs up, which the daemon notices."""
    sock = _connect(path, timeout)
    try:
        _send(sock, path, cmd, args, timeout)
        reader = _LineReader(sock, path, timeout)
        header = reader.next(time.monotonic() + timeout)
        if header is None:
            raise ControlError(f"the gateway daemon closed the connection on {path} without answering")
        if not header.get("stream"):
            sock.close()
            return iter([_result(header)])  # a one-shot command; an error reply raises here
    except BaseException:
        sock.close()
        raise
    return _items(sock, reader)


def _items(sock: socket.socket, reader: "_LineReader") -> Iterator[object]:
    try:
        while True:
            line = reader.next(None)
            if line is None or line.get("end"):
                return
            yield _result(line)
    finally:
        sock.close()


def _connect(path: str, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except (FileNotFoundError, NotADirectoryError):
        sock.close()
        raise DaemonNotRunning(path) from None
    except ConnectionRefusedError:
        sock.close()
        raise DaemonNotRunning(path, stale=True) from None
    except PermissionError:
        sock.close()
        raise permission_denied(path) from None
    except (socket.timeout, TimeoutError):
        sock.close()
        raise ControlTimeout(path, timeout) from None
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EAGAIN:  # listen backlog full: the daemon is not accepting
            raise ControlTimeout(path, timeout) from None
        raise ControlError(f"cannot connect to the gateway daemon on {path}: {exc.strerror or exc}") from None
    return sock


def permission_denied(path: str) -> SocketPermissionDenied:
    """The error for a socket we may not open, naming the group that owns it (or, when we cannot
    even look inside its directory, the directory's group)."""
    return SocketPermissionDenied(path, _owning_group(path))


def _owning_group(path: str) -> str:
    candidates = [path, os.path.dirname(os.path.abspath(path))]
    for candidate in candidates:
        try:
            gid = os.stat(candidate).st_gid
        except OSError:
            continue
        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            return str(gid)
    return "community-gateway"  # the service's group, when nothing can be inspected at all


def _send(sock: socket.socket, path: str, cmd: str, args: dict | None, timeout: float) -> None:
    try:
        sock.sendall(p.encode({"cmd": cmd, "args": args or {}}))
    except (socket.timeout, TimeoutError):
        raise ControlTimeout(path, timeout) from None
    except (BrokenPipeError, ConnectionResetError):
        # The daemon may have answered and hung up before reading us (busy): the reply is
        # still waiting in our receive queue, so read it instead of failing here.
        pass
    except OSError as exc:
        raise ControlError(f"the gateway daemon hung up on {path}: {exc.strerror or exc}") from None


def _result(reply: dict):
    if reply.get("ok"):
        return reply.get("result")
    raise RemoteError(str(reply.get("error") or "the daemon refused the request"),
                      str(reply.get("code") or "error"))


class _LineReader:
    def __init__(self, sock: socket.socket, path: str, timeout: float):
        self.sock = sock
        self.path = path
        self.timeout = timeout
        self.buf = bytearray()

    def next(self, deadline: float | None) -> dict | None:
        """The next reply line as a dict; None at end of stream. `deadline` None waits forever."""
        while b"\n" not in self.buf:
            if len(self.buf) > _MAX_REPLY_BYTES:
                raise ControlError(f"reply from {self.path} larger than {_MAX_REPLY_BYTES} bytes")
            if deadline is None:
                self.sock.settimeout(None)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ControlTimeout(self.path, self.timeout)
                self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                raise ControlTimeout(self.path, self.timeout) from None
            except OSError as exc:
                raise ControlError(f"lost the connection to the gateway daemon on {self.path}: "
                                   f"{exc.strerror or exc}") from None
            if not chunk:
                return None
            self.buf += chunk
        end = self.buf.index(b"\n")
        line = bytes(self.buf[:end])
        del self.buf[:end + 1]
        try:
            message = json.loads(line)
        except ValueError:
            raise ControlError(f"garbled reply from {self.path}: is another program listening there?") from None
        if not isinstance(message, dict):
            raise ControlError(f"garbled reply from {self.path}: is another program listening there?")
        return message
