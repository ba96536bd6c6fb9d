"""The CLI side of the commands that talk to the running daemon over the control socket.

None of them needs the config file valid (gateway.cli.finding): the daemon has the good one."""

from __future__ import annotations

import json
import math
import sys
import time

from gateway.cli.finding import DaemonReloading, call_daemon, locate
from gateway.errors import GatewayError


def read_via_daemon(cli_config: str | None, sensors: list[str] | None) -> list[dict] | None:
    """Readings through the daemon when it runs (it owns the ports); None when it does not."""
    from gateway.control import DaemonNotRunning

    try:
        return call_daemon(locate(cli_config), "read", {"sensors": sensors})
    except DaemonNotRunning:
        return None


def control_command(args) -> int:
    from gateway.cli.status_screen import format_status

    addr = locate(args.config)
    c = args.command
    if c == "status":
        try:
            st = call_daemon(addr, "status")
        except DaemonReloading as e:
            if args.json:
                print(json.dumps({"state": "reloading", "daemon": e.owner, "message": str(e)}, indent=2))
            else:
                print(f"RELOADING: {e}")
            return 3
        print(json.dumps(st, indent=2, ensure_ascii=False) if args.json else format_status(st))
        return 0
    if c == "silence":
        res = call_daemon(addr, "silence", {"by": "cli"})
        print(f"silenced: {', '.join(res.get('silenced', [])) or 'nothing was sounding'}")
        return 0
    if c == "ack":
        res = call_daemon(addr, "ack", {"alarm": args.alarm, "by": "cli"})
        print(f"acknowledged: {', '.join(res.get('acknowledged', [])) or 'nothing'}")
        return 0
    if c == "siren":
        return _siren_test(addr, args)
    if c == "drill":
        if args.action == "stop":
            res = call_daemon(addr, "drill", {"action": "stop", "by": "cli"})
            print(f"drill stopped: {', '.join(res.get('stopped', [])) or 'no drill was running'}")
            return 0
        req = {"action": "start", "by": "cli", "area": args.area}
        if args.minutes is not None:
            if not (math.isfinite(args.minutes) and 0 < args.minutes <= 240):
                raise GatewayError(f"--minutes {args.minutes:g}: a drill lasts more than 0 and at most 240 minutes")
            req["minutes"] = args.minutes
        res = call_daemon(addr, "drill", req)
        print(f"drill {res['drill']} running in {res['area']} at {res['level']} for {res['minutes']:g} min "
              "(gateway drill stop ends it)")
        return 0
    if c == "events":
        from gateway.cli.events import run_events

        return run_events(addr, args)
    if c == "reload":
        res = call_daemon(addr, "reload", {}, timeout=30)
        print(res.get("message", "reloaded"))
        return 0
    raise GatewayError(f"unknown command {c}")


def _siren_test(addr, args) -> int:
    if not (math.isfinite(args.seconds) and 0 < args.seconds <= 60):
        raise GatewayError(f"--seconds {args.seconds:g}: a siren test lasts more than 0 and at most 60 seconds")
    if not args.yes:
        if not sys.stdin.isatty():
            raise GatewayError("siren test sounds a real siren: confirm with --yes when not at a terminal")
        ans = input(f"Sound '{args.name}' for {args.seconds:g} s? Residents will hear it. [y/N] ")
        if ans.strip().lower() not in ("y", "yes"):
            print("not tested")
            return 1
    res = call_daemon(addr, "siren_test", {"output": args.name, "seconds": args.seconds, "by": "cli"},
                      timeout=args.seconds + 5)
    seconds = res.get("seconds", args.seconds)
    started = time.strftime("%H:%M:%S")
    print(f"siren '{args.name}' ON at {started} for {seconds:g} s ...", flush=True)
    # Report when it has run, not when it was asked: wait for the daemon to end the test.
    deadline = time.monotonic() + seconds + 5
    while time.monotonic() < deadline:
        out = (call_daemon(addr, "status").get("outputs") or {}).get(args.name, {})
        if not out.get("testing"):
            after = "still ON (an alarm asks for it)" if out.get("on") else "off"
            print(f"siren '{args.name}' test done at {time.strftime('%H:%M:%S')}: sounded {seconds:g} s, now {after}")
            return 0
        time.sleep(0.1)
    raise GatewayError(f"siren '{args.name}' still in its test {seconds + 5:g} s after it started: "
                       f"see journalctl -u community-gateway -n 50")
