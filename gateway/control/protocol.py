"""The control socket's wire format, shared by the daemon's server and the CLI's client.

One JSON object per line, UTF-8, newline-terminated:

    request   {"cmd": "status", "args": {...}}
    reply     {"ok": true, "result": ...}
              {"ok": false, "error": "message for the technician", "code": "unknown-command"}

A streaming command (``events --follow``) answers with a header line ``{"ok": true, "stream": true}``
at once, then one ``{"ok": true, "result": ...}`` line per item, and ``{"ok": true, "end": true}`` when
the daemon has nothing more to send (never, for a follow, until the client hangs up). The header lets
the client time out on a dead daemon without timing out on a quiet stream.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import os
from pathlib import PurePath

MAX_REQUEST_BYTES = 64 * 1024  # a status request is ~30 bytes; anything near this is not our CLI
RUN_DIR = "/run/community-gateway"  # systemd's RuntimeDirectory= for the service
SOCKET_NAME = "control.sock"

# Reply codes. Handlers' own GatewayErrors use the exception's class name (e.g. "ConfigError").
BAD_JSON = "bad-json"
BAD_REQUEST = "bad-request"
TOO_LARGE = "too-large"
UNKNOWN_COMMAND = "unknown-command"
BAD_ARGS = "bad-args"
BUSY = "busy"
INTERNAL = "internal"

# Served in a reserved slot when every ordinary one is taken: what a technician at a sounding siren needs.
RESERVED_COMMANDS = ("silence", "ack")


def default_socket_path(data_dir: str) -> str:
    """Where the daemon listens when the config names no `control_socket`: the runtime directory
    systemd made for the service (root, or a user allowed to write there), else the data directory
    so `gateway run` as a plain user during development still gets a socket."""
    if os.geteuid() == 0 or os.access(RUN_DIR, os.W_OK | os.X_OK):
        return os.path.join(RUN_DIR, SOCKET_NAME)
    return os.path.join(data_dir, SOCKET_NAME)


def client_socket_path(data_dir: str, configured: str | None = None) -> str:
    """Where the CLI looks for the daemon. Differs from `default_socket_path`: a technician in the
    service's group can enter /run/community-gateway but not write to it, so "writable" is the wrong
    test on this side; the socket that exists (or the directory systemd made) wins."""
    if configured:
        return configured
    local = os.path.join(data_dir, SOCKET_NAME)
    if os.path.lexists(local):
        return local
    if os.path.isdir(RUN_DIR):
        return os.path.join(RUN_DIR, SOCKET_NAME)
    return default_socket_path(data_dir)


def _plain(obj):
    """json.dumps fallback for what handlers naturally return: dataclasses (Reading, config
    objects), enums, timestamps, paths, sets and tuples."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def encode(message: dict) -> bytes:
    """One message as one line. Raises TypeError/ValueError when a result cannot be serialised."""
    return json.dumps(message, default=_plain, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def ok(result=None) -> dict:
    return {"ok": True, "result": result}


def error(message: str, code: str) -> dict:
    return {"ok": False, "error": message, "code": code}


STREAM_HEADER = {"ok": True, "stream": True}
STREAM_END = {"ok": True, "end": True}
