"""Finding the running daemon from the CLI, whatever the state of the config file on disk.

At 2 a.m. the file may be half-edited, invalid, unreadable or gone: the daemon still runs on the
good config it loaded, and `gateway silence` must still reach it. So the CLI never needs the whole
file valid to talk to the daemon: it needs two keys of `[gateway]` (`data_dir`, `control_socket`),
which are read with tomllib when the file parses and by a line scan when it does not. With no file
at all, the defaults of an installed gateway are tried before giving up.
"""

from __future__ import annotations

import os
import re
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import GatewayError

_HEADER = re.compile(r"^\s*\[\s*([^\]\[]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"""^\s*(data_dir|control_socket)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)')\s*(#.*)?$""")
# A reload stops one Daemon and starts the next: its socket is gone for a moment (usually well
# under a second, longer when a bus port is slow to open). The CLI waits this long before it says so.
RELOAD_WAIT_S = 4.0


@dataclass(frozen=True)
class DaemonAddress:
    """Where the daemon of a config listens, and how we know."""
    socket: str
    data_dir: str
    config: str  # the file the keys came from (it may not exist)
    note: str = ""  # why the file was not used as is, for error messages


def no_config_message(path: str) -> str:
    return (f"no config file: {path} does not exist, and neither -c FILE nor $GATEWAY_CONFIG names "
            f"another; point at one with `gateway COMMAND -c FILE` or `export GATEWAY_CONFIG=FILE`")


def config_path(cli_path: str | None) -> tuple[str, bool]:
    """The file to use and whether somebody named it (-c or $GATEWAY_CONFIG) rather than the default."""
    from gateway.config import ENV_VAR, resolve_config_path

    return resolve_config_path(cli_path), bool(cli_path or os.environ.get(ENV_VAR))


def require_config(cli_path: str | None) -> str:
    """The config path for commands that need the file itself (check, run, sim, scan, read --direct).
    No file anywhere is one sentence naming both ways to give one, never `FILE:0: ...`."""
    path, named = config_path(cli_path)
    if not named and not os.path.exists(path):
        raise GatewayError(no_config_message(path))
    return path


def _keys_of(text: str) -> dict[str, str]:
    """`data_dir` and `control_socket` of [gateway]: tomllib when the file parses, else line by line
    (a mid-edit file is broken somewhere else, rarely in those two lines)."""
    try:
        gw = tomllib.loads(text.removeprefix("\ufeff")).get("gateway", {})
        if isinstance(gw, dict):
            return {k: v for k, v in gw.items() if k in ("data_dir", "control_socket") and isinstance(v, str)}
    except tomllib.TOMLDecodeError:
        pass
    keys: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        h = _HEADER.match(line)
        if h:
            section = h.group(1).strip()
            continue
        m = _KEY.match(line)
        if m and section == "gateway":
            value = m.group(2) if m.group(2) is not None else m.group(3)
            keys[m.group(1)] = value.replace('\\"', '"').replace("\\\\", "\\")
    return keys


def locate(cli_path: str | None) -> DaemonAddress:
    """The daemon's socket and data directory for `-c FILE` / $GATEWAY_CONFIG / the default file."""
    from gateway.config.model import DEFAULT_DATA_DIR
    from gateway.config.paths import resolve
    from gateway.control import client_socket_path

    path, named = config_path(cli_path)
    file = Path(path).expanduser().absolute()  # as the loader does: no symlink resolution
    note = ""
    try:
        keys = _keys_of(file.read_bytes().decode("utf-8", errors="replace"))
    except FileNotFoundError:
        keys, note = {}, (no_config_message(path) if not named else f"config file {path} does not exist")
    except OSError as e:
        keys, note = {}, f"cannot read {path}: {e.strerror or e}"
    base = file.parent
    data_dir = resolve(base, keys.get("data_dir") or DEFAULT_DATA_DIR)
    sock = keys.get("control_socket")
    return DaemonAddress(client_socket_path(data_dir, resolve(base, sock) if sock else None), data_dir,
                         str(file), note)


class DaemonReloading(GatewayError):
    """The daemon holds its data directory but its socket is not up: between two configs."""

    def __init__(self, addr: DaemonAddress, owner: dict):
        from gateway.service.ownership import describe

        self.owner = owner
        super().__init__(f"reloading: the gateway daemon, {describe(owner)}, holds {addr.data_dir} but its "
                         f"control socket {addr.socket} is not up yet (a reload or a start in progress); "
                         f"try again in a few seconds")


def call_daemon(addr: DaemonAddress, cmd: str, args: dict | None = None, timeout: float = 5.0):
    """`control.call`, but a daemon caught between two configs is waited for (up to RELOAD_WAIT_S)
    instead of reported "not running"; a daemon that is not there says why the file did not help."""
    from gateway.control import DaemonNotRunning, call

    deadline = time.monotonic() + RELOAD_WAIT_S
    while True:
        try:
            return call(addr.socket, cmd, args, timeout=timeout)
        except DaemonNotRunning as e:
            owner = _owner(addr)
            if owner is None:
                if addr.note.startswith("no config file"):
                    e.args = (f"{addr.note} (no daemon answers at the default {addr.socket} either)",)
                elif addr.note:  # say why the file did not lead anywhere better
                    e.args = (f"{e}\n({addr.note}; looked for the daemon at {addr.socket})",)
                raise
            if time.monotonic() >= deadline:
                raise DaemonReloading(addr, owner) from None
            time.sleep(0.1)


def open_stream(addr: DaemonAddress, cmd: str, args: dict | None = None):
    from gateway.control import DaemonNotRunning, stream

    deadline = time.monotonic() + RELOAD_WAIT_S
    while True:
        try:
            return stream(addr.socket, cmd, args)
        except DaemonNotRunning:
            owner = _owner(addr)
            if owner is None:
                raise
            if time.monotonic() >= deadline:
                raise DaemonReloading(addr, owner) from None
            time.sleep(0.1)


def _owner(addr: DaemonAddress) -> dict | None:
    from gateway.service.ownership import data_lock_path, holder

    return holder(data_lock_path(addr.data_dir))
