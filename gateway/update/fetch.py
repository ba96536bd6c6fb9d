"""Fetching a release bundle over HTTPS for a platform `update` command: resumed, bounded, pinned.

    part = PartFile(dir, sha256)          # <dir>/<sha256>.part and its fsynced length beside it
    fetch(url, sha256, size, part, ctx)   # -> the path of the complete, verified bundle

- HTTPS only, through the `ssl.SSLContext` given (the uplink's: its CA file pins the download server
  too, its host name is checked). No redirects: a URL that moves is refused, so the pin cannot be walked
  around and the command's URL is the one that was signed.
- Resumed with an HTTP Range request (RFC 9110 §14.2, `Range: bytes=N-`; the answer is 206 with a
  `Content-Range: bytes N-M/SIZE`, §14.4) from what is already in the `.part` file. The file is fsynced
  every FSYNC_BYTES and its durable length written beside it (`.part.len`), so after a power cut or a
  kill -9 the download restarts from bytes known to be on disk, never from a tail of zeros.
- Bounded: the command's `size` must be within the configured limit; a Content-Length or Content-Range
  total different from it, or a body longer than it, is refused before the disk fills.
- The bundle's sha256 is checked over the whole file when the last byte is in; a mismatch removes the
  part (a resume cannot repair it). Only then is the file renamed to `<sha256>.bundle`.

Failures are CommandError(reason, message). `retryable` reasons (a dropped connection, a timeout, a 5xx)
are retried by the caller with the bytes kept; the others are final."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import ssl
import threading
from urllib.parse import urlsplit

from gateway.errors import CommandError

CHUNK = 64 * 1024
# The part shares data_dir with the outbox and the alarm state: a download never leaves less than this
# free, so an alarm raised meanwhile still has room to be recorded.
RESERVE_BYTES = 32 * 1024 * 1024
FSYNC_BYTES = 4 * 1024 * 1024  # an SD card is written in erase blocks; fsync per 4 MiB, not per chunk
RETRYABLE = frozenset({"connection", "timeout", "server_error"})
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


def check_url(url: str) -> tuple[str, int, str]:
    """(host, port, path?query) of an https:// URL; anything else is refused ('bad_url')."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise CommandError("bad_url", f"only https:// downloads are allowed (got {parts.scheme or 'no'} scheme)")
    if not parts.hostname or parts.username or parts.password:
        raise CommandError("bad_url", "the URL needs a host name and no user:password@ part")
    try:
        port = parts.port or 443
    except ValueError:
        raise CommandError("bad_url", "the URL's port is not a number from 1 to 65535") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, path


class PartFile:
    """A download in progress: `<dir>/<sha256>.part` and `<dir>/<sha256>.part.len`, the length known to
    be on disk. Named by the bundle's sha256, so a command for another bundle never resumes this one."""

    def __init__(self, directory: str, sha256: str):
        self.dir = directory
        self.sha256 = sha256
        self.path = os.path.join(directory, f"{sha256}.part")
        self.len_path = self.path + ".len"
        self.done_path = os.path.join(directory, f"{sha256}.bundle")

    def durable_length(self) -> int:
        """What a resume may start from: the fsynced length, cut to the file's size (at most)."""
        try:
            with open(self.len_path, encoding="ascii") as f:
                recorded = int(f.read().strip() or 0)
            size = os.path.getsize(self.path)
        except (OSError, ValueError):
            return 0
        return max(0, min(recorded, size))

    def open_at(self, offset: int):
        """The part file opened for writing at `offset`, anything after it cut off."""
        os.makedirs(self.dir, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        f = os.fdopen(fd, "r+b", buffering=0)  # unbuffered: a full disk fails the write, not a later close
        f.truncate(offset)
        f.seek(offset)
        return f

    def mark(self, f, length: int) -> None:
        """fsync the data, then record `length` as durable (the record is written atomically)."""
        from gateway.commands.atomic import write_atomic

        f.flush()
        os.fsync(f.fileno())
        write_atomic(self.len_path, f"{length}\n".encode("ascii"), mode=0o600)

    def hash_of_first(self, length: int) -> "hashlib._Hash":
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            left = length
            while left > 0:
                block = f.read(min(CHUNK * 16, left))
                if not block:
                    break
                h.update(block)
                left -= len(block)
        return h

    def remove(self) -> None:
        for p in (self.path, self.len_path):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def fetch(url: str, sha256: str, size: int, part: PartFile, ctx: ssl.SSLContext, *, max_bytes: int,
          timeout_s: float = 30.0, progress=None, stop: threading.Event | None = None,
          reserve_bytes: int = RESERVE_BYTES) -> str:
    """One attempt to complete `part` from `url`; returns the path of the verified bundle.
    `progress(received, size, resumed_from)` is called after each fsync and at the end.
    Raises CommandError; `e.reason in RETRYABLE` means try again later (the bytes are kept)."""
    host, port, path = check_url(url)
    if size > max_bytes:
        raise CommandError("too_large", f"the bundle is {size} bytes; this gateway accepts at most {max_bytes} "
                                        "([updates] download_max_mb)")
    if os.path.exists(part.done_path):
        return part.done_path  # fetched and verified before a restart; nothing to do again
    offset = part.durable_length()
    if offset > size:
        offset = 0
    if offset == size:  # every byte was in when the process stopped (before the rename): check them
        return _finish(part, part.hash_of_first(size), sha256, size, progress, offset)
    check_room(part, size - offset, reserve_bytes)
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=timeout_s)
    try:
        headers = {"User-Agent": "community-gateway", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
        except ssl.SSLCertVerificationError as e:
            raise CommandError("tls", f"the download server {host}:{port} is not trusted by the uplink's CA "
                                      f"(pinned): {e.verify_message}") from None
        except ssl.SSLError as e:
            raise CommandError("tls", f"TLS with {host}:{port} failed: {e.reason or e}") from None
        except (socket.timeout, TimeoutError):
            raise CommandError("timeout", f"{host}:{port} did not answer within {timeout_s:g} s") from None
        except OSError as e:
            raise CommandError("connection", f"cannot reach {host}:{port}: {e}") from None
        except http.client.HTTPException as e:
            raise CommandError("connection", f"{host}:{port} sent no valid HTTP answer: {e!r}") from None
        offset = _check_answer(resp, offset, size, max_bytes)
        return _receive(resp, offset, sha256, size, part, progress, stop, timeout_s)
    finally:
        conn.close()


def check_room(part: PartFile, needed: int, reserve_bytes: int = RESERVE_BYTES) -> None:
    """Refuse ('disk_full') a download that would leave less than `reserve_bytes` free beside it."""
    os.makedirs(part.dir, exist_ok=True)
    st = os.statvfs(part.dir)
    free = st.f_bavail * st.f_frsize
    if free - needed < reserve_bytes:
        raise CommandError("disk_full", f"{needed} more bytes would leave {max(0, free - needed) // 2**20} MiB free in "
                                        f"{part.dir} (at least {reserve_bytes // 2**20} MiB stay free for the outbox)")


def _disk_full(part: PartFile, e: OSError) -> CommandError:
    part.remove()  # the outbox beside it needs the room more than a half bundle does
    return CommandError("disk_full", f"cannot write {part.path}: {e.strerror or e}; the part is removed")


def _check_answer(resp, offset: int, size: int, max_bytes: int) -> int:
    """Where the body starts in the file, from the status and headers; refuses what cannot be right."""
    status = resp.status
    if 500 <= status < 600:
        raise CommandError("server_error", f"the download server answered {status} {resp.reason}")
    if 300 <= status < 400:
        raise CommandError("redirect", f"the download server answered {status} (to {resp.getheader('Location')}); "
                                       "redirects are not followed: sign the final URL")
    if status not in (200, 206):
        raise CommandError("http_error", f"the download server answered {status} {resp.reason}")
    length = resp.getheader("Content-Length")
    if status == 206:
        m = _CONTENT_RANGE.match(resp.getheader("Content-Range") or "")
        if m is None or int(m.group(1)) != offset:
            raise CommandError("http_error", f"a resume from byte {offset} got Content-Range "
                                             f"{resp.getheader('Content-Range')!r}")
        total = int(m.group(3))
    else:
        offset = 0  # the server ignored the Range: the whole file comes again, from the start
        total = int(length) if length is not None and length.isascii() and length.isdigit() else None
    if total is not None and total > max_bytes:
        raise CommandError("too_large", f"the server offers {total} bytes; this gateway accepts at most {max_bytes}")
    if total is not None and total != size:
        raise CommandError("size_mismatch", f"the server offers {total} bytes, the command says {size}: "
                                            "not the bundle that was signed for")
    return offset


def _receive(resp, offset, sha256, size, part, progress, stop, timeout_s) -> str:
    resumed_from = offset
    h = part.hash_of_first(offset) if offset else hashlib.sha256()
    received = offset
    with part.open_at(offset) as f:
        unsynced = 0
        try:
            while received < size:
                if stop is not None and stop.is_set():
                    raise CommandError("stopped", "the gateway is stopping; the download resumes at its next start")
                try:
                    block = resp.read(min(CHUNK, size - received))
                except (socket.timeout, TimeoutError):
                    raise CommandError("timeout", f"no data for {timeout_s:g} s at byte {received}") from None
                except (OSError, http.client.HTTPException) as e:
                    raise CommandError("connection", f"connection lost at byte {received}: {e!r}") from None
                if not block:
                    raise CommandError("connection", f"connection closed at byte {received} of {size}")
                try:
                    view = memoryview(block)
                    while view:  # a raw write may be short (the last blocks of a filling disk)
                        view = view[f.write(view):]
                except OSError as e:
                    raise _disk_full(part, e) from None
                h.update(block)
                received += len(block)
                unsynced += len(block)
                if unsynced >= FSYNC_BYTES:
                    try:
                        part.mark(f, received)
                    except OSError as e:
                        raise _disk_full(part, e) from None
                    unsynced = 0
                    if progress is not None:
                        progress(received, size, resumed_from)
            # one byte more than signed for is a different file
            try:
                extra = resp.read(1)
            except (OSError, http.client.HTTPException):
                extra = b""
            if extra:
                raise CommandError("too_large", f"the server sends more than the {size} bytes signed for")
        finally:
            if unsynced and os.path.exists(part.path):
                try:
                    part.mark(f, received)
                except OSError as e:
                    raise _disk_full(part, e) from None
    return _finish(part, h, sha256, size, progress, resumed_from)


def _finish(part, h, sha256, size, progress, resumed_from) -> str:
    if h.hexdigest() != sha256:
        part.remove()
        raise CommandError("sha256_mismatch", f"the downloaded {size} bytes have sha256 {h.hexdigest()[:16]}..., "
                                              f"the command says {sha256[:16]}...: refused and removed")
    os.replace(part.path, part.done_path)
    try:
        os.unlink(part.len_path)
    except FileNotFoundError:
        pass
    _fsync_dir(part.dir)
    if progress is not None:
        progress(size, size, resumed_from)
    return part.done_path


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
