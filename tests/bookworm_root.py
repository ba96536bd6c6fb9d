"""A throwaway Debian Bookworm root to run systemd/install.sh in for real (tests/test_installer_chroot.py).

`debootstrap --variant=minbase bookworm` (plus python3, python3-venv and systemd, as Raspberry Pi OS
has them) into /var/cache/community-gateway-test/bookworm-minbase, once per machine (~2 minutes, from
Debian's mirror); every test run copies it (`cp -a`, a couple of seconds) and throws the copy away.
`make deps` builds it ahead (`python3 tests/bookworm_root.py`); a test builds it when it is missing.

    root = cached_root()        # Path of the pristine root (built if missing)
    why = unavailable()         # None, or the reason this machine cannot (not root, no debootstrap)"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

CACHE = Path(os.environ.get("GATEWAY_TEST_CACHE", "/var/cache/community-gateway-test"))
NAME = "bookworm-minbase"
INCLUDE = "python3,python3-venv,systemd"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
STAMP = ".community-gateway-test-root"


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


if __name__ == "__main__":
    why = unavailable()
    if why:
        sys.exit(f"cannot build the Bookworm test root: {why}")
    print(f"Bookworm test root: {cached_root()}")
