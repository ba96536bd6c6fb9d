"""Installing a verified release into its own venv, with no network (docs/updates.md).

`python3 -m venv releases/<version>` (the base interpreter of the running release: a venv's pip comes
from ensurepip, offline), then `pip install --no-index --find-links <staged wheels> <gateway wheel>`: pip
never asks an index, so a wheel the bundle lacks fails the install here, not the start. The new release
must import before it is marked complete (`.community-gateway-release`, written and fsynced last)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

from gateway.errors import UpdateError

from . import releases as R

INSTALL_TIMEOUT_S = 900.0  # a Pi 3 on an SD card: venv + ~15 wheels in a few minutes


def base_python() -> str:
    """The interpreter the running release was made from (a venv's python is a symlink to it)."""
    return os.environ.get("GATEWAY_UPDATE_PYTHON") or getattr(sys, "_base_executable", None) or sys.executable


def _as_owner_of(parent: str):
    """Root (`sudo gateway update`) runs venv and pip as the owner of releases/ (the service user), so
    that every file of the new release is the service's from the start: a root install killed halfway
    leaves nothing the service's own recovery cannot remove. None: no change of user."""
    if os.geteuid() != 0:
        return None
    try:
        st = os.stat(parent)
    except OSError:
        return None
    if st.st_uid == 0:
        return None

    def drop() -> None:
        os.setgroups([])
        os.setgid(st.st_gid)
        os.setuid(st.st_uid)
    return drop


def _run(argv: list[str], what: str, where: str, cwd: str | None = None, user=None) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, cwd=cwd,
                           preexec_fn=user,
                           env={**os.environ, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                                "PIP_CONFIG_FILE": os.devnull,  # no machine pip.conf adds a source
                                "PYTHONDONTWRITEBYTECODE": ""})
    except subprocess.TimeoutExpired:
        raise UpdateError("install", f"{what} took longer than {INSTALL_TIMEOUT_S:g} s") from None
    except OSError as e:
        raise _os_error(e, where) from None
    if p.returncode != 0:
        out = (p.stderr or "") + (p.stdout or "")
        # ensurepip hides the ENOSPC of its own pip behind "returned non-zero exit status 1": ask the disk
        if "No space left on device" in out or "Disk quota exceeded" in out or _nearly_full(where):
            raise UpdateError("disk_full", f"no space left for the new release in {where}: free some "
                                           "space; the running release is untouched")
        tail = " | ".join(line.strip() for line in out.strip().splitlines()[-4:])
        raise UpdateError("install", f"{what} failed (exit {p.returncode}): {tail}")
    return p.stdout


LOW_SPACE_BYTES = 4 << 20  # a failed step with less than this left on its filesystem failed for space


def _nearly_full(where: str) -> bool:
    import shutil

    path = where
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    try:
        return shutil.disk_usage(path or "/").free < LOW_SPACE_BYTES
    except OSError:
        return False


def _os_error(e: OSError, where: str) -> UpdateError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return UpdateError("disk_full", f"no space left for the new release in {where}")
    return UpdateError("install", f"cannot install into {where}: {e.strerror or e}")


def install_release(layout: R.Layout, version: str, wheels_dir: str, manifest: dict) -> str:
    """Make releases/<version> from the staged wheels; returns its directory."""
    d = layout.release_dir(version)
    if R.current_version(layout) == version:
        raise UpdateError("downgrade", f"{version} is the running release")
    try:
        os.makedirs(layout.releases, exist_ok=True)
        if os.path.lexists(d):
            R.remove_release(layout, version)  # a half-made one from an interrupted try
    except OSError as e:
        raise _os_error(e, layout.releases) from None
    user = _as_owner_of(layout.releases)
    _run([base_python(), "-m", "venv", d], "making the venv", d, user=user)
    py = os.path.join(d, "bin", "python")
    wheel = os.path.join(wheels_dir, os.path.basename(manifest["gateway_wheel"]))
    _run([py, "-m", "pip", "install", "-q", "--no-index", "--find-links", wheels_dir, "--no-cache-dir",
          "--no-warn-script-location", wheel], "pip install (offline)", d, cwd=d, user=user)
    got = _run([py, "-c", "import importlib.metadata as m, gateway.cli; print(m.version('community-gateway'))"],
               "importing the new release", d, cwd=d, user=user).strip()  # cwd: `-c` puts it first on sys.path, and
    # the caller's (a checkout's) own gateway/ there would be imported instead of the release's
    if got != version:
        raise UpdateError("install", f"the bundle's gateway wheel installed version {got}, not {version}")
    R.give_to_owner_of(d, layout.releases)  # made by root (sudo gateway update): the service's, like releases/
    mark = os.path.join(d, R.COMPLETE)
    try:
        with R.open_nofollow(mark, "wb", fresh=True) as f:
            f.write((version + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        R.give_to_owner_of(mark, layout.releases)
        R.fsync_dir(d)
    except OSError as e:
        raise _os_error(e, d) from None
    return d
