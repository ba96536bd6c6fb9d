"""Helpers of the update tests: stand-in wheels for the refusals (a bundle is verified before anything
is installed, so a refusal needs no real wheel), and a snapshot of what a refusal must not change."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.update import releases as R


def fake_wheels(d: Path, version: str, extra: int = 2) -> Path:
    """A wheels directory: community_gateway-VERSION-py3-none-any.whl and `extra` dependency wheels
    (random bytes: only their names, sizes and hashes matter before install)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / f"community_gateway-{version}-py3-none-any.whl").write_bytes(os.urandom(5000))
    for i in range(extra):
        (d / f"dep{i}-1.0-py3-none-any.whl").write_bytes(os.urandom(20000 + i))
    return d


def snapshot(lay: R.Layout) -> dict:
    """What must not change when a bundle is refused: the releases directory and where current points."""
    out = {"current": os.readlink(lay.current)}
    for root, dirs, files in os.walk(lay.releases):
        for f in files + dirs:
            p = os.path.join(root, f)
            out[os.path.relpath(p, lay.releases)] = os.lstat(p).st_mtime_ns
    return out
