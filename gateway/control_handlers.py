"""What the daemon answers on its control socket (the CLI's `status`, `silence`, ...)."""

from __future__ import annotations

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
        st = daemon.status()["sensors"]
        return [r for r in st if sensors is None or r["sensor"] in sensors]

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
        sent = 0
        backlog = list(daemon.events)
        for ev in backlog[-50:]:
            if not stream(ev):
                return
        sent = len(backlog)
        while follow and stream.alive():
            evs = daemon.wait_events(sent, timeout=1.0)
            # the ring buffer may have rotated; send what is new since `sent`
            new = evs[sent:] if len(evs) > sent else []
            for ev in new:
                if not stream(ev):
                    return
            sent = len(evs)

    return ({"status": status, "read": read, "silence": silence, "ack": ack, "siren_test": siren_test,
             "reload": reload}, {"events": events})
