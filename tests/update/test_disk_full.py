"""A disk that fills during the update: while the bundle's wheels are staged (the data directory) and
while the new venv is installed (the releases directory). Real tmpfs mounts of a few MB (root only);
a real bundle. Refused with reason disk_full, the half-made release removed (the space given back),
the running release untouched."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from updatekit import snapshot
from releasekit import release_bundle
from gateway.errors import UpdateError
from gateway.update import apply_bundle
from gateway.update import journal as J
from gateway.update import releases as R

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"),
                                reason="needs root to mount a small tmpfs (a full disk on demand)")


@pytest.fixture
def small(tmp_path):
    mounted = []

    def mount(path, size):
        os.makedirs(path, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(path)
    yield mount
    for p in reversed(mounted):
        subprocess.run(["umount", "-l", str(p)], check=False)


@pytest.mark.parametrize("where", ["staging", "install"])
def test_disk_full(tmp_path, release_key, small, where):
    bundle = release_bundle(tmp_path, "0.2.0", release_key[0])
    lay = R.Layout(str(tmp_path / "opt"), str(tmp_path / "var"))
    if where == "staging":  # the wheels (~15 MB) do not fit in the data directory
        small(tmp_path / "var", "4m")
    else:  # the wheels fit, the venv with them installed does not
        small(tmp_path / "opt", "24m")
    os.makedirs(lay.release_dir("0.1.0"), exist_ok=True)
    open(os.path.join(lay.release_dir("0.1.0"), R.COMPLETE), "w").write("0.1.0\n")
    os.makedirs(lay.data_dir, exist_ok=True)
    R.switch(lay, "0.1.0")
    before = snapshot(lay)
    free = shutil.disk_usage(tmp_path / ("var" if where == "staging" else "opt")).free
    with pytest.raises(UpdateError) as e:
        apply_bundle(str(bundle), data_dir=lay.data_dir, install_root=lay.install_root,
                     release_keys=[release_key[1]], by="test", restart=lambda: None)
    assert e.value.reason == "disk_full", e.value
    # staging: refused before a byte is staged (the bundle's size + the 32 MiB reserve do not fit);
    # install: on another filesystem than data_dir (no reserve), the venv runs out mid-install
    assert ("no space left" if where == "install" else "stay free for the outbox") in str(e.value)
    assert snapshot(lay) == before
    assert not os.path.exists(lay.release_dir("0.2.0"))
    assert shutil.disk_usage(tmp_path / ("var" if where == "staging" else "opt")).free >= free - 64 * 1024
    last = J.state(J.Journal(lay.journal_path).entries())["last"]
    assert last["outcome"] in ("refused", "failed") and last["reason"] == "disk_full"
