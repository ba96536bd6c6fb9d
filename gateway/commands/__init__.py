"""Commands from the platform: signed (Ed25519), checked against their JSON Schemas, fresh, never
replayed, audited, and carried out through the same daemon methods as the local CLI.
docs/commands.md is the contract; signing.py the canonical form; handler.py the entry point."""

from .handler import CommandHandler
from .keys import KeyFileError, check_private_key_file, load_public_keys
from .signing import Command, CommandRejected, canonical_bytes, sign, verify

__all__ = ["CommandHandler", "Command", "CommandRejected", "KeyFileError", "canonical_bytes", "sign",
           "verify", "load_public_keys", "check_private_key_file"]
