"""`gateway run` as a process: queued logging, signals, reload (a new Daemon from a checked
config, the alarms carried over in the state file), and the platform's command channel, which
outlives reloads."""

from __future__ import annotations

import logging
import logging.handlers
import queue
import signal
import threading
import time

from gateway.config.model import Config
from gateway.service.daemon import Daemon
from gateway.errors import GatewayError

log = logging.getLogger("gateway.service.daemon")


def _reload(d: Daemon, new: Config, make, current: CurrentDaemon, handler, stopping: list):
    """Swap the running Daemon for one on `new`, make before break: the new daemon takes over the
    running safety loop and its relays (Daemon.start(handover=...)), so an active alarm keeps
    sounding through the reload. If the new one cannot start, a daemon on the old config takes
    the loop over again (and a config push's watch, which outlives this, rolls the file back)."""
    keys = None
    if new.commands and handler is not None:
        from gateway.commands.keys import load_public_keys

        try:
            keys = load_public_keys(new.commands.platform_keys)  # before anything is stopped
        except GatewayError as e:
            log.error("not reloading %s: %s", new.path, e)
            return d, handler
    if stopping:  # SIGTERM came meanwhile: do not start what is about to be stopped
        return d, handler
    log.warning("reloading configuration %s", new.path)
    _let_replies_go(d)
    old_cfg = d.cfg
    n = None
    try:
        n = make(new)
        current.d = n
        if new.commands and handler is None:
            handler = _command_handler(current)
        elif handler is not None:
            handler.keys = keys or []
        n.start(handover=d)
        return n, handler
    except Exception:  # noqa: BLE001 - whatever broke, the sirens must come back on the old config
        log.exception("configuration %s could not be applied; going back to %s", new.path, old_cfg.path)
    owner = n if n is not None and n.safety is not None else d  # who holds the safety loop now
    back = make(old_cfg)
    current.d = back
    try:
        back.start(handover=owner)
    except BaseException:
        # Even the old config cannot start: everything off, the process exits, systemd restarts it
        # (and the restart sounds the saved alarms again).
        for x in (back, owner):
            x.stop()
        raise
    return back, handler


def _let_replies_go(d: Daemon, timeout: float = 2.0) -> None:
    """The `reload` reply is on its way to the CLI: let it leave before the socket closes."""
    deadline = time.monotonic() + timeout
    while d.control and d.control.client_count() and time.monotonic() < deadline:
        time.sleep(0.02)


def _log_through_a_queue() -> logging.handlers.QueueListener:
    """Log calls only enqueue; one thread writes. A journald that stops reading stdout must not
    freeze a bus loop inside log.warning()."""
    root = logging.getLogger()
    handlers = root.handlers[:]
    q: queue.SimpleQueue = queue.SimpleQueue()
    for h in handlers:
        root.removeHandler(h)
    root.addHandler(logging.handlers.QueueHandler(q))
    listener = logging.handlers.QueueListener(q, *handlers, respect_handler_level=True)
    listener.start()
    return listener


def _no_optional_numpy() -> None:
    """sqlite-utils imports numpy whenever it is installed (15 MB of RSS on a Pi that has it for
    something else); the gateway never hands it an array. Make the optional import fail, in this
    process only, before the outbox imports sqlite-utils."""
    import sys

    if "numpy" not in sys.modules and "sqlite_utils" not in sys.modules:
        sys.modules["numpy"] = None  # type: ignore[assignment]


def run_daemon(cfg: Config) -> int:
    from gateway.service.ownership import Ownership

    _no_optional_numpy()
    # Held for the life of the process, across reloads: between two Daemons the data directory is
    # still ours, and the CLI reads "reloading", not "not running", from this lock.
    with Ownership(cfg.gateway.data_dir):
        listener = _log_through_a_queue()
        try:
            code = _run(cfg)
        finally:
            listener.stop()
    if UPDATE_RESTART.is_set():  # SIGUSR2: an update switched releases (gateway/update/restart.py)
        from gateway.update.restart import reexec_through_launcher

        reexec_through_launcher()  # returns only when not started by the launcher: exit, systemd restarts
    return code


# Set by SIGUSR2: stop cleanly and exec the launcher in this same process (same pid: systemd sees a
# reload, not a stop), so the release `current` now points at starts without RestartSec's wait.
UPDATE_RESTART = threading.Event()


class ReloadRequests:
    """Configurations asked for (control socket `reload`, a config push), from any thread; the
    newest wins. Taking is one step under a lock: reading the newest and then clearing the list
    in two lines lost a request that came in between."""

    def __init__(self):
        self._lock = threading.Lock()
        self._newest = None

    def put(self, cfg) -> None:
        with self._lock:
            self._newest = cfg

    def pending(self) -> bool:
        with self._lock:
            return self._newest is not None

    def take(self):
        with self._lock:
            new, self._newest = self._newest, None
            return new


class CurrentDaemon:
    """What outlives a reload: the platform's command channel (and a config push's rollback watch)
    talks to whichever Daemon runs now."""

    def __init__(self, d: Daemon):
        self.d = d

    @property
    def cfg(self) -> Config:
        return self.d.cfg

    @property
    def safety(self):
        return self.d.safety

    def status(self) -> dict:
        return self.d.status()

    def request_reload(self, cfg: Config) -> None:
        self.d.request_reload(cfg)

    def audit(self, fields: dict) -> None:
        self.d.record("audit", fields)

    def reply(self, payload: dict) -> None:
        if self.d.uplink is not None:
            self.d.uplink.reply(payload)

    def rebirth(self) -> None:
        if self.d.uplink is None:
            raise GatewayError("no [uplink]: there is no birth to publish")
        self.d.uplink.rebirth()

    def healthy(self, config_hash: str) -> bool:
        """The daemon running *that* config is fully up (Daemon.healthy)."""
        d = self.d
        return d.cfg.text_hash == config_hash and d.healthy()


def _command_handler(current: CurrentDaemon):
    from gateway.commands import CommandHandler
    from gateway.commands.rejections import outbox_room

    return CommandHandler.from_daemon(current, audit=current.audit, reply=current.reply,
                                      rebirth=current.rebirth, healthy=current.healthy,
                                      fault=lambda f: current.d._record("fault", f, time.time()),
                                      room=lambda: outbox_room(current.d.outbox))


def _run(cfg: Config) -> int:
    wake = threading.Event()
    pending = ReloadRequests()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: (stopping.append(1), wake.set()))
    signal.signal(signal.SIGINT, lambda *_: (stopping.append(1), wake.set()))
    signal.signal(signal.SIGUSR2, lambda *_: (UPDATE_RESTART.set(), stopping.append(1), wake.set()))

    def reload(new: Config) -> None:
        pending.put(new)
        wake.set()

    handler = None

    def make(c: Config) -> Daemon:
        new = Daemon(c)
        new.request_reload = reload
        # No [commands] table: no remote command at all (and cryptography is never even imported).
        new.on_command = (lambda name, payload: handler.handle(name, payload)) if c.commands else None
        return new

    d = make(cfg)
    current = CurrentDaemon(d)
    if cfg.commands:
        handler = _command_handler(current)  # a bad key file stops us here, before any port is opened
    d.start()
    if handler is not None:
        handler.resume()  # a pushed config whose watch a power cut cut short is watched again
    try:
        while True:
            wake.wait()
            wake.clear()
            if stopping:
                return 0
            new = pending.take()  # the newest request wins; older ones are superseded
            if new is not None:
                d, handler = _reload(d, new, make, current, handler, stopping)
                if stopping:
                    return 0
    finally:
        if handler is not None:
            handler.close()
        if UPDATE_RESTART.is_set():
            # RELOADING=1, not STOPPING=1: the same pid comes back READY. The relays stay driven
            # through the slow part of the stop; they go off last, right before the exec.
            d.stop_for_update()
        else:
            d.stop()
