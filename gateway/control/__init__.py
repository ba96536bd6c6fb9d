"""The control socket: how the CLI talks to the running daemon (the daemon owns the serial ports).

Daemon side::

    path = cfg.gateway.control_socket or default_socket_path(cfg.gateway.data_dir)
    server = ControlServer(path, {"status": status, "silence": silence, ...},
                           {"events": follow_events}, group="community-gateway").start()
    ...
    server.stop()

CLI side::

    path = client_socket_path(cfg.gateway.data_dir, cfg.gateway.control_socket)
    try:
        print(call(path, "status"))
    except ControlError as exc:   # message already says what to do
        sys.exit(f"gateway: {exc}")
"""

from gateway.errors import ControlError

from .client import call, permission_denied, stream
from .errors import BadRequest, ControlTimeout, DaemonNotRunning, RemoteError, SocketPermissionDenied, require
from .protocol import MAX_REQUEST_BYTES, client_socket_path, default_socket_path
from .server import ControlServer
from .streaming import Stream

__all__ = [
    "BadRequest", "ControlError", "ControlServer", "ControlTimeout", "DaemonNotRunning", "MAX_REQUEST_BYTES",
    "RemoteError", "SocketPermissionDenied", "Stream", "call", "client_socket_path", "default_socket_path",
    "permission_denied", "require", "stream",
]
