"""The release manifest and its signature (docs/updates.md, "Bundle format").

manifest.json is canonical JSON (keys sorted, no whitespace, UTF-8): the bytes that are signed are the
bytes in the bundle, so nothing is re-serialised before the signature is checked.

    {"format": 1, "name": "community-gateway", "version": "0.2.0", "min_version": "0.1.0",
     "python": ">=3.11", "platforms": ["any", "manylinux_2_17_x86_64", ...], "created": "2026-...Z",
     "gateway_wheel": "wheels/community_gateway-0.2.0-py3-none-any.whl",
     "files": {"wheels/...whl": {"sha256": "<hex>", "size": 123}, ...}}

manifest.sig is the Ed25519 signature (RFC 8032) of manifest.json, base64url without padding, as the
command signatures are (gateway/commands/signing.py)."""

from __future__ import annotations

import json
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.commands.signing import b64url, b64url_decode
from gateway.errors import UpdateError

from . import versions

FORMAT = 1
NAME = "community-gateway"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MAX_MANIFEST_BYTES = 1 << 20
_FILE = re.compile(r"^wheels/[A-Za-z0-9_.+!-]+\.whl$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


def encode(manifest: dict) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return b64url(key.sign(data)).encode("ascii")


def load_release_keys(items) -> list[Ed25519PublicKey]:
    """Keys as given to apply_bundle: Ed25519PublicKey objects or PEM file paths."""
    from gateway.commands.keys import KeyFileError, load_public_keys

    out = []
    for k in items:
        if isinstance(k, Ed25519PublicKey):
            out.append(k)
            continue
        try:
            out.extend(load_public_keys([str(k)]))
        except KeyFileError as e:
            raise UpdateError("release_key", e.message.replace("platform key", "release key")) from None
    return out


def load_private_key(path: str) -> Ed25519PrivateKey:
    from gateway.commands.keys import check_private_key_file

    check_private_key_file(path)
    with open(path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise UpdateError("release_key", f"{path} is not an Ed25519 private key")
    return key


def verify(data: bytes, sig: bytes, keys: list[Ed25519PublicKey]) -> int:
    """The index of the pinned key that signed `data`; UpdateError("signature") if none did."""
    try:
        raw = b64url_decode(sig.strip().decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise UpdateError("signature", "the bundle's signature is not base64url") from None
    for i, key in enumerate(keys):
        try:
            key.verify(raw, data)
            return i
        except InvalidSignature:
            continue
    raise UpdateError("signature", "the bundle is not signed by a pinned release key "
                                   "([updates] release_keys): refused, nothing was changed")


def parse(data: bytes) -> dict:
    """The manifest's fields, checked for shape (after the signature: a signed manifest is still checked)."""
    try:
        m = json.loads(data)
    except ValueError as e:
        raise UpdateError("manifest", f"the manifest is not JSON ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or m.get("name") != NAME:
        raise UpdateError("manifest", f"not a {NAME} release manifest of format {FORMAT}")
    for k in ("version", "min_version"):
        if not isinstance(m.get(k), str) or not versions.valid(m[k]):
            raise UpdateError("manifest", f"manifest {k} {m.get(k)!r} is not a release version")
    files = m.get("files")
    if not isinstance(files, dict) or not files:
        raise UpdateError("manifest", "the manifest lists no files")
    for name, f in files.items():
        if not _FILE.match(name) or ".." in name:
            raise UpdateError("manifest", f"the manifest names a file outside wheels/: {name!r}")
        if (not isinstance(f, dict) or not isinstance(f.get("sha256"), str) or not _HEX.match(f["sha256"])
                or not isinstance(f.get("size"), int) or f["size"] < 0):
            raise UpdateError("manifest", f"the manifest's entry for {name} has no sha256 and size")
    if m.get("gateway_wheel") not in files:
        raise UpdateError("manifest", "the manifest names no gateway wheel among its files")
    if not isinstance(m.get("platforms"), list):
        raise UpdateError("manifest", "the manifest lists no platform tags")
    return m
