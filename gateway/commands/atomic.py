"""Replace a file so that a power cut leaves either the old or the new content, never a mix.

A Pi on a community wall loses power without warning; the config file and the nonce cache must
survive that. Temp file in the same directory (rename is atomic only within a filesystem), fsync
the data, rename over the target, fsync the directory so the rename itself is on disk."""

from __future__ import annotations

import contextlib
import os
import tempfile


def write_atomic(path: str, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `path` atomically. `mode`: the new file's permission bits; default: those of
    the file being replaced (a config holding an MQTT password stays 0600), else 0644."""
    directory = os.path.dirname(os.path.abspath(path))
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
    tmp = None
    try:
        # inside the try: a directory the daemon may not write (a config dir without group write, or
        # read-only under ProtectSystem=strict) raises here, and the caller's OSError handler says so
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        # the half-written temp file is ours; the target was not touched
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    fsync_dir(directory)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

