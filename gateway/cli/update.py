"""`gateway update FILE`: a technician applies a release bundle (from a USB stick, say).

The bundle is checked against the config's `[updates] release_keys` before anything changes, installed
offline beside the running release, switched to, and the service restarted; then this command waits
for the launcher's health gate and says whether the new release is kept or was rolled back
(docs/updates.md). It must run as a user that may write the releases directory and signal the daemon:
root (sudo) or the service's user."""

from __future__ import annotations

import os
import sys

from gateway.errors import UpdateError

WORDS = {
    "received": "received {bundle} (running {running})",
    "verified": "signature and sha256 of every file verified: release {version} (replaces {min_version} or later)",
    "refused": "REFUSED ({reason}): {message}",
    "installing": "installing {version} offline",
    "installed": "installed {version}",
    "failed": "FAILED ({reason}): {message}",
    "switching": "switching to {version}",
    "switched": "current -> {version}",
    "restarting": "restarting the service",
}


def _say(entry: dict) -> None:
    text = WORDS.get(entry["step"])
    if text:
        try:
            print(text.format_map({**{k: "" for k in ("bundle", "running", "version", "min_version",
                                                         "reason", "message")}, **entry}), flush=True)
        except (KeyError, ValueError):
            print(entry["step"], flush=True)


def run_update(cfg, path: str, wait: bool = True) -> int:
    from gateway.update import apply_bundle

    up = cfg.updates
    if up is None:
        raise UpdateError("no_updates", f"{cfg.path} has no [updates] table: this gateway accepts no update "
                                        "(add release_keys, docs/updates.md)")
    by = f"cli:{_user()}[{os.getpid()}]"
    try:
        r = apply_bundle(path, data_dir=cfg.gateway.data_dir, install_root=up.install_root,
                         release_keys=list(up.release_keys), by=by, on_step=_say, health_s=up.health_s, probation_s=up.probation_s,
                         keep=up.keep, wait=wait)
    except PermissionError as e:
        raise UpdateError("permission", f"{e.filename or 'the daemon'}: permission denied: run it as root "
                                        f"(sudo gateway update {path}) or as the service's user") from None
    if r.get("reason") == "not_running":
        print(f"switched to {r['version']}; the daemon is not running: the release is tried (and its health "
              f"gate run) at the next start of the service: sudo systemctl start community-gateway")
        return 0
    if not wait:
        print(f"switched to {r['version']}: the health gate decides within {up.health_s:g} s "
              "(gateway status shows the outcome)")
        return 0
    if r["outcome"] == "healthy":
        print(f"release {r['version']} is healthy and kept (previous: {r['previous']})")
        return 0
    if r["outcome"] == "rolled_back":
        print(f"release {r['version']} ROLLED BACK to {r['previous']}: {r.get('reason')}: {r.get('message')}",
              file=sys.stderr)
        return 1
    print(f"release {r['version']} switched; no outcome from the health gate yet: watch gateway status",
          file=sys.stderr)
    return 2


def _user() -> str:
    import pwd

    try:
        return os.environ.get("SUDO_USER") or pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
