"""The JSON Schemas of a command from the platform: the signed envelope and each command's `args`.

They live here, as code, because the gateway validates with them on the Pi; gateway/contract/cmd-*.json
(package data, referred to by docs/asyncapi.yaml) are copies for the platform team, kept identical by a test
(tests/test_commands_contract.py). Every number a command carries is an integer: a float has no
single canonical spelling across languages (5.0 vs 5), and the signature covers the spelling."""

from __future__ import annotations

BASE_ID = "https://community-gateway.example/schemas/v1/"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

# ISO 8601 UTC with a Z, whole seconds or a fraction of up to 6 digits: 2025-06-01T08:00:00.123Z
UTC_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$"
BASE64URL = "^[A-Za-z0-9_-]+$"  # RFC 4648 section 5, without '=' padding

NO_ARGS: dict = {"type": "object", "additionalProperties": False, "properties": {}}

ARGS: dict[str, dict] = {
    "silence": {
        "description": "Switch the sirens off; the alarms stay active. Without `alarm`: every active alarm.",
        "type": "object", "additionalProperties": False,
        "properties": {"alarm": {"type": "string", "minLength": 1, "maxLength": 200}},
    },
    "ack": {
        "description": "Acknowledge an alarm by id, or \"all\". A latched (smoke) alarm clears only after this.",
        "type": "object", "additionalProperties": False, "required": ["alarm"],
        "properties": {"alarm": {"type": "string", "minLength": 1, "maxLength": 200}},
    },
    "siren_test": {
        "description": "Sound one output for a few seconds (the technician's self-test, remotely).",
        "type": "object", "additionalProperties": False, "required": ["output", "seconds"],
        "properties": {"output": {"type": "string", "minLength": 1, "maxLength": 200},
                       "seconds": {"type": "integer", "minimum": 1, "maximum": 60}},
    },
    "drill": {
        "description": "An emergency drill (应急演练): `start` sounds the outputs of `area` (default every output) "
                       "for `minutes` (default 30) with the drill announcement before each message; its alarm "
                       "events carry \"drill\": true. `stop` ends it.",
        "type": "object", "additionalProperties": False, "required": ["action"],
        "properties": {"action": {"enum": ["start", "stop"]},
                       "minutes": {"type": "integer", "minimum": 1, "maximum": 240},
                       "area": {"type": "string", "minLength": 1, "maxLength": 200}},
    },
    "status": {"description": "The gateway's full status in the reply.", **NO_ARGS},
    "rebirth": {"description": "Publish the retained birth message again.", **NO_ARGS},
    "config_get": {"description": "The configuration file's text in the reply.", **NO_ARGS},
    "config_push": {
        "description": "A whole new configuration file. `replaces`: the sha256 of the file it replaces "
                       "(from config_get); if given and the file has changed since, the push is refused.",
        "type": "object", "additionalProperties": False, "required": ["toml"],
        "properties": {"toml": {"type": "string", "minLength": 1, "maxLength": 60000},
                       "replaces": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                       "changes_access": {
                           "description": "What the push knowingly changes of how the platform reaches the "
                                          "gateway: \"commands\" (the pinned platform keys), \"uplink\" (the "
                                          "broker, topic root or identity). Without it such a push is refused; "
                                          "with it the push is kept only if a signed command reaches the "
                                          "gateway through the new settings within the watch window.",
                           "type": "array", "uniqueItems": True, "maxItems": 2,
                           "items": {"enum": ["commands", "uplink"]}}},
    },
    "update": {
        "description": "Download a release bundle over HTTPS (resumed, at most [updates] download_max_mb, the "
                       "server pinned by the uplink's CA) and apply it (docs/updates-fetch.md). `sha256` and "
                       "`size` are of the whole bundle file as served. Refused without an [updates] table. "
                       "Replies: result.state \"downloading\" (more follow), then the outcome.",
        "type": "object", "additionalProperties": False, "required": ["url", "sha256", "size"],
        "properties": {"url": {"type": "string", "pattern": "^https://[^\\s]+$", "maxLength": 2000},
                       "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                       "size": {"type": "integer", "minimum": 1, "maximum": 2_000_000_000},
                       "version": {"type": "string", "minLength": 1, "maxLength": 64,
                                   "description": "What the platform means to install, for the replies and "
                                                  "the audit; the bundle's signed manifest decides."}},
    },
}

COMMANDS = tuple(ARGS)

ENVELOPE: dict = {
    "$schema": DRAFT,
    "$id": BASE_ID + "cmd-envelope.json",
    "title": "Command from the platform",
    "description": "Published on <root>/<gateway>/cmd/<name>. `sig` is the Ed25519 signature of the "
                   "canonical form of every other field (docs/commands.md). `args` is checked against "
                   "cmd-<name>.json (underscores as hyphens).",
    "type": "object",
    "additionalProperties": False,
    "required": ["v", "id", "gateway", "name", "args", "issued_at", "expires_at", "nonce", "sig"],
    "properties": {
        "v": {"const": 1},
        "id": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,128}$",
               "description": "Chosen by the platform; echoed in the reply and the audit event."},
        "gateway": {"type": "string", "minLength": 1, "maxLength": 128},
        "name": {"enum": list(COMMANDS)},
        "args": {"type": "object"},
        "issued_at": {"type": "string", "pattern": UTC_TIMESTAMP},
        "expires_at": {"type": "string", "pattern": UTC_TIMESTAMP},
        "nonce": {"type": "string", "pattern": BASE64URL, "minLength": 22, "maxLength": 128,
                  "description": "At least 16 random bytes, base64url without padding."},
        "sig": {"type": "string", "pattern": BASE64URL, "minLength": 86, "maxLength": 86,
                "description": "64-byte Ed25519 signature, base64url without padding."},
    },
}


REPLY: dict = {
    "$schema": DRAFT,
    "$id": BASE_ID + "cmd-reply.json",
    "title": "Reply to a command",
    "description": "Published on <root>/<gateway>/reply. `id` is the command's (null if the payload had "
                   "none worth echoing). config_push gets two: result.state \"applying\", then the verdict.",
    "type": "object",
    "required": ["id", "ok", "message"],
    "properties": {
        "id": {"type": ["string", "null"]},
        "command": {"type": "string"},
        "ok": {"type": "boolean"},
        "error": {"type": "string", "minLength": 1},
        "message": {"type": "string"},
        "result": {},
    },
    "if": {"properties": {"ok": {"const": False}}},
    "then": {"required": ["error"]},
}


def file_name(name: str) -> str:
    """cmd-siren-test.json for siren_test: file names in gateway/contract use hyphens only."""
    return f"cmd-{name.replace('_', '-')}.json"


def documents() -> dict[str, dict]:
    """File name -> schema, for every gateway/contract/cmd-*.json. The published envelope also ties
    `args` to each command's schema; the gateway checks the two separately for sharper messages."""
    per_name = [{"if": {"properties": {"name": {"const": n}}},
                 "then": {"properties": {"args": {"$ref": file_name(n)}}}} for n in COMMANDS]
    docs = {"cmd-envelope.json": {**ENVELOPE, "allOf": per_name}, "cmd-reply.json": REPLY}
    for n in COMMANDS:
        docs[file_name(n)] = {"$schema": DRAFT, "$id": BASE_ID + file_name(n), "title": f"args of {n}", **ARGS[n]}
    return docs
