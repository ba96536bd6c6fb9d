"""`[updates]`: absent means no update accepted; every key checked like every other config key."""

from __future__ import annotations

import textwrap

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError

BASE = """
[gateway]
id = "gw"
data_dir = "./var"
"""


def _load(tmp_path, text):
    p = tmp_path / "gateway.toml"
    p.write_text(BASE + textwrap.dedent(text))
    return load_config(str(p))


def test_no_table_no_updates(tmp_path):
    assert _load(tmp_path, "").updates is None


def test_defaults(tmp_path, release_key):
    cfg = _load(tmp_path, '[updates]\nrelease_keys = ["./release.pub"]\n')
    assert cfg.updates.release_keys == (str(tmp_path / "release.pub"),)
    assert (cfg.updates.health_s, cfg.updates.keep, cfg.updates.install_root) == (300.0, 2, "/opt/community-gateway")
    assert cfg.updates.probation_s == 60.0


def test_probation_defaults_within_a_short_health_gate(tmp_path, release_key):
    cfg = _load(tmp_path, '[updates]\nrelease_keys = ["./release.pub"]\nhealth_s = 30\n')
    assert cfg.updates.probation_s == 15.0


@pytest.mark.parametrize("text, words", [
    ('[updates]\nrelease_keys = ["./nope.pub"]\n', "release_keys: file not found"),
    ('[updates]\nhealth_s = 60\n', "release_keys: is required"),
    ('[updates]\nrelease_keys = []\n', "release_keys: is empty"),
    ('[updates]\nrelease_keys = ["./release.pub"]\nhealth_s = 1\n', "health_s"),
    ('[updates]\nrelease_keys = ["./release.pub"]\nkeep = 1\n', "keep"),
    ('[updates]\nrelease_keys = ["./release.pub"]\nhealth_s = 30\nprobation_s = 30\n', "probation_s: must be less than health_s"),
    ('[updates]\nrelease_keys = ["./release.pub"]\ninstall_root = "opt"\n', "install_root: must be an absolute"),
    ('[updates]\nrelease_keys = ["./release.pub"]\nhealth = 60\n', "did you mean"),
])
def test_problems(tmp_path, release_key, text, words):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    assert words in str(e.value) and "[updates]" in str(e.value), str(e.value)


def test_gateway_update_without_the_table_is_refused_in_a_sentence(tmp_path):
    import subprocess
    import sys
    p = tmp_path / "gateway.toml"
    p.write_text(BASE)
    (tmp_path / "b.tar").write_bytes(b"whatever")
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "update", str(tmp_path / "b.tar"), "-c", str(p)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "has no [updates] table: this gateway accepts no update" in r.stderr
    assert "Traceback" not in r.stderr


def test_gateway_update_without_permission_is_a_sentence(release_key):
    """A technician without sudo: the data directory is not theirs; one sentence, no traceback."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the CLI as another user")
    d = Path(tempfile.mkdtemp(prefix="upd-perm-", dir="/tmp"))  # pytest's tmp_path is root-only (0700)
    try:
        os.chmod(d, 0o755)
        shutil.copy2(release_key[1], d / "release.pub")
        p = d / "gateway.toml"
        p.write_text(BASE + '[updates]\nrelease_keys = ["./release.pub"]\n')
        (d / "var").mkdir(mode=0o700)
        (d / "b.tar").write_bytes(b"whatever")
        for f in ("release.pub", "gateway.toml", "b.tar"):
            os.chmod(d / f, 0o644)
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                            "gateway.cli", "update", str(d / "b.tar"), "-c", str(p)],
                           capture_output=True, text=True, timeout=60, cwd="/")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "permission denied: run it as root" in r.stderr and "Traceback" not in r.stderr
