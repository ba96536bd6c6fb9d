"""What the daemon answers on its control socket (the CLI's `status`, `silence`, ...)."""

from __future__ import annotations

import time

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
        alarm = args.get("alarm")
        ts = daemon.safety.silence(alarm, by=str(args.get("by", "cli"))).result(COMMAND_TIMEOUT_S)
        return {"silenced": [t.alarm_id for t in ts if t.kind == "silenced"]}

    def ack(args):
        alarm = require(args, "alarm")
        ts = daemon.safety.acknowledge(None if alarm == "all" else alarm,
                                       by=str(args.get("by", "cli"))).result(COMMAND_TIMEOUT_S)
        return {"acknowledged": [t.alarm_id for t in ts if t.kind in ("acknowledged", "cleared")]}

    def siren_test(args):
        name = require(args, "output")
        seconds = require(args, "seconds", (int, float))
        if not 0 < seconds <= 60:
            raise BadRequest("a siren test lasts 0 < seconds <= 60")
        daemon.safety.siren_test(name, float(seconds), by=str(args.get("by", "cli"))).result(COMMAND_TIMEOUT_S)
        return {"output": name, "seconds": seconds}

    def reload(args):
        from gateway.config import load_config

        new = load_config(daemon.cfg.path)  # ConfigError: the reply lists the problems, nothing changes
        if daemon.request_reload is None:
            raise GatewayError("this daemon cannot reload; restart it")
        daemon.request_reload(new)
        return {"message": f"configuration valid ({new.text_hash[:12]}); applying it now"}

    def events(args, stream):
        follow = bool(args.get("follow"))
        with daemon._events_cv:
            backlog, total = list(daemon.events), daemon.events_total
        for ev in backlog[-50:]:
            if not stream(ev):
                return
        while follow and stream.alive():
            new, total = daemon.wait_events(total, timeout=1.0)
            for ev in new:
                if not stream(ev):
                    return

    def drill(args):
        """`gateway drill start|stop`: gateway/act/drill.py."""
        from gateway.act.drill import DEFAULT_MINUTES

        by = str(args.get("by", "cli"))
        if args.get("action") == "stop":
            ts = daemon.safety.drill_stop(by=by).result(COMMAND_TIMEOUT_S)
            return {"stopped": [t.alarm_id for t in ts if t.kind == "cleared"]}
        minutes = args.get("minutes", DEFAULT_MINUTES)
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)):
            raise BadRequest("minutes must be a number")
        ts = daemon.safety.drill_start(args.get("area"), float(minutes), by=by).result(COMMAND_TIMEOUT_S)
        raised = [t for t in ts if t.kind == "raised"]
        return {"drill": raised[0].alarm_id, "area": raised[0].point, "level": raised[0].level, "minutes": minutes}

    return ({"status": status, "read": read, "silence": silence, "ack": ack, "siren_test": siren_test,
             "reload": reload, "drill": drill}, {"events": events})
