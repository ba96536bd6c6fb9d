"""What the daemon answers on its control socket (the CLI's `status`, `silence`, ...)."""

from __future__ import annotations

import time

from gateway.act import operator
from gateway.control import BadRequest, require
from gateway.errors import GatewayError

COMMAND_TIMEOUT_S = 5.0


def handlers(daemon):
    def status(args):
        return daemon.status()

    def read(args):
        sensors = args.get("sensors")
        if sensors is not None and (not isinstance(sensors, list) or not all(isinstance(s, str) for s in sensors)):
            raise BadRequest("argument 'sensors' must be a list of sensor names")
        unknown = [s for s in sensors or () if s not in daemon.cfg.sensors]
        if unknown:
            raise BadRequest(f"unknown sensor {', '.join(unknown)}")
        # Only the acquisition's latest readings: `read` must not wait on the outbox's lock.
        now = time.monotonic()
        out = []
        for r in daemon.acquisition.latest(now):
            if sensors is None or r.sensor in sensors:
                out.append(dict(r.as_dict(), age_s=round(now - r.mono, 1)))
        order = {n: i for i, n in enumerate(daemon.cfg.sensors)}
        return sorted(out, key=lambda d: order.get(d["sensor"], 0))

    def silence(args):
        by = str(args.get("by", "cli"))
        return {"silenced": operator.silence(daemon.safety, args.get("alarm"), by, COMMAND_TIMEOUT_S)}

    def ack(args):
        by = str(args.get("by", "cli"))
        return {"acknowledged": operator.acknowledge(daemon.safety, require(args, "alarm"), by, COMMAND_TIMEOUT_S)}

    def siren_test(args):
        name, seconds = require(args, "output"), require(args, "seconds", (int, float))
        operator.siren_test(daemon.safety, name, seconds, str(args.get("by", "cli")), COMMAND_TIMEOUT_S)
        return {"output": name, "seconds": seconds}

    def reload(args):
        from gateway.config import load_config

        new = load_config(daemon.cfg.path)  # ConfigError: the reply lists the problems, nothing changes
        if daemon.request_reload is None:
            raise GatewayError("this daemon cannot reload; restart it")
        daemon.request_reload(new)
        return {"message": f"configuration valid ({new.text_hash[:12]}); applying it now"}

    def history(args):
        since, types, n = args.get("since"), args.get("types"), args.get("n", 50)
        if since is not None and (not isinstance(since, (int, float)) or isinstance(since, bool)):
            raise BadRequest("argument 'since' must be unix seconds")
        if types is not None and (not isinstance(types, list) or not all(isinstance(t, str) for t in types)):
            raise BadRequest("argument 'types' must be a list of event types")
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 100_000:
            raise BadRequest("argument 'n' must be a count from 0 to 100000")
        if daemon.outbox is None:
            raise GatewayError("the outbox is unavailable (see gateway status)")
        return daemon.outbox.history(since, types, n)

    def events(args, stream):
        follow = bool(args.get("follow"))
        n = args.get("backlog", 50)  # the CLI asks for 0 when it has printed the history from the outbox
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise BadRequest("argument 'backlog' must be a count >= 0")
        backlog, total = daemon.events.snapshot()
        for ev in (backlog[-n:] if n else []):
            if not stream(ev):
                return
        while follow and stream.alive():
            new, total = daemon.events.wait(total, timeout=1.0)
            for ev in new:
                if not stream(ev):
                    return

    def drill(args):
        """`gateway drill start|stop`: gateway/act/operator.py."""
        by = str(args.get("by", "cli"))
        if args.get("action") == "stop":
            return {"stopped": operator.drill_stop(daemon.safety, by, COMMAND_TIMEOUT_S)}
        return operator.drill_start(daemon.safety, args.get("area"), args.get("minutes"), by, COMMAND_TIMEOUT_S)

    return ({"status": status, "read": read, "silence": silence, "ack": ack, "siren_test": siren_test,
             "reload": reload, "history": history, "drill": drill}, {"events": events})
