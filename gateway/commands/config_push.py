"""config_push: a whole new configuration file from the platform, applied so that a mistake cannot
strand a gateway nobody can reach without a truck.

    check  exactly `gateway check`: the text is written beside the config and load_config'ed
    refuse a config that would leave an active alarm without an output, change the gateway's id, or
           drop [commands] (each leaves the platform unable to put things right)
    write  the running file is kept as <config>.previous; the new one replaces it atomically
    apply  daemon.request_reload(new config)
    watch  healthy(new hash) must turn true within watch_s, else the previous file is written back,
           reloaded, and the outcome reported (audit event, reply, log)
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time

from gateway.config import load_config
from gateway.errors import CommandError, ConfigError

from .atomic import write_atomic

log = logging.getLogger("gateway.commands")
WATCH_S = 60.0
POLL_S = 0.5


class ConfigPush:
    """One pushed configuration at a time, and the watchdog that rolls it back.

    `daemon`: `.cfg` (the running Config), `.safety.status()`, `.request_reload(cfg)`.
    `healthy(config_hash) -> bool`: true once the daemon running that config has its buses and uplink
    up (it must look at the daemon running now: a reload replaces the Daemon object).
    `report(fields)`: the watchdog's verdict, {"command_id", "outcome", "message", "sha256"}."""

    def __init__(self, daemon, *, healthy, report, watch_s: float = WATCH_S, poll_s: float = POLL_S):
        self.daemon = daemon
        self.healthy = healthy
        self.report = report
        self.watch_s = watch_s
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._watch: threading.Thread | None = None

    # -- apply -------------------------------------------------------------------------------
    def start(self, text: str, command_id: str, replaces: str | None = None) -> dict:
        """Check, write and apply `text`; the watchdog runs on. Raises CommandError; nothing on disk
        or in the daemon has changed when it does."""
        with self._lock:
            if self._watch is not None and self._watch.is_alive():
                raise CommandError("busy", "a pushed configuration is still being watched; wait for its outcome")
            path = self.daemon.cfg.path
            try:
                with open(path, "rb") as f:
                    current = f.read()
            except OSError as e:
                raise CommandError("failed", f"cannot read the running configuration {path}: {e.strerror}") \
                    from None
            if replaces is not None and hashlib.sha256(current).hexdigest() != replaces:
                raise CommandError("conflict", f"{path} has changed since the config_get this push is based "
                                               "on (sha256 differs): get it again")
            candidate = self.check(text, path)
            self.refuse_unsafe(candidate)
            try:
                write_atomic(path + ".previous", current)
                write_atomic(path, text.encode("utf-8"))
            except OSError as e:
                raise CommandError("failed", f"cannot write {path}: {e}") from None
            new = self._reload_from(path, current)
            self._watch = threading.Thread(target=self._run_watch, args=(command_id, new.text_hash),
                                           name="config-push-watch", daemon=True)
            self._watch.start()
        log.warning("configuration %s pushed by the platform (command %s, sha256 %s): applying; rolled back "
                    "unless healthy within %g s", path, command_id, new.text_hash[:12], self.watch_s)
        return {"path": path, "sha256": new.text_hash, "previous": path + ".previous", "watch_s": self.watch_s}

    def check(self, text: str, path: str):
        """load_config on `text` as if it were the file at `path` (relative paths resolve the same).
        Raises CommandError('config_invalid') listing every problem, like `gateway check`."""
        tmp = None
        try:
            # inside the try: a config directory the daemon cannot write is a sentence in the reply,
            # not an "internal" error (issue 10: root:community-gateway 0750 under ProtectSystem=strict)
            fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.push-", suffix=".toml",
                                       dir=os.path.dirname(os.path.abspath(path)))
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode("utf-8"))
            return load_config(tmp)
        except ConfigError as e:
            problems = "\n".join(str(p).replace(tmp, "pushed config") for p in e.problems)
            raise CommandError("config_invalid", problems) from None
        except OSError as e:
            raise CommandError("failed", f"cannot write a temporary file beside {path}: {e} (the daemon's "
                                         "user needs write access to the directory: docs/install.md)") from None
        finally:
            if tmp is not None:
                os.unlink(tmp)

    def refuse_unsafe(self, new) -> None:
        """Raise CommandError('config_unsafe') for a config that would silence an active alarm or cut
        the platform off from this gateway."""
        old = self.daemon.cfg
        problems = []
        if new.gateway.id != old.gateway.id:
            problems.append(f"it changes [gateway] id from {old.gateway.id!r} to {new.gateway.id!r}; "
                            "the platform would lose this gateway: change the id on site")
        if old.commands is not None and new.commands is None:
            problems.append("it removes [commands]: no remote command could undo it; remove it on site")
        for alarm in self.daemon.safety.status().get("alarms", []):
            before = _outputs(old, alarm.get("rule"))
            after = _outputs(new, alarm.get("rule"))
            if before and not after:
                problems.append(f"active alarm {alarm.get('id')} (rule {alarm.get('rule')}) sounds "
                                f"{', '.join(before)} now and would have no output")
        if problems:
            raise CommandError("config_unsafe", "refused: " + "; ".join(problems))

    def _reload_from(self, path: str, previous: bytes):
        try:
            new = load_config(path)  # from its real path: the daemon's `reload` re-reads cfg.path
        except ConfigError as e:  # changed under us between check and now: put the old one back
            write_atomic(path, previous)
            raise CommandError("config_invalid", str(e)) from None
        self.daemon.request_reload(new)
        return new

    # -- watch and roll back -----------------------------------------------------------------
    def _run_watch(self, command_id: str, sha256: str) -> None:
        deadline = time.monotonic() + self.watch_s
        while not self._cancel.is_set():
            if self._healthy(sha256):
                log.warning("pushed configuration %s is running and healthy", sha256[:12])
                self.report({"command_id": command_id, "outcome": "applied", "sha256": sha256,
                             "message": "the new configuration is running; buses and uplink are up"})
                return
            if time.monotonic() >= deadline:
                break
            self._cancel.wait(self.poll_s)
        if self._cancel.is_set():
            return
        self.report({"command_id": command_id, "sha256": sha256, **self.rollback(sha256)})

    def _healthy(self, sha256: str) -> bool:
        try:
            return bool(self.healthy(sha256))
        except Exception:  # noqa: BLE001 - a bug in the probe must count as "not healthy", not end the
            # watch: the watch is what rolls a bad config back
            log.exception("health check during a config push failed; counted as not healthy")
            return False

    def rollback(self, bad_sha256: str) -> dict:
        """Put <config>.previous back and reload it. The refused file is kept as <config>.rejected."""
        path = self.daemon.cfg.path
        log.error("PUSHED CONFIGURATION %s NOT HEALTHY within %g s: rolling back to %s.previous",
                  bad_sha256[:12], self.watch_s, path)
        try:
            with open(path + ".previous", "rb") as f:
                previous = f.read()
            with open(path, "rb") as f:
                write_atomic(path + ".rejected", f.read())
            write_atomic(path, previous)
            old = load_config(path)
        except (OSError, ConfigError) as e:
            log.critical("ROLLBACK FAILED, %s needs a technician: %s", path, e)
            return {"outcome": "rollback_failed", "message": f"the pushed configuration was not healthy within "
                    f"{self.watch_s:g} s and the rollback failed: {e}"}
        self.daemon.request_reload(old)
        return {"outcome": "rolled_back", "previous_sha256": old.text_hash,
                "message": f"the pushed configuration was not healthy within {self.watch_s:g} s (buses or "
                           f"uplink down); the previous one is back ({path}.rejected keeps the pushed one)"}

    def wait(self, timeout: float) -> bool:
        """For tests and shutdown: true when no watch is running (any more)."""
        watch = self._watch
        if watch is not None:
            watch.join(timeout)
        return watch is None or not watch.is_alive()

    def stop(self) -> None:
        self._cancel.set()


def _outputs(cfg, rule_name) -> list[str]:
    """The outputs that rule `rule_name` of `cfg` can really sound."""
    for rule in cfg.rules:
        if rule.name == rule_name:
            return [o for o in rule.sound if o in cfg.outputs]
    return []
