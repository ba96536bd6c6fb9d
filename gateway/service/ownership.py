"""One daemon owns a gateway: its data directory, its serial ports and its GPIO chip.

A second `gateway run` beside the service (`sudo gateway run` "to watch the logs") would write the
same outbox (`UNIQUE constraint failed: events.seq`), fight over the serial port's bytes and drive
the same relays. Each of those things is claimed with flock(2) on a lock file before the daemon
touches it; a claim that is taken is refused at once with a sentence naming the owner.

flock is released by the kernel when the process dies (kill -9, a power cut clears /run), so a
crash never leaves a stale lock for a technician to clean up. Within one process claims are
counted: a reload builds the new Daemon while (or after) the old one holds the same things.

The lock file holds who took it, as JSON: pid, argv, when, and the systemd unit when there is one.
`holder()` reads it for the CLI (`gateway status` during a reload, `make demo` before it deletes
its data directory).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time

from gateway.errors import GatewayError

DATA_LOCK = "daemon.lock"
# Where device locks live: /run/lock is the FHS place (1777 on Debian, a tmpfs). Under systemd's
# ProtectSystem=strict it may be read-only; then the service's RuntimeDirectory. Every directory is
# checked for a holder, whichever this process could write to, so root and the service agree.
DEVICE_LOCK_DIRS = ("/run/lock", "/run/community-gateway")


class OwnedElsewhere(GatewayError):
    """Another process already owns a data directory, a port or a GPIO chip."""


class _Claim:
    def __init__(self, path: str, fd: int):
        self.path = path
        self.fd = fd
        self.refs = 1


_held: dict[str, _Claim] = {}
_mutex = threading.Lock()


def started_by() -> dict:
    """How this process was started, for the lock file and the refusal of a second one."""
    prog = os.path.basename(sys.argv[0]) if sys.argv else ""
    if prog in ("", "-c", "__main__.py"):  # `python -m gateway.cli run`: the technician typed gateway
        prog = "gateway"
    me = {"pid": os.getpid(), "argv": [prog, *sys.argv[1:]],
          "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    unit = _systemd_unit()
    if os.environ.get("INVOCATION_ID") and unit:
        me["unit"] = unit
    return me


def _systemd_unit() -> str | None:
    try:
        with open("/proc/self/cgroup") as f:
            for part in f.read().strip().split("/"):
                if part.endswith(".service") and not part.startswith("user@"):
                    return part
    except OSError:
        pass
    return None


def describe(owner: dict | None) -> str:
    """'pid 1234 (systemd unit community-gateway.service, since ...)' or 'pid 1234 (`gateway run -c x`, ...)'."""
    if not owner:
        return "a process that is starting up"
    how = f"systemd unit {owner['unit']}" if owner.get("unit") else f"`{' '.join(owner.get('argv') or ['?'])}`"
    return f"pid {owner.get('pid', '?')} ({how}, since {owner.get('since', '?')})"


def _stop_hint(owner: dict | None) -> str:
    if owner and owner.get("unit"):
        return f"stop it first (sudo systemctl stop {owner['unit']})"
    if owner and owner.get("pid"):
        return f"stop it first (kill {owner['pid']})"
    return "stop it first"


def holder(path: str) -> dict | None:
    """Who holds the lock file `path` now ({} if held but unreadable), None if nobody does."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_owner(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_owner(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def claim(path: str, what: str, also_check: tuple[str, ...] = ()) -> _Claim:
    """Take the lock file `path` for `what` ("data directory /var/lib/...") or raise OwnedElsewhere.
    `also_check`: the same lock in other directories, held by a process that could not write here."""
    with _mutex:
        c = _held.get(path)
        if c is not None:
            c.refs += 1
            return c
        for other in also_check:
            owner = holder(other)
            if owner is not None:
                raise OwnedElsewhere(f"{what} is owned by another gateway daemon, {describe(owner)}; "
                                     f"{_stop_hint(owner)}")
        writable = True
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except PermissionError:
            # Left by another user (`sudo gateway run` once, then the service): flock needs no
            # write access, so lock it read-only; only the owner's details cannot be written.
            writable = False
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise GatewayError(f"cannot open the lock file {path} for {what}: {e.strerror or e}") from e
        except OSError as e:
            raise GatewayError(f"cannot create the lock file {path} for {what}: {e.strerror or e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise OwnedElsewhere(f"{what} is owned by another gateway daemon, {describe(owner)}; "
                                 f"{_stop_hint(owner)}") from None
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(dict(started_by(), what=what)).encode() + b"\n", 0)
        c = _held[path] = _Claim(path, fd)
        return c


def release(c: _Claim) -> None:
    with _mutex:
        c.refs -= 1
        if c.refs > 0 or _held.get(c.path) is not c:
            return
        del _held[c.path]
        os.close(c.fd)  # closing the only descriptor releases the flock


def device_lock_name(device: str) -> str:
    """/dev/serial/by-id/usb-X -> community-gateway.dev-ttyUSB0.lock: keyed by the real device, so two
    names of one adapter are one lock."""
    real = os.path.realpath(device)
    return "community-gateway." + real.strip("/").replace("/", "-") + ".lock"


def data_lock_path(data_dir: str) -> str:
    return os.path.join(data_dir, DATA_LOCK)


def _device_claim(device: str, what: str, data_dir: str) -> _Claim:
    name = device_lock_name(device)
    dirs = [d for d in DEVICE_LOCK_DIRS if os.path.isdir(d)]
    writable = [d for d in dirs if os.access(d, os.W_OK | os.X_OK)]
    # No shared directory at all (a container without /run/lock): the data directory still stops a
    # second daemon on the same site, which is the common case.
    home = writable[0] if writable else data_dir
    others = tuple(os.path.join(d, name) for d in dirs if d != home)
    return claim(os.path.join(home, name), what, also_check=others)


def local_device(port: str | None) -> bool:
    """A port that is a device file here (not socket://, rfc2217://, a TCP host)."""
    return bool(port) and "://" not in port


def gpio_chip(backend: str) -> str | None:
    """The device a real GPIO backend drives; None for the simulated one (no hardware to share)."""
    if backend == "sim":
        return None
    for dev in ("/dev/gpiochip0", "/dev/gpiomem"):
        if os.path.exists(dev):
            return dev
    return "/dev/gpiochip0"


class Ownership:
    """Everything one Daemon owns, claimed together: the data directory first, then every local
    serial port and the GPIO chip. `acquire()` takes all or none."""

    def __init__(self, data_dir: str, ports: dict[str, str] | None = None, gpio: str | None = None):
        self.data_dir = data_dir
        self.ports = dict(ports or {})  # bus name -> device path
        self.gpio = gpio
        self._claims: list[_Claim] = []

    @classmethod
    def of(cls, cfg) -> "Ownership":
        ports = {b.name: b.port for b in cfg.buses.values()
                 if b.type in ("rtu", "serial") and local_device(getattr(b, "port", None))}
        return cls(cfg.gateway.data_dir, ports, gpio_chip(cfg.gpio.backend))

    def acquire(self) -> "Ownership":
        try:
            os.makedirs(self.data_dir, exist_ok=True)
        except OSError as e:
            raise GatewayError(f"data_dir {self.data_dir} cannot be created: {e.strerror or e}") from e
        try:
            self._claims.append(claim(data_lock_path(self.data_dir), f"data directory {self.data_dir}"))
            for bus, port in self.ports.items():
                self._claims.append(_device_claim(port, f"serial port {port} (bus {bus})", self.data_dir))
            if self.gpio:
                self._claims.append(_device_claim(self.gpio, f"GPIO {self.gpio}", self.data_dir))
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        while self._claims:
            release(self._claims.pop())

    def __enter__(self) -> "Ownership":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
