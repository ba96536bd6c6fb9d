"""Fixtures of the update tests: a release key pair, a gateway layout in tmp_path (releases/ and a
data dir), and bundles of stand-in wheels for the refusals (a bundle is verified before anything is
installed, so a refusal needs no real wheel)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gateway.platform.keys import keygen  # noqa: E402
from gateway.update import releases as R  # noqa: E402


@pytest.fixture
def release_key(tmp_path):
    key, pub = keygen(str(tmp_path / "release"))
    return key, pub


@pytest.fixture
def other_key(tmp_path):
    key, pub = keygen(str(tmp_path / "rogue"))
    return key, pub


@pytest.fixture
def layout(tmp_path):
    """A gateway running release 0.1.0: releases/0.1.0 (complete mark only), current -> 0.1.0."""
    lay = R.Layout(str(tmp_path / "opt"), str(tmp_path / "var"))
    os.makedirs(lay.release_dir("0.1.0"))
    Path(lay.release_dir("0.1.0"), R.COMPLETE).write_text("0.1.0\n")
    os.makedirs(lay.data_dir)
    R.switch(lay, "0.1.0")
    return lay


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
