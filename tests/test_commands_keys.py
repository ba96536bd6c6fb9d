"""Key files: keygen's modes and formats, private keys readable by others refused with the fix in
the message, the wrong kind of key refused by name, and the command-line helpers of `send`."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.commands import KeyFileError, check_private_key_file, load_public_keys
from gateway.errors import CommandError, GatewayError
from gateway.platform.keys import keygen, load_private_key
from gateway.platform.sign import command_args, sign_command


def test_keygen_writes_a_0600_private_key_and_a_public_key(tmp_path):
    key_path, pub_path = keygen(str(tmp_path / "platform"))
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    assert open(key_path).read().startswith("-----BEGIN PRIVATE KEY-----")
    assert open(pub_path).read().startswith("-----BEGIN PUBLIC KEY-----")
    (public,) = load_public_keys([pub_path])
    private = load_private_key(key_path)
    public.verify(private.sign(b"x"), b"x")  # a pair
    with pytest.raises(KeyFileError, match="exists; refusing to overwrite"):
        keygen(str(tmp_path / "platform"))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_private_key_readable_by_others_is_refused(tmp_path, mode):
    key_path, _ = keygen(str(tmp_path / "platform"))
    os.chmod(key_path, mode)
    with pytest.raises(KeyFileError) as e:
        load_private_key(key_path)
    assert f"chmod 600 {key_path}" in str(e.value)
    assert isinstance(e.value, GatewayError)
    with pytest.raises(KeyFileError, match="chmod 600"):
        check_private_key_file(key_path)  # the same check for the gateway's own MQTT client key


def test_check_private_key_file_accepts_0600_and_0400(tmp_path):
    key_path, _ = keygen(str(tmp_path / "platform"))
    check_private_key_file(key_path)
    os.chmod(key_path, 0o400)
    check_private_key_file(key_path)
    with pytest.raises(KeyFileError, match="No such file"):
        check_private_key_file(str(tmp_path / "missing.key"))


def test_a_private_key_pinned_as_a_platform_key_is_refused(tmp_path):
    key_path, _ = keygen(str(tmp_path / "platform"))
    with pytest.raises(KeyFileError, match="is a PRIVATE key: pin the platform's .pub"):
        load_public_keys([key_path])
    os.chmod(key_path, 0o644)
    with pytest.raises(KeyFileError) as e:
        load_public_keys([key_path])
    assert f"chmod 600 {key_path}" in str(e.value) and "does not belong on the gateway" in str(e.value)


def test_a_non_ed25519_public_key_is_refused_by_name(tmp_path):
    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "ec.pub").write_bytes(pem)
    (tmp_path / "junk.pub").write_text("hello\n")
    with pytest.raises(KeyFileError, match="not an Ed25519 public key"):
        load_public_keys([str(tmp_path / "ec.pub")])
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_public_keys([str(tmp_path / "junk.pub")])


def test_sign_command_refuses_a_validity_over_five_minutes(tmp_path):
    key = load_private_key(keygen(str(tmp_path / "platform"))[0])
    with pytest.raises(CommandError, match="at most 300"):
        sign_command(key, "gw", "status", {}, ttl_s=301)
    cmd = sign_command(key, "gw", "status", {}, ttl_s=300, now=0.0)
    assert (cmd["issued_at"], cmd["expires_at"]) == ("1970-01-01T00:00:00.000Z", "1970-01-01T00:05:00.000Z")


def test_command_args_from_the_command_line(tmp_path):
    (tmp_path / "new.toml").write_text("[gateway]\n")
    assert command_args(["output=garage-siren", "seconds=5", f"toml=@{tmp_path}/new.toml"]) == {
        "output": "garage-siren", "seconds": 5, "toml": "[gateway]\n"}
    with pytest.raises(CommandError, match="NAME=VALUE"):
        command_args(["seconds"])
