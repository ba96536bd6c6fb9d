"""Paths written in the config are relative to the config file, not to wherever the
technician happened to run `gateway` from."""

from __future__ import annotations

import os
from pathlib import Path


def resolve(base: Path, value: str) -> str:
    path = Path(value).expanduser()
    # normpath, not Path.resolve(): `../var` reads better than a symlink target spelled out
    return os.path.normpath(path if path.is_absolute() else base / path)
