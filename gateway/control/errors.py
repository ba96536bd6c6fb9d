"""What can go wrong between the CLI and the daemon, as messages a technician can act on."""

from __future__ import annotations

from gateway.errors import ControlError


class BadRequest(ControlError, ValueError):
    """A request the daemon cannot serve: missing or wrong arguments. Handlers raise it (see
    `require`) and the client sees it as an error reply with code "bad-args"."""

    code = "bad-args"


class DaemonNotRunning(ControlError, ConnectionError):
    """No daemon behind the socket path (no file, or a stale file nobody listens on)."""

    def __init__(self, path: str, stale: bool = False):
        self.path = path
        where = f"stale socket at {path}, nobody listening" if stale else f"no socket at {path}"
        super().__init__(
            f"the gateway daemon is not running ({where}); start it with: "
            f"sudo systemctl start community-gateway, or gateway run -c FILE")


class SocketPermissionDenied(ControlError, PermissionError):
    """The socket exists but this user may not connect to it."""

    def __init__(self, path: str, group: str):
        self.path = path
        self.group = group
        super().__init__(
            f"permission denied on {path}: add yourself to the group '{group}' "
            f"(sudo usermod -aG {group} $USER) and log in again")


class ControlTimeout(ControlError, TimeoutError):
    """The daemon accepted the connection but did not answer in time."""

    def __init__(self, path: str, timeout: float):
        self.path = path
        super().__init__(
            f"the gateway daemon did not answer within {timeout:g} s on {path}; it may be hung: "
            f"see journalctl -u community-gateway -n 50")


class RemoteError(ControlError):
    """The daemon answered with an error reply. `code` is its machine word (unknown-command,
    bad-args, ConfigError, internal, ...)."""

    def __init__(self, message: str, code: str):
        self.code = code
        super().__init__(message)


def require(args: dict, name: str, kind: type | tuple[type, ...] = str):
    """The argument `name` of a request, checked. For handlers: `seconds = require(args, "seconds", (int, float))`."""
    if name not in args:
        raise BadRequest(f"missing argument '{name}'")
    value = args[name]
    # bool is an int in Python; a siren test for `true` seconds is a client bug, not a duration
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BadRequest(f"argument '{name}' must be {want}, got {type(value).__name__}")
    return value
