"""The CLI side of the commands that talk to the running daemon over the control socket."""

from __future__ import annotations

import json
import math
import sys
import time

from gateway.errors import GatewayError


def socket_path(cfg) -> str:
    from gateway.control import client_socket_path

    return client_socket_path(cfg.gateway.data_dir, cfg.gateway.control_socket)


def read_via_daemon(cfg, sensors: list[str] | None) -> list[dict] | None:
    """Readings through the daemon when it runs (it owns the ports); None when it does not."""
    from gateway.control import DaemonNotRunning, call

    try:
        return call(socket_path(cfg), "read", {"sensors": sensors})
    except DaemonNotRunning:
        return None


def _socket_of_file(config_path: str) -> str:
    """The daemon's socket even when the file on disk is mid-edit and invalid: the running
    daemon still has the good one, and the technician still needs `status` and `reload`."""
    import tomllib
    from pathlib import Path

    from gateway.config import resolve_config_path
    from gateway.config.model import DEFAULT_DATA_DIR
    from gateway.control import client_socket_path

    path = Path(resolve_config_path(config_path)).absolute()  # as the loader does: no symlink resolution
    try:
        gw = tomllib.loads(path.read_text()).get("gateway", {})
    except (OSError, ValueError):
        gw = {}
    if not isinstance(gw, dict):
        gw = {}
    from gateway.config.paths import resolve

    base = path.parent
    data_dir = gw.get("data_dir") if isinstance(gw.get("data_dir"), str) else DEFAULT_DATA_DIR
    sock = gw.get("control_socket") if isinstance(gw.get("control_socket"), str) else None
    return client_socket_path(resolve(base, data_dir), resolve(base, sock) if sock else None)


def control_command(args, load) -> int:
    from gateway.control import call, stream
    from gateway.errors import ConfigError

    try:
        path = socket_path(load(args))
    except ConfigError:
        if args.command != "reload" and args.command != "status":
            raise
        path = _socket_of_file(args.config)
    c = args.command
    if c == "status":
        st = call(path, "status")
        if args.json:
            print(json.dumps(st, indent=2, ensure_ascii=False))
        else:
            print(format_status(st))
        return 0
    if c == "silence":
        res = call(path, "silence", {"by": "cli"})
        print(f"silenced: {', '.join(res.get('silenced', [])) or 'nothing was sounding'}")
        return 0
    if c == "ack":
        res = call(path, "ack", {"alarm": args.alarm, "by": "cli"})
        print(f"acknowledged: {', '.join(res.get('acknowledged', [])) or 'nothing'}")
        return 0
    if c == "siren":
        if not (math.isfinite(args.seconds) and 0 < args.seconds <= 60):
            raise GatewayError(f"--seconds {args.seconds:g}: a siren test lasts more than 0 and at most 60 seconds")
        if not args.yes:
            if not sys.stdin.isatty():
                raise GatewayError("siren test sounds a real siren: confirm with --yes when not at a terminal")
            ans = input(f"Sound '{args.name}' for {args.seconds:g} s? Residents will hear it. [y/N] ")
            if ans.strip().lower() not in ("y", "yes"):
                print("not tested")
                return 1
        res = call(path, "siren_test", {"output": args.name, "seconds": args.seconds, "by": "cli"},
                   timeout=args.seconds + 5)
        print(f"siren '{args.name}' tested for {res.get('seconds', args.seconds):g} s")
        return 0
    if c == "drill":
        if args.action == "stop":
            res = call(path, "drill", {"action": "stop", "by": "cli"})
            print(f"drill stopped: {', '.join(res.get('stopped', [])) or 'no drill was running'}")
            return 0
        req = {"action": "start", "by": "cli", "area": args.area}
        if args.minutes is not None:
            if not (math.isfinite(args.minutes) and 0 < args.minutes <= 240):
                raise GatewayError(f"--minutes {args.minutes:g}: a drill lasts more than 0 and at most 240 minutes")
            req["minutes"] = args.minutes
        res = call(path, "drill", req)
        print(f"drill {res['drill']} running in {res['area']} at {res['level']} for {res['minutes']:g} min "
              "(gateway drill stop ends it)")
        return 0
    if c == "events":
        for ev in stream(path, "events", {"follow": args.follow}):
            print(json.dumps(ev, ensure_ascii=False) if args.json else format_event(ev))
            sys.stdout.flush()
        return 0
    if c == "reload":
        res = call(path, "reload", {}, timeout=30)
        print(res.get("message", "reloaded"))
        return 0
    raise GatewayError(f"unknown command {c}")


def _age(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def format_status(st: dict) -> str:
    out = [f"gateway {st.get('gateway')}  up {_age(st.get('uptime_s'))}  config {st.get('config_hash', '')[:12]}"]
    out.append("")
    out.append(f"{'SENSOR':24} {'POINT':14} {'VALUE':>10} {'UNIT':6} {'QUALITY':8} AGE")
    for r in st.get("sensors", []):
        v = "-" if r.get("value") is None else f"{r['value']:g}"
        q = r["quality"]
        out.append(f"{r['sensor']:24} {r['point']:14} {v:>10} {r.get('unit', ''):6} {q:8} {_age(r.get('age_s'))}"
                   + (f"  {r['fault']}" if r.get("fault") else ""))
    out.append("")
    alarms = st.get("alarms", [])
    out.append("ALARMS: none" if not alarms else "ALARMS:")
    for a in alarms:
        flags = [f for f in ("silenced", "acknowledged") if a.get(f)]
        out.append(f"  {a['id']:32} {a['level']:7} {a.get('value', '')!s:>8}  {' '.join(flags)}")
    outs = st.get("outputs", {})
    out.append("OUTPUTS: " + ("  ".join(f"{n}={'ON' if o.get('on') else 'off'}"
                                       + (f"({o['level']})" if o.get("level") else "")
                                       for n, o in outs.items()) or "none"))
    out += [f"  {n}: FAULT {o['problem']}" for n, o in outs.items() if o.get("problem")]  # voice, Modbus
    if st.get("drill"):
        d = st["drill"]
        out.append(f"DRILL {d['id']} running in {d['area'] or 'all'} ({d['level']}), ends in {d['ends_ts'] - time.time():.0f} s")
    up = st.get("uplink") or {}
    ob = st.get("outbox") or {}
    out.append(f"UPLINK: {up.get('state', 'offline (no [uplink])')}   OUTBOX: {ob.get('pending', '-')} "
               f"undelivered, oldest {_age(ob.get('oldest_pending_age_s'))}"
               + (f", last error: {ob['last_error']}" if ob.get("last_error") else ""))
    return "\n".join(out)


def format_event(ev: dict) -> str:
    ts = ev.get("ts") or time.strftime("%Y-%m-%dT%H:%M:%S")
    rest = {k: v for k, v in ev.items() if k not in ("ts", "type", "v", "id", "boot", "clock_synced", "replay")}
    return f"{ts} {ev.get('type', '?'):9} " + " ".join(f"{k}={v}" for k, v in rest.items())
