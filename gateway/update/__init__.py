"""Signed over-the-air updates (issue 14, docs/updates.md).

A release bundle (`gateway-platform release`) is one tar file: the gateway's wheel and every
dependency's, a manifest (version, the oldest version it may replace, platform tags, sha256 of every
file) and an Ed25519 signature over the manifest by a release key pinned in `[updates] release_keys`.

`apply_bundle` (gateway.update.apply) verifies it, installs it offline into `releases/<version>`
beside the running release, switches the `releases/current` symlink atomically and restarts the
service; the launcher (gateway/update/launcher.py, installed outside every release by install.sh)
counts the new release's starts and runs the health gate, and rolls back by itself."""

from gateway.errors import UpdateError

__all__ = ["apply_bundle", "UpdateError"]


def __getattr__(name):
    # lazily: the daemon imports gateway.update.audit at every start to audit the step journal, and
    # apply pulls in cryptography, jsonschema and tarfile (+12 MB RSS on a gateway with no [updates])
    if name == "apply_bundle":
        from .apply import apply_bundle
        return apply_bundle
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
