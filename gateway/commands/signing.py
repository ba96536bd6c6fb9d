"""Commands signed by the platform: Ed25519 over a canonical form (docs/commands.md).

The canonical form of a command is its JSON object without the `sig` member, serialised with keys
sorted, no whitespace, non-ASCII characters as themselves (not \\u escapes), UTF-8. The schema
admits only ASCII keys, integers and strings without unpaired surrogates, and for such objects this
is exactly RFC 8785 (JCS), so a platform in any language can produce the same bytes.

`verify` is everything between a payload off the wire and a Command the gateway may carry out;
whatever it refuses is a CommandRejected with a reason word and a message for the operator."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

import jsonschema
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.errors import CommandError

from .issue_times import key_id
from .schemas import ARGS, COMMANDS, ENVELOPE

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_VALIDITY_S = 300.0  # expires_at - issued_at: a captured command is useless after 5 minutes
MAX_SKEW_S = 30.0  # issued_at may be this far in the gateway's future (the two clocks differ)
MIN_NONCE_BYTES = 16
MESSAGE_MAX = 300  # a rejection quotes the payload; a 60 KB string is not a message

_ENVELOPE = jsonschema.Draft202012Validator(ENVELOPE)
_ARGS = {name: jsonschema.Draft202012Validator(schema) for name, schema in ARGS.items()}


class CommandRejected(CommandError):
    """A command refused before anything was done: not signed by a pinned key, expired, replayed,
    malformed. Recorded as an audit event with outcome "rejected"."""


@dataclass(frozen=True)
class Command:
    """A command that passed every check: signed by a pinned key, for this gateway, fresh, new."""
    id: str
    gateway: str
    name: str
    args: dict
    issued_at: float  # Unix seconds
    expires_at: float
    nonce: str
    key_index: int  # which of the pinned platform keys signed it


def canonical_bytes(command: dict) -> bytes:
    """The bytes that are signed: the command minus `sig`, as canonical JSON in UTF-8."""
    body = {k: v for k, v in command.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Unpadded base64url (the schema has already checked the alphabet). Raises ValueError."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"not base64url: {e}") from e


def sign(private_key: Ed25519PrivateKey, command: dict) -> str:
    """The `sig` value for `command` (any `sig` already in it is ignored)."""
    return b64url(private_key.sign(canonical_bytes(command)))


def parse_utc(text: str) -> float:
    """An issued_at/expires_at (schema-checked shape) as Unix seconds. Raises ValueError."""
    return datetime.fromisoformat(text).timestamp()


def command_id_of(obj) -> str | None:
    """The id to echo in a reply, if the payload has a sensible one (even if it is rejected)."""
    cid = obj.get("id") if isinstance(obj, dict) else None
    return cid if isinstance(cid, str) and 0 < len(cid) <= 128 and cid.isprintable() else None


def parse(payload: bytes) -> dict:
    """Bytes off the wire -> the JSON object. Raises CommandRejected."""
    if not isinstance(payload, (bytes, bytearray)):
        raise CommandRejected("not_json", f"payload must be bytes, not {type(payload).__name__}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise CommandRejected("too_large", f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    try:
        text = bytes(payload).decode("utf-8")
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except UnicodeDecodeError as e:
        raise CommandRejected("not_json", f"payload is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise CommandRejected("not_json", f"payload is not JSON: {e.msg} at line {e.lineno} column {e.colno}") \
            from None
    except _DuplicateKey as e:
        raise CommandRejected("not_json", f"payload repeats the key {_short(str(e))}") from None
    except RecursionError:
        raise CommandRejected("not_json", "payload is nested too deeply") from None
    if not isinstance(obj, dict):
        raise CommandRejected("not_object", f"payload must be a JSON object, not {_json_type(obj)}")
    return obj


def verify(payload: bytes, topic_name: str, gateway_id: str, keys, now: float, nonces) -> Command:
    """Check a command from <root>/<gateway>/cmd/<topic_name>. `keys`: the pinned platform
    Ed25519PublicKeys; `now`: Unix seconds; `nonces`: a NonceCache, which records the nonce only
    if everything else passed. Returns the Command or raises CommandRejected."""
    obj = parse(payload)
    if not keys:
        raise CommandRejected("disabled", "this gateway accepts no remote command (no [commands] table "
                                          "with platform_keys in its configuration)")
    if "sig" not in obj or obj["sig"] in (None, ""):
        raise CommandRejected("unsigned", "the command has no signature (sig)")
    if topic_name not in COMMANDS:
        raise CommandRejected("unknown_command", f"unknown command {_short(topic_name)!r} in the topic; "
                                                 f"known: {', '.join(COMMANDS)}")
    _check_schema(_ENVELOPE, obj, "")
    _check_schema(_ARGS[obj["name"]], obj["args"], "args")
    _check_values(obj)
    key_index = _check_signature(obj, keys)
    # From here on the platform really sent this: the reasons below are its mistakes, not attacks.
    if obj["name"] != topic_name:
        raise CommandRejected("name_mismatch", f"published on cmd/{topic_name} but the signed name is "
                                               f"{obj['name']!r}")
    if obj["gateway"] != gateway_id:
        raise CommandRejected("wrong_gateway", f"meant for gateway {_short(obj['gateway'])!r}, this is "
                                               f"{gateway_id!r}")
    issued, expires = _check_times(obj, now)
    if nonces.refuse_issued_before is not None and issued < nonces.refuse_issued_before:
        raise CommandRejected("replayed", "the nonce cache was lost at the last start; a command issued "
                                          "before then could be a replay: sign a new one")
    try:
        nonces.remember(obj["nonce"], expires, issued, key_id(keys[key_index]))
    except CommandError as e:
        raise CommandRejected(e.reason, e.message) from None
    return Command(id=obj["id"], gateway=obj["gateway"], name=obj["name"], args=obj["args"],
                   issued_at=issued, expires_at=expires, nonce=obj["nonce"], key_index=key_index)


def _check_schema(validator, instance, where: str) -> None:
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is not None:
        path = ".".join(str(p) for p in [where, *error.absolute_path] if p != "")
        raise CommandRejected("schema", _short(f"{path or 'command'}: {error.message}"))


def _check_values(obj) -> None:
    """What JSON Schema cannot say: no floats anywhere (5.0 passes "integer"), no unpaired surrogate
    (a \\ud800 escape) that has no UTF-8 form, a nonce of enough random bytes."""
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
            stack.extend(value.keys())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, float):
            raise CommandRejected("schema", f"numbers must be integers without a fraction or exponent "
                                            f"(got {_short(repr(value))})")
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise CommandRejected("schema", "a string holds an unpaired UTF-16 surrogate escape") from None
    try:
        nonce = b64url_decode(obj["nonce"])
    except ValueError as e:
        raise CommandRejected("schema", f"nonce: {e}") from None
    if len(nonce) < MIN_NONCE_BYTES:
        raise CommandRejected("schema", f"nonce: {len(nonce)} bytes; at least {MIN_NONCE_BYTES} random bytes")


def _check_signature(obj: dict, keys) -> int:
    try:
        sig = b64url_decode(obj["sig"])
    except ValueError as e:
        raise CommandRejected("bad_signature", f"sig: {e}") from None
    message = canonical_bytes(obj)
    for i, key in enumerate(keys):
        try:
            key.verify(sig, message)
            return i
        except InvalidSignature:
            continue
    raise CommandRejected("bad_signature", f"the signature does not match any of the {len(keys)} pinned "
                                           "platform key(s)")


def _check_times(obj: dict, now: float) -> tuple[float, float]:
    try:
        issued, expires = parse_utc(obj["issued_at"]), parse_utc(obj["expires_at"])
    except ValueError as e:
        raise CommandRejected("schema", f"issued_at/expires_at: {e}") from None
    if expires <= issued:
        raise CommandRejected("bad_validity", "expires_at must be after issued_at")
    if expires - issued > MAX_VALIDITY_S:
        raise CommandRejected("bad_validity", f"valid for {expires - issued:g} s; at most {MAX_VALIDITY_S:g} s "
                                              "(expires_at - issued_at)")
    if issued > now + MAX_SKEW_S:
        raise CommandRejected("not_yet_valid", f"issued {issued - now:.0f} s in this gateway's future "
                                               f"(tolerance {MAX_SKEW_S:g} s): is one of the clocks wrong?")
    if now >= expires:
        raise CommandRejected("expired", f"expired {now - expires:.0f} s ago (at {obj['expires_at']})")
    return issued, expires


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs):
    # Two `name`s in one object: the signer and the gateway might each read a different one.
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise _DuplicateKey(k)
        obj[k] = v
    return obj


def _no_constants(name):
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def _json_type(obj) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(obj), "a number")


def _short(text: str) -> str:
    return text if len(text) <= MESSAGE_MAX else text[:MESSAGE_MAX] + "..."


__all__ = ["Command", "CommandRejected", "verify", "parse", "canonical_bytes", "sign", "b64url",
           "b64url_decode", "parse_utc", "command_id_of", "Ed25519PublicKey", "MAX_PAYLOAD_BYTES",
           "MAX_VALIDITY_S", "MAX_SKEW_S"]
