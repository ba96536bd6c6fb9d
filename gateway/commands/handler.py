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

from gateway.errors import CommandError, GatewayError

from .config_push import WATCH_S, ConfigPush
from .keys import load_public_keys
from .nonces import NonceCache
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
    without it config_push is refused."""

    def __init__(self, daemon, keys, data_dir: str, audit: Callable[[dict], None],
                 reply: Callable[[dict], None], *, rebirth: Callable[[], None] | None = None,
                 healthy: Callable[[str], bool] | None = None, clock: Callable[[], float] = time.time,
                 watch_s: float = WATCH_S):
        self.daemon = daemon
        self.keys = list(keys)
        self.audit = audit
        self.reply = reply
        self.rebirth = rebirth
        self.clock = clock
        self.nonces = NonceCache(data_dir, clock)
        self.push = None if healthy is None else ConfigPush(daemon, healthy=healthy, report=self._push_outcome,
                                                            watch_s=watch_s)
        self._run = {"status": self._status, "silence": self._silence, "ack": self._ack,
                     "siren_test": self._siren_test, "drill": self._drill, "rebirth": self._rebirth,
                     "config_get": self._config_get,
                     "config_push": self._config_push}

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
            cid = _best_effort_id(payload)
            log.warning("command %s on cmd/%s rejected: %s", cid, _safe(topic_name)[:64], e)
            self._emit_audit(topic_name, cid, "rejected", e.reason, e.message)
            return self._emit_reply({"id": cid, "command": _safe(topic_name)[:64], "ok": False,
                                     "error": e.reason, "message": _safe(e.message)})
        except Exception:  # noqa: BLE001 - a bug in a check must not take the uplink thread with it
            log.exception("command on cmd/%s: internal error while verifying", _safe(topic_name)[:64])
            self._emit_audit(topic_name, None, "rejected", "internal", "internal error while verifying")
            return self._emit_reply({"id": None, "command": _safe(topic_name)[:64], "ok": False,
                                     "error": "internal", "message": "internal error (logged on the gateway)"})
        return self._carry_out(cmd)

    def _carry_out(self, cmd: Command) -> dict:
        log.warning("command %s %s accepted (platform key %d)", cmd.id, cmd.name, cmd.key_index)
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
        done = self.daemon.safety.silence(cmd.args.get("alarm"), by=BY).result(SAFETY_TIMEOUT_S)
        silenced = [t.alarm_id for t in done if t.kind == "silenced"]
        return (f"silenced {', '.join(silenced)}" if silenced else "nothing was sounding"), {"silenced": silenced}

    def _ack(self, cmd: Command):
        alarm = cmd.args["alarm"]
        done = self.daemon.safety.acknowledge(None if alarm == "all" else alarm, by=BY).result(SAFETY_TIMEOUT_S)
        acked = [t.alarm_id for t in done if t.kind in ("acknowledged", "cleared")]
        return (f"acknowledged {', '.join(acked)}" if acked else "nothing to acknowledge"), {"acknowledged": acked}

    def _drill(self, cmd: Command):
        """gateway/act/drill.py, as `gateway drill start|stop` does it."""
        from gateway.act.drill import DEFAULT_MINUTES

        if cmd.args["action"] == "stop":
            done = self.daemon.safety.drill_stop(by=BY).result(SAFETY_TIMEOUT_S)
            stopped = [t.alarm_id for t in done if t.kind == "cleared"]
            return (f"drill {', '.join(stopped)} stopped" if stopped else "no drill was running"), {"stopped": stopped}
        minutes = cmd.args.get("minutes", DEFAULT_MINUTES)
        done = self.daemon.safety.drill_start(cmd.args.get("area"), float(minutes), by=BY).result(SAFETY_TIMEOUT_S)
        t = next(t for t in done if t.kind == "raised")
        return (f"drill {t.alarm_id} running in {t.point} for {minutes:g} min",
                {"drill": t.alarm_id, "area": t.point, "level": t.level, "minutes": minutes})

    def _siren_test(self, cmd: Command):
        output, seconds = cmd.args["output"], cmd.args["seconds"]
        self.daemon.safety.siren_test(output, float(seconds), by=BY).result(SAFETY_TIMEOUT_S)
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
        result = self.push.start(cmd.args["toml"], cmd.id, cmd.args.get("replaces"))
        return (f"configuration valid, written and applying; rolled back unless the gateway is healthy "
                f"within {result['watch_s']:g} s (a second reply follows)"), {"state": "applying", **result}

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

    def close(self, timeout: float = 1.0) -> None:
        """Stop watching a pushed config (the daemon is going away). Its files stay as they are."""
        if self.push is not None:
            self.push.stop()
            self.push.wait(timeout)

    # -- output -------------------------------------------------------------------------------
    def _emit_audit(self, name, cid, outcome, reason, message, **extra) -> None:
        fields = {"action": "remote_command", "actor": BY, "result": outcome, "command": _safe(str(name))[:64],
                  "command_id": cid, "outcome": outcome, "reason": reason, "by": BY,
                  "detail": _safe(message)[:500], **extra}
        try:
            self.audit(fields)
        except (GatewayError, OSError) as e:  # the reply still goes out; the outbox logs its own trouble
            log.error("audit event for command %s not recorded: %s", cid, e)

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
