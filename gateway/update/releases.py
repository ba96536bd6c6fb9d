"""Where releases live, and the one symlink that says which runs (docs/updates.md).

    <install_root>/releases/<version>/       one venv per release (bin/gateway, bin/python)
    <install_root>/releases/current -> <version>
    <data_dir>/update/journal                the step journal (journal.py)

Standard library only: the launcher (launcher.py, copied outside every release by install.sh) imports
this module, and it must work when the release it starts cannot even be imported."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal

CURRENT = "current"
COMPLETE = ".community-gateway-release"  # written last by the installer: a release dir without it is half-made
_NAME = re.compile(r"^\d[0-9A-Za-z.+!-]*$")


class Layout:
    """The paths of one gateway's releases and update state."""

    def __init__(self, install_root: str, data_dir: str):
        self.install_root = os.path.abspath(install_root)
        self.data_dir = os.path.abspath(data_dir)
        self.releases = os.path.join(self.install_root, "releases")
        self.current = os.path.join(self.releases, CURRENT)
        self.update_dir = os.path.join(self.data_dir, "update")
        self.journal_path = os.path.join(self.update_dir, "journal")

    def release_dir(self, version: str) -> str:
        if not _NAME.match(version or ""):
            raise ValueError(f"not a release name: {version!r}")
        return os.path.join(self.releases, version)

    def staging_dir(self, uid: str) -> str:
        return os.path.join(self.update_dir, f"staging-{uid}")

    def complete(self, version: str) -> bool:
        return os.path.isfile(os.path.join(self.release_dir(version), COMPLETE))

    def gateway_bin(self, version: str) -> str:
        return os.path.join(self.release_dir(version), "bin", "gateway")


def current_version(layout: Layout) -> str | None:
    """The release `current` points at, or None (no symlink: an install from before releases)."""
    try:
        target = os.readlink(layout.current)
    except OSError:
        return None
    return os.path.basename(target.rstrip("/"))


def installed(layout: Layout) -> list[str]:
    """Complete release directories, any order."""
    try:
        names = os.listdir(layout.releases)
    except OSError:
        return []
    out = []
    for n in names:
        if n == CURRENT or n.startswith(".") or not _NAME.match(n):
            continue
        if os.path.isfile(os.path.join(layout.releases, n, COMPLETE)) or os.path.islink(os.path.join(layout.releases, n)):
            out.append(n)
    return out


def give_to_owner_of(path: str, parent: str) -> None:
    """Root (`sudo gateway update`) makes files the service must later change or remove (the journal,
    a release, the current link): hand them to the owner of `parent` (the data dir, releases/)."""
    if os.geteuid() != 0:
        return
    try:
        st = os.stat(parent)
    except OSError:
        return
    if st.st_uid == 0:
        return
    if os.path.isdir(path) and not os.path.islink(path):
        for root, dirs, files in os.walk(path):
            for n in dirs + files:
                os.lchown(os.path.join(root, n), st.st_uid, st.st_gid)
    os.lchown(path, st.st_uid, st.st_gid)


def open_nofollow(path: str, mode: str, fresh: bool = False):
    """open() for "rb", "ab" or "wb" that never follows a symlink at `path` (O_NOFOLLOW: ELOOP), so
    root (`sudo gateway update`) never writes through a link the service user planted in a directory
    that is the service's. `fresh` ("wb"): a leftover at `path` (a link included) is removed first,
    and the file is created with O_EXCL, so it is always a new file of ours."""
    flags = {"rb": os.O_RDONLY, "ab": os.O_RDWR | os.O_APPEND | os.O_CREAT,
             "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC}[mode] | os.O_NOFOLLOW | os.O_CLOEXEC
    if fresh:
        try:
            os.unlink(path)  # unlink never follows a link: it removes the link itself
        except FileNotFoundError:
            pass
        flags |= os.O_EXCL
    return os.fdopen(os.open(path, flags, 0o644), mode)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def switch(layout: Layout, version: str) -> None:
    """Point `current` at `version` in one rename(2): a power cut leaves the old or the new link,
    never none (a symlink to a temporary name, then renamed over `current`; the directory fsynced)."""
    tmp = os.path.join(layout.releases, ".current.tmp")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    os.symlink(version, tmp)
    give_to_owner_of(tmp, layout.releases)
    os.replace(tmp, layout.current)
    fsync_dir(layout.releases)


def remove_release(layout: Layout, version: str) -> None:
    """Remove a release directory: the completion mark first, so a cut leaves it visibly half-gone."""
    d = layout.release_dir(version)
    if current_version(layout) == version:
        raise ValueError(f"{version} is the current release")
    if os.path.islink(d):  # install.sh's release: releases/<version> -> ../venv, which install.sh owns
        os.unlink(d)
        return
    try:
        os.unlink(os.path.join(d, COMPLETE))
    except FileNotFoundError:
        pass
    shutil.rmtree(d, ignore_errors=True)


def prune(layout: Layout, keep_versions: list[str], keep: int = 2) -> list[str]:
    """Remove every release directory but `keep_versions` (the current and the previous one) and, up to
    `keep` in all, the newest other complete ones; half-made ones always. Returns what went."""
    gone = []
    try:
        names = os.listdir(layout.releases)
    except OSError:
        return gone
    kept = set(v for v in keep_versions if v) | {current_version(layout)}
    kept.discard(None)
    others = sorted((n for n in installed(layout) if n not in kept), key=_version_key, reverse=True)
    keep = kept | set(others[:max(0, keep - len(kept))])
    for n in names:
        if n == CURRENT or n.startswith(".") or n in keep or not _NAME.match(n):
            continue
        remove_release(layout, n)
        gone.append(n)
    return gone


def _version_key(name: str):
    return [int(p) if p.isdigit() else -1 for p in re.split(r"[.+!-]", name)]


def daemon_pid(layout: Layout) -> int | None:
    """The pid of the daemon that owns data_dir (its lock file: gateway/service/ownership.py), if alive.
    Only while the file's flock is held: the file stays after the daemon ends and pids are reused, so
    the pid in a file nobody holds may be any process now (ownership.holder(), standard library here)."""
    import fcntl

    try:
        fd = os.open(os.path.join(layout.data_dir, "daemon.lock"), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: a daemon owns data_dir
        else:
            return None  # nobody holds it: the pid in it is stale
        try:
            pid = int(json.loads(os.pread(fd, 4096, 0) or b"{}").get("pid"))
        except (OSError, ValueError, TypeError, AttributeError):
            return None
    finally:
        os.close(fd)  # (a shared flock we took goes with it)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def restart_daemon(layout: Layout) -> int | None:
    """Restart the daemon into the release `current` points at: SIGUSR2 makes it stop cleanly and exec
    the launcher in the same process (gateway/update/restart.py); a daemon without that handler dies
    of it, and systemd's Restart=always starts the launcher. Returns the pid signalled, or None."""
    pid = daemon_pid(layout)
    if pid is not None:
        os.kill(pid, signal.SIGUSR2)
    return pid
