"""The gateway as a Pi gets it: its wheel and every dependency's wheel, built from this checkout the way
`make wheels` does (`pip wheel`), into a directory kept per source hash, so the wheel test and the
installer test of one session (and the next session, while the source is unchanged) build it once.

    house = wheelhouse()            # Path: community_gateway-*.whl and the dependencies' wheels
    gateway_wheel(house)            # the gateway's own wheel in it

The checkout is copied first (without .venv, .git, var/): `pip wheel` builds in the source tree
(build/, *.egg-info), and two sessions building at once must not share it."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE_PARTS = ("pyproject.toml", "README.md", "gateway", "drivers")
CACHE = Path(tempfile.gettempdir()) / "community-gateway-test-wheels"


def source_hash() -> str:
    digest = hashlib.sha256()
    for part in PACKAGE_PARTS:
        path = REPO / part
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".pyc":
                continue
            digest.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def copy_package_source(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for part in PACKAGE_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest / part)
    return dest


def wheelhouse() -> Path:
    """The directory of wheels for this source, built if missing (a minute the first time: the
    dependencies come from the package index or pip's cache; seconds after)."""
    house = CACHE / source_hash()
    if (house / ".complete").is_file():
        return house
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (house / ".complete").is_file():
            return house
        for old in CACHE.iterdir():  # other sources' houses, unused for a day (another session may use one)
            if old.is_dir() and time.time() - old.stat().st_mtime > 86400:
                shutil.rmtree(old, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix="src-", dir=CACHE))
        try:
            src = copy_package_source(work / "community-gateway")
            done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(house),
                                   str(src)], capture_output=True, text=True, timeout=900, cwd=work)
            if done.returncode != 0:
                raise RuntimeError(f"pip wheel failed:\n{done.stdout}\n{done.stderr}")
            # the build backend too, so that a checkout installs from this directory alone (pip's
            # build isolation fetches it: PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR pip install CHECKOUT)
            done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
                                   "--dest", str(house), "setuptools>=68", "wheel"],
                                  capture_output=True, text=True, timeout=300, cwd=work)
            if done.returncode != 0:
                raise RuntimeError(f"pip download of the build backend failed:\n{done.stderr}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        (house / ".complete").write_text(source_hash() + "\n")
    return house


def gateway_wheel(house: Path) -> Path:
    wheels = sorted(house.glob("community_gateway-*.whl"))
    assert len(wheels) == 1, f"expected one gateway wheel in {house}, found {wheels}"
    return wheels[0]


def isolated_pip_env() -> dict[str, str]:
    """pip that reads no machine config (this one points at local indexes): only what we pass."""
    return {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
