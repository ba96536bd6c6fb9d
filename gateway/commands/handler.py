"""Commands from the platform, from the MQTT payload to the daemon and back to a reply.

The uplink hands every message on <root>/<gw>/cmd/<name> to `CommandHandler.handle(name, payload)`;
the reply dict goes to <root>/<gw>/reply and one audit event per command goes to the outbox. The
commands do what the CLI does over the control socket, through the same daemon methods. Nothing
here runs a shell or a program."""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable

from gateway.act import operator
from gateway.errors import CommandError, GatewayError

from .config_push import WATCH_S, ConfigPush
from .keys import load_public_keys
from .nonces import NonceCache
from .rejections import RejectionBudget
from .signing import Command, CommandRejected, command_id_of, parse, verify

log = logging.getLogger("gateway.commands")
SAFETY_TIMEOUT_S = 5.0  # the safety loop answers in one tick (20 ms); 5 s means it is stuck
BY = "platform"


class CommandHandler:
    """The gateway's end of the platform's command channel.

    `daemon`: `.cfg`, `.status()`, `.safety` (silence/acknowledge/siren_test -> Future, status()),
    `.request_reload(cfg)`. `keys`: pinned Ed25519PublicKeys (empty: every command is refused).
    `audit(fields)`: record an audit event. `reply(dict)`: publish on <root>/<gw>/reply.
    `rebirth()`: publish the birth again. `healthy(config_hash) -> bool`: for config_push's watchdog;
    without it config_push is refused. `fault(fields)`: record a fault event (a lost nonce cache).
    `room() -> bool`: the outbox may take one more audit event about refused commands."""

    def __init__(self, daemon, keys, data_dir: str, audit: Callable[[dict], None],
                 reply: Callable[[dict], None], *, rebirth: Callable[[], None] | None = None,
                 healthy: Callable[[str], bool] | None = None, clock: Callable[[], float] = time.time,
                 watch_s: float = WATCH_S, fault: Callable[[dict], None] | None = None,
                 room: Callable[[], bool] = lambda: True):
        self.daemon = daemon
        self.keys = list(keys)
        self.audit = audit
        self.reply = reply
        self.rebirth = rebirth
        self.clock = clock
        self.nonces = NonceCache(data_dir, clock)
        self.rejections = RejectionBudget(self._record_rejection, room=room)
        if self.nonces.problem is not None and fault is not None:
            reason, detail = self.nonces.problem
            fault({"component": "commands", "state": "fault", "reason": reason, "detail": detail})
        # config hash -> when a signed command was last accepted while it ran: a push that changes
        # the keys or the uplink is kept only once the platform has come back through them
        self._accepted_under: dict[str, float] = {}
        self.push = None if healthy is None else ConfigPush(daemon, healthy=healthy, report=self._push_outcome,
                                                            watch_s=watch_s, contacted=self._accepted_under.__contains__,
                                                            fault=fault)
        self._run = {"status": self._status, "silence": self._silence, "ack": self._ack,
                     "siren_test": self._siren_test, "drill": self._drill, "rebirth": self._rebirth,
                     "config_get": self._config_get,
                     "config_push": self._config_push, "update": self._update}
        from gateway.update.remote import RemoteUpdate  # the platform's `update`: gateway/update/remote.py

        self.updates = RemoteUpdate(daemon, audit=audit, reply=self._emit_reply,
                                    ready=(lambda: True) if healthy is None else lambda: healthy(daemon.cfg.text_hash))
        try:
            self.updates.resume_pending()  # a download cut short by a stop, a crash or a power cut goes on
        except Exception:  # noqa: BLE001 - a leftover download must not stop the daemon from starting
            log.exception("the interrupted update download could not be resumed")

    @classmethod
    def from_daemon(cls, daemon, *, audit, reply, rebirth=None, healthy=None, **kw) -> "CommandHandler":
        """Keys from [commands] platform_keys (none without the table), nonces under data_dir.
        Raises KeyFileError (a CommandError) for a missing, wrong or too-open key file."""
        cmds = daemon.cfg.commands
        keys = load_public_keys(cmds.platform_keys) if cmds is not None else []
        return cls(daemon, keys, daemon.cfg.gateway.data_dir, audit, reply, rebirth=rebirth, healthy=healthy, **kw)

    def handle(self, topic_name: str, payload: bytes) -> dict:
        """Verify and carry out one command; publish and return the reply. Never raises."""
        try:
            cmd = verify(payload, topic_name, self.daemon.cfg.gateway.id, self.keys, self.clock(), self.nonces)
        except CommandRejected as e:
            return self._refused(topic_name, _best_effort_id(payload), e.reason, e.message)
        except Exception:  # noqa: BLE001 - a bug in a check must not take the uplink thread with it
            log.exception("command on cmd/%s: internal error while verifying", _safe(topic_name)[:64])
            return self._refused(topic_name, None, "internal", "internal error (logged on the gateway)")
        return self._carry_out(cmd)

    def _refused(self, topic_name, cid, reason: str, message: str) -> dict:
        """Audited and answered within the flood budget (rejections.py): a flood of forged commands
        costs a few audit events a minute and a few replies, never the outbox or an alarm's turn."""
        reply = {"id": cid, "command": _safe(topic_name)[:64], "ok": False, "error": reason,
                 "message": _safe(message)}
        if self.rejections.rejected(reason, self._audit_fields(topic_name, cid, "rejected", reason, message)):
            self._emit_reply(reply)
        return reply

    def _carry_out(self, cmd: Command) -> dict:
        log.warning("command %s %s accepted (platform key %d)", cmd.id, cmd.name, cmd.key_index)
        self._accepted_under[self.daemon.cfg.text_hash] = time.monotonic()
        reply = {"id": cmd.id, "command": cmd.name}
        try:
            message, result = self._run[cmd.name](cmd)
            reply.update(ok=True, message=message, result=result)
        except CommandError as e:
            reply.update(ok=False, error=e.reason, message=_safe(e.message))
        except FutureTimeout:
            reply.update(ok=False, error="failed", message=f"the safety loop did not answer within "
                                                           f"{SAFETY_TIMEOUT_S:g} s")
        except GatewayError as e:  # unknown alarm, unknown output, the safety loop stopped
            reply.update(ok=False, error="failed", message=_safe(str(e)))
        except Exception:  # noqa: BLE001 - the command was accepted; the platform gets an answer, not silence
            log.exception("command %s %s failed", cmd.id, cmd.name)
            reply.update(ok=False, error="internal", message="internal error (logged on the gateway)")
        if not reply["ok"]:
            log.warning("command %s %s failed: %s", cmd.id, cmd.name, reply["message"])
        self._emit_audit(cmd.name, cmd.id, "accepted", reply.get("error"), reply["message"],
                         key=cmd.key_index, ok=reply["ok"])
        return self._emit_reply(reply)

    # -- the commands: each returns (message, result) or raises CommandError/GatewayError ----
    def _status(self, cmd: Command):
        return "status", self.daemon.status()

    def _silence(self, cmd: Command):
        silenced = operator.silence(self.daemon.safety, cmd.args.get("alarm"), BY, SAFETY_TIMEOUT_S)
        return (f"silenced {', '.join(silenced)}" if silenced else "nothing was sounding"), {"silenced": silenced}

    def _ack(self, cmd: Command):
        acked = operator.acknowledge(self.daemon.safety, cmd.args["alarm"], BY, SAFETY_TIMEOUT_S)
        return (f"acknowledged {', '.join(acked)}" if acked else "nothing to acknowledge"), {"acknowledged": acked}

    def _drill(self, cmd: Command):
        """gateway/act/operator.py, as `gateway drill start|stop` does it."""
        if cmd.args["action"] == "stop":
            stopped = operator.drill_stop(self.daemon.safety, BY, SAFETY_TIMEOUT_S)
            return (f"drill {', '.join(stopped)} stopped" if stopped else "no drill was running"), {"stopped": stopped}
        res = operator.drill_start(self.daemon.safety, cmd.args.get("area"), cmd.args.get("minutes"), BY,
                                   SAFETY_TIMEOUT_S)
        return f"drill {res['drill']} running in {res['area']} for {res['minutes']:g} min", res

    def _siren_test(self, cmd: Command):
        output, seconds = cmd.args["output"], cmd.args["seconds"]
        operator.siren_test(self.daemon.safety, output, seconds, BY, SAFETY_TIMEOUT_S)
        return f"{output} sounding for {seconds} s", {"output": output, "seconds": seconds}

    def _rebirth(self, cmd: Command):
        if self.rebirth is None:
            raise CommandError("unavailable", "this gateway has no uplink to publish a birth on")
        self.rebirth()
        return "birth published again", None

    def _config_get(self, cmd: Command):
        path = self.daemon.cfg.path
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise CommandError("failed", f"cannot read {path}: {e.strerror}") from None
        return path, {"path": path, "toml": raw.decode("utf-8", "replace"),
                      "sha256": hashlib.sha256(raw).hexdigest(), "running_sha256": self.daemon.cfg.text_hash}

    def _config_push(self, cmd: Command):
        if self.push is None:
            raise CommandError("unavailable", "this gateway cannot watch a pushed configuration (no health "
                                              "probe); configuration changes need a technician")
        self._accepted_under.clear()  # only contact after this push counts for it
        result = self.push.start(cmd.args["toml"], cmd.id, cmd.args.get("replaces"),
                                 cmd.args.get("changes_access", ()))
        contact = (f" and a signed command reaches it through the new {' and '.join(result['changes'])}"
                   if result.get("awaiting") == "contact" else "")
        return (f"configuration valid, written and applying; rolled back unless the gateway is healthy{contact} "
                f"within {result['watch_s']:g} s (a second reply follows)"), {"state": "applying", **result}

    def _update(self, cmd: Command):
        """Download (its own thread) and apply a release bundle: gateway/update/remote.py. The first reply
        says "downloading"; progress and the outcome follow as replies and audit events."""
        result = self.updates.start(cmd.id, cmd.args)
        resumed = f", resuming at byte {result['resumed_from']}" if result["resumed_from"] else ""
        return (f"update accepted: downloading {result['size']} bytes{resumed} (replies follow)"), result

    def _push_outcome(self, fields: dict) -> None:
        """The config push watchdog's verdict: a second reply and an audit event."""
        ok = fields["outcome"] == "applied"
        self._emit_audit("config_push", fields["command_id"], fields["outcome"], None if ok else fields["outcome"],
                         fields["message"], sha256=fields.get("sha256"))
        reply = {"id": fields["command_id"], "command": "config_push", "ok": ok, "message": fields["message"],
                 "result": {k: v for k, v in fields.items() if k not in ("command_id", "message")}}
        if not ok:
            reply["error"] = fields["outcome"]
        self._emit_reply(reply)

    def resume(self) -> bool:
        """At start, once the daemon runs: a config push whose watch a power cut interrupted is watched
        again (ConfigPush.resume). Never raises."""
        return self.push is not None and self.push.resume()

    def close(self, timeout: float = 1.0) -> None:
        """Stop watching a pushed config (the daemon is going away). Its files stay as they are.
        The counts of refused commands not yet summarised are audited now."""
        self.rejections.close()
        self.updates.stop(timeout)
        if self.push is not None:
            self.push.stop()
            self.push.wait(timeout)

    # -- output -------------------------------------------------------------------------------
    @staticmethod
    def _audit_fields(name, cid, outcome, reason, message, **extra) -> dict:
        return {"action": "remote_command", "actor": BY, "result": outcome, "command": _safe(str(name))[:64],
                "command_id": cid, "outcome": outcome, "reason": reason, "by": BY,
                "detail": _safe(message)[:500], **extra}

    def _emit_audit(self, name, cid, outcome, reason, message, **extra) -> None:
        fields = self._audit_fields(name, cid, outcome, reason, message, **extra)
        try:
            self.audit(fields)
        except (GatewayError, OSError) as e:  # the reply still goes out; the outbox logs its own trouble
            log.error("audit event for command %s not recorded: %s", cid, e)

    def _record_rejection(self, fields: dict) -> None:
        try:
            self.audit(fields)
        except (GatewayError, OSError) as e:
            log.error("audit event for rejected commands not recorded: %s", e)

    def _emit_reply(self, reply: dict) -> dict:
        try:
            self.reply(reply)
        except (GatewayError, OSError, TypeError, ValueError) as e:
            log.error("reply to command %s not sent: %s", reply.get("id"), e)
        return reply


def _best_effort_id(payload) -> str | None:
    try:
        return command_id_of(parse(payload))
    except CommandRejected:
        return None


def _safe(text: str) -> str:
    """A message that survives UTF-8 encoding even if it quotes an unpaired surrogate."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")
