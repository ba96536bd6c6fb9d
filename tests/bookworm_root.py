"""A throwaway Debian Bookworm root to run systemd/install.sh in for real (tests/test_installer_chroot.py).

`debootstrap --variant=minbase bookworm` (plus python3, python3-venv and systemd, as Raspberry Pi OS
has them) into /var/cache/community-gateway-test/bookworm-minbase, once per machine (~2 minutes, from
Debian's mirror); every test run copies it (`cp -a`, a couple of seconds) and throws the copy away.
`make deps` builds it ahead (`python3 tests/bookworm_root.py`); a test builds it when it is missing.

    root = cached_root()        # Path of the pristine root (built if missing)
    why = unavailable()         # None, or the reason this machine cannot (not root, no debootstrap)
    with throwaway_root(tmp_dir, proc=True) as root: ...    # a writable copy, gone afterwards
    put_checkout(root); put_wheels(root, house, "wheels")    # what a technician copies to the Pi"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

from wheelhouse import PACKAGE_PARTS, REPO

CACHE = Path(os.environ.get("GATEWAY_TEST_CACHE", "/var/cache/community-gateway-test"))
NAME = "bookworm-minbase"
INCLUDE = "python3,python3-venv,systemd"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
STAMP = ".community-gateway-test-root"
CHECKOUT = "/root/community-gateway"


def unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot, useradd inside the root)"
    for tool in ("debootstrap", "chroot"):
        if not shutil.which(tool):
            return f"{tool} is not installed (make deps installs it)"
    return None


def _ready(root: Path) -> bool:
    stamp = root / STAMP
    return stamp.is_file() and stamp.read_text().strip() == INCLUDE


def cached_root() -> Path:
    root = CACHE / NAME
    if _ready(root):
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions: one builds, the other waits and reuses
        if _ready(root):
            return root
        tmp = CACHE / f"{NAME}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        done = subprocess.run(["debootstrap", "--variant=minbase", f"--include={INCLUDE}", "bookworm",
                               str(tmp), MIRROR], capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"debootstrap failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        (tmp / STAMP).write_text(INCLUDE + "\n")
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    return root


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True, timeout=30).returncode == 0


@contextlib.contextmanager
def throwaway_root(work: Path, proc: bool = False):
    """The pristine root under an overlay (no copy, the cache stays untouched), or a `cp -a` copy where
    overlayfs cannot be mounted; with proc=True, /proc mounted inside as pi-gen mounts it."""
    pristine = cached_root()
    root, upper, scratch = work / "root", work / "upper", work / "work"
    for d in (root, upper, scratch):
        d.mkdir()
    overlay = _mount("-t", "overlay", "overlay", "-o",
                     f"lowerdir={pristine},upperdir={upper},workdir={scratch}", str(root))
    if not overlay:
        root.rmdir()
        subprocess.run(["cp", "-a", str(pristine), str(root)], check=True, timeout=300)
    proc_mounted = proc and _mount("-t", "proc", "proc", str(root / "proc"))
    try:
        yield root
    finally:
        if proc_mounted:
            subprocess.run(["umount", str(root / "proc")], capture_output=True)
        if overlay:
            subprocess.run(["umount", "-l", str(root)], capture_output=True)
        subprocess.run(["rm", "-rf", str(root), str(upper), str(scratch)], capture_output=True, timeout=300)


def put_checkout(root: Path, source: Path = REPO) -> None:
    """A checkout on the Pi: the installer, the unit, the docs and the package's source."""
    dest = root / CHECKOUT.lstrip("/")
    shutil.rmtree(dest, ignore_errors=True)
    for part in ("systemd", "hw", "docs/install.md", "config/README.md", *PACKAGE_PARTS):
        src = source / part
        (dest / part).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / part)


def put_wheels(root: Path, house: Path, name: str) -> str:
    dest = root / "root" / name
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(house, dest, ignore=shutil.ignore_patterns(".complete"))
    return f"/root/{name}"


if __name__ == "__main__":
    why = unavailable()
    if why:
        sys.exit(f"cannot build the Bookworm test root: {why}")
    print(f"Bookworm test root: {cached_root()}")
