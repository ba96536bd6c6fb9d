"""Applying a release bundle: verify, install offline, switch, restart (docs/updates.md).

Public entry point (the platform's signed `update` command and `gateway update FILE` both call it):

    apply_bundle(bundle_path: str, *, data_dir: str, install_root: str, release_keys: list,
                 by: str, expect_sha256: str | None = None, on_step=None,
                 health_s: float = 300.0, probation_s: float = 60.0, keep: int = 2, restart=None, wait: bool = False) -> dict

- bundle_path: the bundle file (already downloaded in full; the downloader checks size and resume).
- data_dir: the gateway's data directory; the step journal is `<data_dir>/update/journal`.
- install_root: the install prefix (/opt/community-gateway): releases live in
  `<install_root>/releases/<version>/` (one venv each), the running one is the symlink
  `<install_root>/releases/current -> <version>`.
- release_keys: the pinned release public keys: Ed25519PublicKey objects or paths to PEM files
  (`[updates] release_keys`). An empty list refuses every bundle (reason "no_updates").
- by: who asked, for the audit events ("cli:alice[4242]", "platform:<command id>").
- expect_sha256: the platform command's sha256 of the whole bundle file; checked first.
- on_step(step: dict): called after each step is journalled (fsynced): {"n": 4, "ts": ..., "step":
  "verified", "update": id, "by": by, "version": ..., ...}: for progress (the CLI prints it; a platform
  command may reply with it). Do NOT audit from it: every journal line becomes an audit event by
  itself (gateway/update/audit.py: the running daemon reads the journal every 0.5 s and at start, so
  steps taken while no daemon runs - the launcher's - are audited too, each exactly once).
- restart(): called after the switch to restart the service (default: SIGUSR2 to the daemon that owns
  data_dir - its pid from <data_dir>/daemon.lock - which stops cleanly and re-execs the launcher in the
  same process: gateway/update/restart.py). Called from inside the daemon, the default signals the
  calling process itself: it stops after apply_bundle returns (keep the call off the safety loop, e.g.
  in the command handler's thread); the outcome then comes from the launcher's health gate and is read
  back with `gateway status` (last_update) and the audit events.
- health_s, probation_s, keep: from `[updates]` (cfg.updates.health_s, .probation_s, .keep); install_root is
  cfg.updates.install_root, release_keys cfg.updates.release_keys (paths).
- wait: after the restart, wait (up to health_s + 30 s) for the health gate's outcome.

Returns {"update": id, "version": new, "previous": running, "outcome": "switched" | "healthy" |
"rolled_back", "reason": ...}; reason "not_running" when the default restart found no daemon (the
switched release is tried at the next start of the service). Raises UpdateError(reason, message) (gateway.errors) when the bundle is
refused or the install fails; the running release is then untouched (nothing outside
releases/<new version> and the journal was written, and the new version's directory is removed
again). Reason words: no_updates, sha256, signature, truncated, bundle, manifest, release_key, floor,
downgrade, platform, busy (another update on trial, or being applied: the flock on
<data_dir>/update/apply.lock is held from the recovery to the restart), install, disk_full (also
refused up front: the bundle's size + the 32 MiB reserve not free for staging or for the install).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import time

from gateway.errors import UpdateError

from . import journal as J
from . import releases as R
from .bundle import open_verified
from .install import install_release

log = logging.getLogger(__name__)


def apply_bundle(bundle_path: str, *, data_dir: str, install_root: str, release_keys: list, by: str,
                 expect_sha256: str | None = None, on_step=None, health_s: float = 300.0, probation_s: float = 60.0, keep: int = 2,
                 restart=None, wait: bool = False, running_version: str | None = None) -> dict:
    layout = R.Layout(install_root, data_dir)
    journal = J.Journal(layout.journal_path)
    try:
        with J.update_lock(layout):  # across the whole apply: recover, verify, install, switch, restart
            result = _apply_locked(layout, journal, bundle_path, release_keys=release_keys, by=by,
                                   expect_sha256=expect_sha256, on_step=on_step, health_s=health_s,
                                   probation_s=probation_s, keep=keep, restart=restart,
                                   running_version=running_version)
    except J.Busy:  # not journalled: the other update's lines must stay the last ones
        raise UpdateError("busy", "busy: another update is being applied (a second `gateway update`, or "
                                  "the platform's update command): try again when it is over") from None
    if wait and result.get("reason") != "not_running":
        result.update(J.wait_outcome(journal, result["update"], timeout=float(health_s) + 30.0))
    return result


def _apply_locked(layout, journal, bundle_path, *, release_keys, by, expect_sha256, on_step, health_s,
                  probation_s, keep, restart, running_version) -> dict:
    st = J.recover(layout, journal, locked=True)  # an earlier update cut short by a power cut: finished or undone first
    if st["trial"] is not None:  # not journalled: the trial's own lines must stay the last ones
        t = st["trial"]
        raise UpdateError("busy", f"release {t['version']} is on trial (waiting for its health gate): "
                                  "try again once it is healthy or rolled back")
    journal.compact()
    uid = secrets.token_hex(4)
    running = running_version or R.current_version(layout) or _package_version()

    def step(name: str, **fields) -> dict:
        entry = journal.append({"update": uid, "step": name, "by": by, **fields})
        if on_step is not None:
            try:
                on_step(entry)
            except Exception as e:  # an audit that fails must not leave the update half-done
                log.error("update step %s not reported: %s", name, e)
        return entry

    step("received", bundle=os.path.basename(bundle_path), running=running)
    try:
        if not release_keys:
            raise UpdateError("no_updates", "this gateway accepts no update: its config has no [updates] "
                                            "table with release_keys (docs/updates.md)")
        if expect_sha256 is not None:
            got = _sha256_file(bundle_path)
            if got != expect_sha256.lower():
                raise UpdateError("sha256", f"the bundle's sha256 is {got}, the command said {expect_sha256}")
        staging = layout.staging_dir(uid)
        _check_room(layout.update_dir, bundle_path, layout.data_dir, "staging its wheels")
        try:
            manifest = open_verified(bundle_path, release_keys, staging, running=running)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    except UpdateError as e:
        step("refused", reason=e.reason, message=e.message)
        raise
    version = manifest["version"]
    step("verified", version=version, min_version=manifest["min_version"])
    # two releases kept: the running one and the one before it; a rolled-back one goes now
    gone = R.prune(layout, [running, st["previous"]], keep=max(2, int(keep)) - 1)  # -1: room for the new one
    if gone:
        step("pruned", removed=sorted(gone))
    try:
        _check_room(layout.releases, bundle_path, layout.data_dir, f"installing {version}")
    except UpdateError as e:
        shutil.rmtree(staging, ignore_errors=True)
        step("refused", version=version, reason=e.reason, message=e.message)
        raise
    try:
        step("installing", version=version)
        install_release(layout, version, os.path.join(staging, "wheels"), manifest)
        step("installed", version=version)
    except Exception as e:  # an unforeseen OSError too: undone and said, never half-installed
        err = e if isinstance(e, UpdateError) else UpdateError("install", f"installing {version}: {e}")
        shutil.rmtree(layout.release_dir(version), ignore_errors=True)
        step("failed", version=version, reason=err.reason, message=err.message)
        raise err from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    probation_s = min(float(probation_s), float(health_s) / 2) if probation_s >= health_s else float(probation_s)
    os.sync()  # the new release's files on the card before `current` points at them (a power cut after
    # the switch must not boot a release whose files are still in the page cache only)
    step("switching", version=version, previous=running, health_s=float(health_s),
         probation_s=float(probation_s), keep=int(keep))
    try:
        R.switch(layout, version)
    except OSError as e:
        if R.current_version(layout) != version:
            R.remove_release(layout, version)
        step("failed", version=version, reason="switch", message=f"cannot switch {layout.current}: {e.strerror}")
        raise UpdateError("switch", f"cannot switch {layout.current}: {e.strerror}; the running release "
                                    "is untouched") from None
    step("switched", version=version, previous=running)
    step("restarting", version=version)
    pid = (restart or (lambda: R.restart_daemon(layout)))()
    result = {"update": uid, "version": version, "previous": running, "outcome": "switched", "reason": None}
    if restart is None and pid is None:  # no daemon to restart: the next start of the service tries it
        result["reason"] = "not_running"
    return result


def _check_room(where: str, bundle_path: str, data_dir: str, doing: str) -> None:
    """Refuse ('disk_full', nothing changed yet) when `where` has less free than the bundle's size -
    what staging its wheels, or installing them, writes at least - plus fetch.RESERVE_BYTES when it is
    on data_dir's filesystem: the outbox and alarms.state beside it keep the room an alarm needs."""
    from .fetch import RESERVE_BYTES

    try:
        need = os.path.getsize(bundle_path)
    except OSError as e:
        raise UpdateError("bundle", f"cannot read {bundle_path}: {e.strerror}") from None
    probe = where
    while not os.path.isdir(probe):  # releases/ or update/ not made yet: their parent's filesystem
        probe = os.path.dirname(probe) or "/"
    st = os.statvfs(probe)
    free = st.f_bavail * st.f_frsize
    try:
        shared = os.stat(probe).st_dev == os.stat(data_dir).st_dev
    except OSError:
        shared = True
    reserve = RESERVE_BYTES if shared else 0
    if free - need < reserve:
        raise UpdateError("disk_full", f"{doing} needs about {need // 2**20} MiB and would leave "
                                       f"{max(0, free - need) // 2**20} MiB free under {where} (at least "
                                       f"{reserve // 2**20} MiB stay free for the outbox); the running "
                                       "release is untouched")


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise UpdateError("bundle", f"cannot read {path}: {e.strerror}") from None
    return h.hexdigest()


def _package_version() -> str:
    from gateway import __version__

    return __version__
