"""Fixtures of the update tests: a release key pair, a gateway layout in tmp_path (releases/ and a
data dir). Helpers live in updatekit.py, not here: when the whole tree runs, another suite's
conftest.py has the same module name, so `from conftest import ...` could get the wrong one."""

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
