"""`gateway`: the technician's command line. Every error is a sentence, exit 1, no traceback
(set DEBUG=1 to see one)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback

from gateway import __version__
from gateway.errors import ConfigError, GatewayError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gateway", description="Community monitoring gateway")
    ap.add_argument("--version", action="version", version=f"community-gateway {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name, help_):
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("-c", "--config", help="config file (default: $GATEWAY_CONFIG or /etc/community-gateway/gateway.toml)")
        return p

    cmd("check", "validate the configuration and print a summary")
    p = cmd("read", "read sensors once and print their values")
    p.add_argument("sensors", nargs="*", metavar="SENSOR")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--direct", action="store_true", help="open the buses here even if the daemon runs")
    p = cmd("sim", "serve simulated devices for every sensor of the config")
    p.add_argument("--scenario", default="normal", help="normal, flood, fire, hydrant-opened, faults")
    p.add_argument("--speed", type=float, default=1.0, help="scenario time multiplier")
    p.add_argument("--for", dest="duration", type=float, default=None, help="stop after this many seconds")
    cmd("run", "run the gateway daemon (acquire, decide, sound, record, sync)")
    p = cmd("status", "what the running daemon sees: sensors, alarms, outputs, uplink, outbox")
    p.add_argument("--json", action="store_true")
    cmd("silence", "silence every sounding output (alarms stay active)")
    p = cmd("ack", "acknowledge an alarm (a latched alarm clears once its condition is gone)")
    p.add_argument("alarm", help="alarm id, as `gateway status` shows it, or 'all'")
    p = cmd("siren", "siren self-test")
    p.add_argument("action", choices=["test"])
    p.add_argument("name", help="output name")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p = cmd("drill", "emergency drill (应急演练): sound an area with the drill announcement, or stop it")
    p.add_argument("action", choices=["start", "stop"])
    p.add_argument("--minutes", type=float, default=None, help="how long (default 30, at most 240)")
    p.add_argument("--area", default=None, help="the outputs of this area only (default: every output)")
    p = cmd("events", "event history from the outbox file (alarms, faults, audits, ...), newest last")
    p.add_argument("--follow", action="store_true", help="then keep printing new events as they happen")
    p.add_argument("--json", action="store_true", help="one envelope (as sent to the platform) per line")
    p.add_argument("--since", help="from this time: 19:00, 2026-12-01T19:00, or an age like 30m, 2h, 1d")
    p.add_argument("--type", help="only these types, comma-separated: alarm,fault,audit,status,telemetry,gap "
                                       "(default: all but telemetry)")
    p.add_argument("-n", type=int, default=50, help="at most this many, the newest (default 50)")
    p = cmd("update", "apply a signed release bundle: verify, install beside, switch, health gate (docs/updates.md)")
    p.add_argument("bundle", metavar="FILE", help="the release bundle (gateway-platform release)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the health gate's outcome")
    cmd("reload", "re-validate the config file and apply it (a bad file changes nothing)")
    p = cmd("scan", "find Modbus devices on a bus (the daemon must be stopped: it owns the ports)")
    p.add_argument("bus", help="bus name from the config")
    p.add_argument("--units", default="1-247", help="unit ids, e.g. 1-247 or 1,5,10-20")
    p.add_argument("--baud", default=None, help="baud rates to try, e.g. 9600,19200 (default: the bus's)")
    p.add_argument("--timeout", type=float, default=0.1, help="seconds to wait for each unit")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if os.environ.get("DEBUG") else logging.INFO,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stdout)
    try:
        return _dispatch(args)
    except ConfigError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        print(f"configuration is invalid: {len(e.problems)} problem(s)", file=sys.stderr)
        return 1
    except GatewayError as e:
        if os.environ.get("DEBUG"):
            traceback.print_exc()
        print(f"gateway {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `gateway check | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0


def _load(args):
    from gateway.cli.finding import require_config
    from gateway.config import load_config

    return load_config(require_config(args.config))


def _dispatch(args) -> int:
    if args.command == "check":
        from gateway.config import summary

        cfg = _load(args)
        print("configuration is valid")
        print(summary(cfg))
        return 0
    if args.command == "read":
        return _read(args)
    if args.command == "sim":
        from gateway.sim.runner import run_sim

        return run_sim(_load(args), args.scenario, speed=args.speed, duration=args.duration)
    if args.command == "scan":
        from gateway.cli.scan import run_scan

        return run_scan(_load(args), args.bus, args.units, args.baud, args.timeout)
    if args.command == "update":
        from gateway.cli.update import run_update

        return run_update(_load(args), args.bundle, wait=not args.no_wait)
    if args.command == "run":
        from gateway.service.process import run_daemon

        return run_daemon(_load(args))
    from gateway.cli.daemon_calls import control_command

    return control_command(args)


def _read(args) -> int:
    from gateway.acquire import Acquisition
    from gateway.reading import GOOD

    readings = None
    if not args.direct:  # the daemon owns the ports and has the good config, whatever the file says now
        from gateway.cli.daemon_calls import read_via_daemon

        readings = read_via_daemon(args.config, args.sensors or None)
    if readings is None:
        cfg = _load(args)
        unknown = [s for s in args.sensors if s not in cfg.sensors]
        if unknown:
            raise GatewayError(f"unknown sensor {', '.join(unknown)}; configured: {', '.join(cfg.sensors)}")
        logging.getLogger().setLevel(logging.CRITICAL)  # faults are in the output itself
        readings = [r.as_dict() for r in Acquisition(cfg).read_once(args.sensors or None)]
    if not readings:
        print("no readings yet: the daemon has just started (try again in a few seconds)", file=sys.stderr)
        return 2
    if args.json:
        for r in readings:
            print(json.dumps(r, ensure_ascii=False))
    else:
        print(f"{'SENSOR':24} {'POINT':14} {'VALUE':>10} {'UNIT':6} QUALITY")
        for r in readings:
            v = "-" if r["value"] is None else f"{r['value']:g}"
            q = r["quality"] + (f" ({r['fault']})" if r.get("fault") else "")
            print(f"{r['sensor']:24} {r['point']:14} {v:>10} {r['unit']:6} {q}")
    return 0 if all(r["quality"] == GOOD for r in readings) else 2


if __name__ == "__main__":
    sys.exit(main())
