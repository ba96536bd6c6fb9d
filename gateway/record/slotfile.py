"""A small state file that can still be written when the disk is full: preallocated once, then
overwritten in place, alternating between two slots so a power cut mid-write leaves the other one.

Layout: two slots of `slot_bytes` each. A slot is an ASCII header line
`GWSLOT1 <generation:16> <length:8> <crc32:8>\\n`, the payload (UTF-8 JSON), then space padding.
Readable with `cat`; the newest slot whose CRC matches wins. Overwriting blocks the file already owns
needs no free space (ext4, tmpfs, f2fs in place), which a temp file + rename on a full card does.
"""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

log = logging.getLogger(__name__)

_MAGIC = b"GWSLOT1 "
_HEADER = len(_MAGIC) + 16 + 1 + 8 + 1 + 8 + 1  # magic, generation, length, crc, spaces, newline


class SlotFile:
    """Two preallocated slots in one file; `write()` never grows it (unless a payload outgrows a slot)."""

    def __init__(self, path: str | os.PathLike, slot_bytes: int):
        self.path = Path(path)
        self.slot_bytes = slot_bytes
        self.generation = 0
        self.writes = 0
        self.bytes_written = 0

    def read(self) -> tuple[bytes | None, bool]:
        """(newest valid payload or None, damaged): damaged when the file exists with content but
        no slot is valid."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None, False
        if len(raw) >= 2 * _HEADER:
            self.slot_bytes = max(self.slot_bytes, len(raw) // 2)
        best = None
        for i in (0, 1):
            got = _parse(raw[i * self.slot_bytes:(i + 1) * self.slot_bytes])
            if got and (best is None or got[0] > best[0]):
                best = got
        if best is None:
            return None, bool(raw.strip(b"\0 \n"))
        self.generation = best[0]
        return best[1], False

    def write(self, payload: bytes) -> None:
        """Durable on return (fdatasync). Raises OSError."""
        need = _HEADER + len(payload)
        if need > self.slot_bytes or not self.path.exists() or self.path.stat().st_size < 2 * self.slot_bytes:
            self._allocate(max(self.slot_bytes, _round(need * 2)))
        gen = self.generation + 1
        header = _MAGIC + b"%016d %08d %08x\n" % (gen, len(payload), zlib.crc32(payload))
        block = (header + payload).ljust(self.slot_bytes, b" ")
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, block, (gen % 2) * self.slot_bytes)
            os.fdatasync(fd)
        finally:
            os.close(fd)
        self.generation = gen
        self.writes += 1
        self.bytes_written += len(block)

    def allocate(self) -> None:
        """Reserve the space now (at start, while the disk still has room)."""
        if not self.path.exists() or self.path.stat().st_size < 2 * self.slot_bytes:
            self._allocate(self.slot_bytes)

    def _allocate(self, slot_bytes: int) -> None:
        """A bigger (or first) file: the current content is carried over through a temp file + rename."""
        current, _ = self.read() if self.path.exists() else (None, False)
        tmp = self.path.with_name(self.path.name + ".new")
        with open(tmp, "wb") as f:
            f.write(b" " * (2 * slot_bytes))  # real blocks, not a sparse hole: later writes need no space
            if current is not None:
                header = _MAGIC + b"%016d %08d %08x\n" % (self.generation, len(current), zlib.crc32(current))
                f.seek((self.generation % 2) * slot_bytes)
                f.write(header + current)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        # the rename durable too (not gateway.commands.atomic: that package drags cryptography in)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self.slot_bytes = slot_bytes


def _parse(slot: bytes) -> tuple[int, bytes] | None:
    if not slot.startswith(_MAGIC) or len(slot) < _HEADER:
        return None
    try:
        gen, length, crc = slot[len(_MAGIC):_HEADER - 1].split(b" ")
        gen, length, crc = int(gen), int(length), int(crc, 16)
    except ValueError:
        return None
    payload = slot[_HEADER:_HEADER + length]
    if len(payload) != length or zlib.crc32(payload) != crc:
        return None
    return gen, payload


def _round(n: int, to: int = 4096) -> int:
    return -(-n // to) * to
