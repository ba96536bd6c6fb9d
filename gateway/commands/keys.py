"""Key files on the gateway: the pinned platform public keys ([commands] platform_keys) and the
permission check every private key file must pass (the MQTT client key; the platform's signing key).

A private key readable by other users is refused, not warned about: on a shared Pi any local account
could otherwise take the gateway's identity or, worse, the platform's."""

from __future__ import annotations

import os
import stat

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.errors import CommandError

PRIVATE_MARKERS = (b"PRIVATE KEY-----",)  # PKCS8, "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", ...


class KeyFileError(CommandError):
    """A key file is missing, unreadable, of the wrong kind, or too open."""

    def __init__(self, message: str):
        super().__init__("key_file", message)

    def __str__(self) -> str:
        return self.message


def check_private_key_file(path: str) -> None:
    """Raise KeyFileError unless `path` is a regular file only its owner can read or write."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise KeyFileError(f"private key {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"private key {path} is not a regular file")
    if st.st_mode & 0o077:
        raise KeyFileError(f"private key {path} is readable or writable by other users "
                           f"(mode {stat.S_IMODE(st.st_mode):04o}): chmod 600 {path}")


def load_public_keys(paths) -> list[Ed25519PublicKey]:
    """The platform's Ed25519 public keys (PEM SubjectPublicKeyInfo), in the order given.
    Raises KeyFileError naming the file; a private key given by mistake is refused, and if it is
    readable by others the message says how to close it."""
    keys = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read(64 * 1024)
        except OSError as e:
            raise KeyFileError(f"platform key {path}: {e.strerror}") from None
        if any(m in data for m in PRIVATE_MARKERS):
            try:
                check_private_key_file(path)
            except KeyFileError as e:
                raise KeyFileError(f"{e.message}; it is a PRIVATE key and does not belong on the gateway: "
                                   f"pin the platform's .pub file instead") from None
            raise KeyFileError(f"platform key {path} is a PRIVATE key: pin the platform's .pub file instead")
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as e:
            raise KeyFileError(f"platform key {path} is not a PEM public key ({e})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"platform key {path} is a {type(key).__name__.lstrip('_')}, "
                               "not an Ed25519 public key")
        keys.append(key)
    return keys
