"""The command contract a platform team implements from docs/commands.md: the test vectors on that
page verify with this code, the published schemas are the ones the gateway checks with, and real
replies and audit events validate against the schemas."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.commands.nonces import NonceCache
from gateway.commands.schemas import documents
from gateway.commands.signing import canonical_bytes, parse_utc, sign, verify
from gateway.platform.schemas import Contract
from gateway.record.envelope import build as build_envelope

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
PUBLIC_PEM = ("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n"
              "-----END PUBLIC KEY-----\n")
VECTORS = [
    ({"v": 1, "id": "cmd-0001", "gateway": "pd-zhangjiang-001", "name": "siren_test",
      "args": {"output": "garage-siren", "seconds": 5},
      "issued_at": "2025-06-01T08:00:00.000Z", "expires_at": "2025-06-01T08:01:00.000Z",
      "nonce": "AAECAwQFBgcICQoLDA0ODw"},
     '{"args":{"output":"garage-siren","seconds":5},"expires_at":"2025-06-01T08:01:00.000Z",'
     '"gateway":"pd-zhangjiang-001","id":"cmd-0001","issued_at":"2025-06-01T08:00:00.000Z",'
     '"name":"siren_test","nonce":"AAECAwQFBgcICQoLDA0ODw","v":1}',
     "U4GoJ86FUQWKealMm-OQVf9p5kGRA-ZvLqiHrtHl9vl9hfJRfw9nT2SL4eTGS3s46HTuTCBR_-vU2n0KuihgCQ"),
    ({"v": 1, "id": "cmd-0002", "gateway": "pd-zhangjiang-001", "name": "config_push",
      "args": {"toml": '# 张江 "B2"\n[gateway]\nid = "pd-zhangjiang-001"\n'},
      "issued_at": "2025-06-01T08:00:00.000Z", "expires_at": "2025-06-01T08:05:00.000Z",
      "nonce": "EBESExQVFhcYGRobHB0eHw"},
     '{"args":{"toml":"# 张江 \\"B2\\"\\n[gateway]\\nid = \\"pd-zhangjiang-001\\"\\n"},'
     '"expires_at":"2025-06-01T08:05:00.000Z","gateway":"pd-zhangjiang-001","id":"cmd-0002",'
     '"issued_at":"2025-06-01T08:00:00.000Z","name":"config_push","nonce":"EBESExQVFhcYGRobHB0eHw","v":1}',
     "WWmVAzozuj0YMP2J9M2YphpETy9Amr_lvphbXUjvd-mXg0MOGFBGb_rg4SJkWkjpnbAh8Yemz_ufwEq4Ek9IDQ"),
]


def vector_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(SEED))


@pytest.mark.parametrize("command, canonical, signature", VECTORS)
def test_the_documented_test_vectors(command, canonical, signature, tmp_path):
    key = vector_key()
    assert canonical_bytes(command) == canonical.encode("utf-8")
    assert sign(key, command) == signature
    # ... and every one of them is written on the page, byte for byte
    assert SEED in DOC and PUBLIC_PEM in DOC
    assert f"\n{canonical}\n" in DOC
    assert f"Signature: `{signature}`" in DOC
    assert f"({len(canonical.encode())} bytes" in DOC
    # the gateway accepts it at a time inside its window, with the documented public key pinned
    public = serialization.load_pem_public_key(PUBLIC_PEM.encode())
    wire = json.dumps({**command, "sig": signature}, ensure_ascii=False).encode()
    at = parse_utc(command["issued_at"]) + 1
    cmd = verify(wire, command["name"], "pd-zhangjiang-001", [public], at, NonceCache(str(tmp_path)))
    assert cmd.id == command["id"] and cmd.args == command["args"]


def test_vector_two_keeps_non_ascii_as_utf8_not_escapes():
    canonical = canonical_bytes(VECTORS[1][0])
    assert "张江".encode() in canonical and b"\\u" not in canonical


def test_docs_schemas_are_the_ones_the_gateway_checks_with():
    published = {p.name: json.loads(p.read_text()) for p in (ROOT / "gateway" / "contract").glob("cmd-*.json")}
    assert published == documents()


def test_every_command_name_and_reason_is_documented():
    from gateway.commands.schemas import COMMANDS
    from gateway.commands import signing

    for name in COMMANDS:
        assert f"| `{name}` |" in DOC
    source = Path(signing.__file__).read_text() + Path(signing.__file__).with_name("nonces.py").read_text()
    reasons = set(re.findall(r'Command(?:Rejected|Error)\("([a-z_]+)"', source))
    assert reasons and all(f"| `{r}` |" in DOC for r in reasons), reasons


def test_the_published_envelope_ties_args_to_each_command():
    contract = Contract()
    signed = {**VECTORS[0][0], "sig": VECTORS[0][2]}
    assert contract.errors("cmd-envelope", signed) == []
    bad = {**signed, "args": {"output": "garage-siren", "seconds": 600}}
    assert contract.errors("cmd-envelope", bad), "seconds beyond 60 must fail the published schema too"
    assert contract.errors("cmd-envelope", {**signed, "shell": "reboot"})


def test_replies_and_audit_events_validate(tmp_path):
    from gateway.commands import CommandHandler

    class NoDaemon:  # only for the rejection path: nothing reaches a daemon
        class cfg:
            class gateway:
                id = "pd-zhangjiang-001"

    replies, audits = [], []
    public = serialization.load_pem_public_key(PUBLIC_PEM.encode())
    handler = CommandHandler(NoDaemon, [public], str(tmp_path), audits.append, replies.append)
    handler.handle("silence", b"{}")
    handler.handle("silence", json.dumps({**VECTORS[0][0], "sig": VECTORS[0][2]}).encode())  # long expired
    contract = Contract()
    assert [r["error"] for r in replies] == ["unsigned", "name_mismatch"]
    for reply in replies:
        assert contract.errors("cmd-reply", reply) == []
    for i, fields in enumerate(audits):
        event = json.loads(build_envelope("pd-zhangjiang-001", i + 1, 1.7e9, True, "boot", "audit", fields))
        assert contract.errors("audit", event) == []
