"""The platform's signing keys: `gateway-platform keygen --out PREFIX` and loading them to sign.

PREFIX.key is the Ed25519 private key (PEM PKCS8, unencrypted, mode 0600: keep it on the platform);
PREFIX.pub is the public key (PEM SubjectPublicKeyInfo) that each gateway pins in
[commands] platform_keys."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.commands.keys import KeyFileError, check_private_key_file


def keygen(prefix: str) -> tuple[str, str]:
    """Write PREFIX.key and PREFIX.pub; return their paths. Never overwrites a key: losing the
    platform's private key means re-pinning every gateway."""
    key_path, pub_path = f"{prefix}.key", f"{prefix}.pub"
    for path in (key_path, pub_path):
        if os.path.exists(path):
            raise KeyFileError(f"{path} exists; refusing to overwrite a key (choose another --out)")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    # created 0600 in one step: there is no moment in which another user could open it
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    os.chmod(key_path, 0o600)  # against a umask that took bits away, never one that adds them
    with open(pub_path, "wb") as f:
        f.write(public)
    return key_path, pub_path


def load_private_key(path: str) -> Ed25519PrivateKey:
    """The platform's signing key. Raises KeyFileError if it is missing, not Ed25519, or readable
    by others ("chmod 600 PATH")."""
    check_private_key_file(path)
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise KeyFileError(f"signing key {path}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"signing key {path} is not an Ed25519 key")
    return key
