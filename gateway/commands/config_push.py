"""config_push: a whole new configuration file from the platform, applied so that a mistake cannot
strand a gateway nobody can reach without a truck.

    check  exactly `gateway check`: the text is written beside the config and load_config'ed
    refuse a config that would leave an active alarm unsounded (push_guard.py), change the gateway's
           id, or drop [commands]; and one that changes the pinned platform keys or the [uplink] target
           unless the signed command says so in `changes_access` (each leaves the platform unable to
           put things right)
    write  the running file is kept as <config>.previous; the new one replaces it atomically
    apply  daemon.request_reload(new config)
    watch  healthy(new hash) must turn true within watch_s, and after a `changes_access` push the
           platform must also have reached the gateway through the new settings (a signed command
           accepted while the new config runs: contacted(new hash)), else the previous file is
           written back, reloaded, and the outcome reported (audit event, reply, log)
    resume the watch is marked on disk (<config>.push-watch, written before the reload): a power cut
           inside the window leaves the pushed file running with nobody watching it, so the next start
           resumes the watch with a full window. The marker and the <config>.previous it would roll back
           to are validated first; a bad one is moved aside as NAME.corrupt-<time> and reported as a
           fault (the daemon starts either way)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time

from gateway.config import load_config
from gateway.errors import CommandError, ConfigError

from .atomic import write_atomic
from .keys import load_public_keys
from .push_guard import access_changes, active_alarm_problems

log = logging.getLogger("gateway.commands")
WATCH_S = 60.0
POLL_S = 0.5


class ConfigPush:
    """One pushed configuration at a time, and the watchdog that rolls it back.

    `daemon`: `.cfg` (the running Config), `.safety.status()`, `.request_reload(cfg)`.
    `healthy(config_hash) -> bool`: true once the daemon running that config has its buses and uplink
    up (it must look at the daemon running now: a reload replaces the Daemon object).
    `report(fields)`: the watchdog's verdict, {"command_id", "outcome", "message", "sha256"}.
    `contacted(config_hash) -> bool`: the platform has reached the gateway (a signed command was
    accepted) while that config runs; without it a `changes_access` push is refused."""

    def __init__(self, daemon, *, healthy, report, watch_s: float = WATCH_S, poll_s: float = POLL_S,
                 contacted=None, fault=None):
        self.daemon = daemon
        self.fault = fault or (lambda fields: None)
        self.healthy = healthy
        self.contacted = contacted
        self.report = report
        self.watch_s = watch_s
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._watch: threading.Thread | None = None

    # -- apply -------------------------------------------------------------------------------
    def start(self, text: str, command_id: str, replaces: str | None = None, changes_access=()) -> dict:
        """Check, write and apply `text`; the watchdog runs on. `changes_access`: the sections of
        push_guard.ACCESS_SECTIONS the signed command allows to change. Raises CommandError; nothing on disk
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
            needs_contact = self.refuse_unannounced(candidate, changes_access)
            try:
                write_atomic(path + ".previous", current)
                write_atomic(path, text.encode("utf-8"))
            except OSError as e:
                raise CommandError("failed", f"cannot write {path}: {e}") from None
            new = self._reload_from(path, current, command_id, needs_contact)
            self._start_watch(command_id, new.text_hash, needs_contact)
        log.warning("configuration %s pushed by the platform (command %s, sha256 %s): applying; rolled back "
                    "unless healthy within %g s", path, command_id, new.text_hash[:12], self.watch_s)
        result = {"path": path, "sha256": new.text_hash, "previous": path + ".previous", "watch_s": self.watch_s}
        if needs_contact:
            # the platform's cue: sign any command (status) and send it through the new settings
            result.update(awaiting="contact", changes=needs_contact)
        return result

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
        alarm_problems = active_alarm_problems(old, new, self.daemon.safety.status().get("alarms", []))
        if problems or alarm_problems:
            raise CommandError("config_unsafe", "refused: " + "; ".join(dict.fromkeys(problems + alarm_problems)) +
                               (" (push it again once the alarm has cleared)" if alarm_problems else ""))

    def refuse_unannounced(self, new, allowed) -> list[str]:
        """The push_guard.ACCESS_SECTIONS `new` changes; CommandError('access_change') if the signed command
        did not name each of them (or this gateway cannot tell whether the platform comes back)."""
        changed = access_changes(self.daemon.cfg, new, _same_keys)
        missing = [s for s in changed if s not in allowed]
        if missing:
            what = {"commands": "the pinned platform keys ([commands] platform_keys)",
                    "uplink": "the [uplink] target (broker, topic root or identity)"}
            raise CommandError("access_change", "refused: it changes " + " and ".join(what[m] for m in missing) +
                               f"; a push that may lock the platform out must say so: sign it with "
                               f"changes_access = {sorted(set(changed) | set(allowed))} (gateway-platform "
                               f"send --changes-access {','.join(changed)})")
        if changed and self.contacted is None:
            raise CommandError("unavailable", "this gateway cannot tell whether the platform reaches it "
                                              "through the new settings; change them on site")
        return changed

    def _reload_from(self, path: str, previous: bytes, command_id: str, needs_contact):
        try:
            new = load_config(path)  # from its real path: the daemon's `reload` re-reads cfg.path
        except ConfigError as e:  # changed under us between check and now: put the old one back
            write_atomic(path, previous)
            raise CommandError("config_invalid", str(e)) from None
        try:  # before the reload: from here a power cut must find the watch on the next start
            write_atomic(path + MARK, json.dumps({"command_id": command_id, "sha256": new.text_hash,
                                                  "needs_contact": list(needs_contact)}).encode())
        except OSError as e:
            write_atomic(path, previous)
            raise CommandError("failed", f"cannot mark the push as watched beside {path}: {e}") from None
        self.daemon.request_reload(new)
        return new

    def _start_watch(self, command_id: str, sha256: str, needs_contact) -> None:
        self._watch = threading.Thread(target=self._run_watch, args=(command_id, sha256, needs_contact),
                                       name="config-push-watch", daemon=True)
        self._watch.start()

    # -- resume after a restart ---------------------------------------------------------------
    def resume(self) -> bool:
        """At start: resume a watch a power cut (or kill) interrupted. True when one runs now.
        Never raises: whatever is on disk, the daemon starts."""
        path = self.daemon.cfg.path
        mark = self._read_mark(path)
        if mark is None:
            return False
        if mark["sha256"] != self.daemon.cfg.text_hash:
            log.warning("%s%s names a pushed configuration that is no longer the running one (replaced on "
                        "site?): not watched", path, MARK)
            self._clear_mark(path)
            return False
        try:
            with open(path + ".previous", "rb") as f:
                previous = f.read()
            self.check(previous.decode("utf-8"), path)
        except (OSError, UnicodeDecodeError, CommandError) as e:
            moved = _move_aside(path + ".previous")
            detail = (f"the pushed configuration {mark['sha256'][:12]} (command {mark['command_id']}) was "
                      f"being watched when the gateway restarted, but {path}.previous it would roll back to "
                      f"is unusable ({getattr(e, 'message', None) or e}); kept as {moved}: the pushed "
                      "configuration stays, unwatched")
            log.error("%s", detail)
            self.fault({"component": "config", "state": "fault", "reason": "previous_config_corrupt",
                        "detail": detail[:500]})
            self._clear_mark(path)
            return False
        log.warning("configuration %s pushed by the platform (command %s) was being watched when the gateway "
                    "restarted: watching it again for %g s", mark["sha256"][:12], mark["command_id"],
                    self.watch_s)
        with self._lock:
            self._start_watch(mark["command_id"], mark["sha256"], tuple(mark["needs_contact"]))
        return True

    def _read_mark(self, path: str) -> dict | None:
        try:
            with open(path + MARK, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.error("cannot read %s%s: %s", path, MARK, e)
            return None
        try:
            mark = json.loads(raw)
            if not (isinstance(mark, dict) and isinstance(mark.get("command_id"), str)
                    and isinstance(mark.get("sha256"), str) and isinstance(mark.get("needs_contact", []), list)):
                raise ValueError("not a push-watch record")
            mark.setdefault("needs_contact", [])
            return mark
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            moved = _move_aside(path + MARK)
            detail = f"{path}{MARK} is corrupt ({e}); kept as {moved}: no pushed configuration is watched"
            log.error("%s", detail)
            self.fault({"component": "config", "state": "fault", "reason": "push_watch_corrupt",
                        "detail": detail[:500]})
            return None

    @staticmethod
    def _clear_mark(path: str) -> None:
        try:
            os.unlink(path + MARK)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.error("cannot remove %s%s: %s", path, MARK, e)

    # -- watch and roll back -----------------------------------------------------------------
    def _run_watch(self, command_id: str, sha256: str, needs_contact=()) -> None:
        deadline = time.monotonic() + self.watch_s
        while not self._cancel.is_set():
            if self._healthy(sha256) and (not needs_contact or self._contacted(sha256)):
                log.warning("pushed configuration %s is running and healthy", sha256[:12])
                message = "the new configuration is running; buses and uplink are up"
                if needs_contact:
                    message += "; the platform reached it through the new " + " and ".join(needs_contact)
                self._clear_mark(self.daemon.cfg.path)
                self.report({"command_id": command_id, "outcome": "applied", "sha256": sha256,
                             "message": message})
                return
            if time.monotonic() >= deadline:
                break
            self._cancel.wait(self.poll_s)
        if self._cancel.is_set():
            return
        verdict = self.rollback(sha256, needs_contact)
        self._clear_mark(self.daemon.cfg.path)
        self.report({"command_id": command_id, "sha256": sha256, **verdict})

    def _contacted(self, sha256: str) -> bool:
        try:
            return bool(self.contacted(sha256))
        except Exception:  # noqa: BLE001 - as for _healthy: unknown counts as "not reached"
            log.exception("contact check during a config push failed; counted as not reached")
            return False

    def _healthy(self, sha256: str) -> bool:
        try:
            return bool(self.healthy(sha256))
        except Exception:  # noqa: BLE001 - a bug in the probe must count as "not healthy", not end the
            # watch: the watch is what rolls a bad config back
            log.exception("health check during a config push failed; counted as not healthy")
            return False

    def rollback(self, bad_sha256: str, needs_contact=()) -> dict:
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
        why = (f"the platform did not reach the gateway through the new {' and '.join(needs_contact)} within "
               f"{self.watch_s:g} s (or buses or uplink were down)" if needs_contact else
               f"the pushed configuration was not healthy within {self.watch_s:g} s (buses or uplink down)")
        return {"outcome": "rolled_back", "previous_sha256": old.text_hash,
                "message": f"{why}; the previous one is back ({path}.rejected keeps the pushed one)"}

    def wait(self, timeout: float) -> bool:
        """For tests and shutdown: true when no watch is running (any more)."""
        watch = self._watch
        if watch is not None:
            watch.join(timeout)
        return watch is None or not watch.is_alive()

    def stop(self) -> None:
        self._cancel.set()


MARK = ".push-watch"


def _move_aside(path: str) -> str:
    """`path` -> `path`.corrupt-<time> (as the alarm state and the outbox do). Returns the new name."""
    target = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
    try:
        os.replace(path, target)
    except OSError as e:
        log.error("cannot move %s aside: %s", path, e)
        return f"{path} (could not be moved aside: {e.strerror})"
    return target


def _same_keys(old_paths, new_paths) -> bool:
    """The same pinned keys, whatever the files are called. A key file that cannot be read counts as
    a change (the loader has already refused a missing one)."""
    from cryptography.hazmat.primitives import serialization

    def raw(paths):
        return sorted(k.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
                      for k in load_public_keys(paths))
    try:
        return raw(old_paths) == raw(new_paths)
    except CommandError:
        return False


def _outputs(cfg, rule_name) -> list[str]:
    """The outputs that rule `rule_name` of `cfg` can really sound."""
    for rule in cfg.rules:
        if rule.name == rule_name:
            return [o for o in rule.sound if o in cfg.outputs]
    return []
