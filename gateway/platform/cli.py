"""`gateway-platform`: the reference platform receiver, for the bench and for a technician who wants
to see what a gateway sends.

    gateway-platform receive --host H --port P [--store URL|FILE] [--root R] [--share GROUP [--instance N]]
                             [--ca CA --cert CERT --key KEY] [--username U --password P]
                                             --store postgresql://user@host/db, sqlite:///file or a path
                                             (default: memory only); --share G --instance N: receiver N
                                             of group G, a persistent session (killable, restartable)
    gateway-platform report --store URL|FILE per gateway: events, duplicates, declared and undeclared gaps
    gateway-platform keygen --out PREFIX     PREFIX.key (0600, keep it here) and PREFIX.pub (pin it on gateways)
    gateway-platform send --host H --port P [--root R] GATEWAY COMMAND [NAME=VALUE ...] --key FILE
                          [--changes-access commands,uplink]
                                             sign a command, send it, print the replies (docs/commands.md);
                                             issue times only grow per key (FILE.issued keeps the last)
    gateway-platform release --version V --wheels DIR --key RELEASE.key --out FILE [--min-version M]
                                             a signed release bundle for `gateway update` (docs/updates.md)
    gateway-platform gb26875-centre --port P [--address A] [--deny N] [--stall N] [--drop N] [--cut N]
                                             a GB/T 26875.3 monitoring centre: confirm, decode to JSON lines
    gateway-platform fleet-sim --gateways N [--duration S] [--outage-at S --outage-s S] [--receiver] [--json F]
                                             N simulated gateways on the gateway's own outbox/uplink (docs/fleet.md)
    gateway-platform sl651-centre --port P [--deny N] [--stall N] [--drop N] [--cut N] [--eot]
                                             an SL 651-2014 centre: confirm (M2), decode to JSON lines
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from gateway.errors import GatewayError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gateway-platform", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("receive", help="subscribe, validate, de-duplicate, detect gaps, store, print")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, default=1883)
    r.add_argument("--store", "--db", dest="store", default=":memory:", metavar="URL|FILE",
                   help="where events go: postgresql://user@host:port/db, sqlite:///relative.db, "
                        "sqlite:////absolute.db or a SQLite path (default: memory only)")
    r.add_argument("--root", default="city/v1", help="topic root (default city/v1)")
    r.add_argument("--share", metavar="GROUP", help="use the shared subscription $share/GROUP/... for events")
    r.add_argument("--instance", metavar="N", help="with --share: this receiver's stable name in the group; "
                                                   "its session (client id gateway-platform-GROUP-N) persists")
    r.add_argument("--session", metavar="CLIENT_ID", help="persistent session: the broker queues while away")
    r.add_argument("--session-expiry", type=int, default=3600, metavar="S",
                   help="seconds the broker keeps the session (and queues for it) while away (default 3600)")
    r.add_argument("--batch", type=int, default=500, metavar="N", help="events per store transaction, at most")
    r.add_argument("--linger", type=float, default=0.05, metavar="S",
                   help="seconds a transaction waits for more messages once one is in (default 0.05)")
    r.add_argument("--ca")
    r.add_argument("--cert")
    r.add_argument("--key")
    r.add_argument("--username")
    r.add_argument("--password", default=os.environ.get("GATEWAY_PLATFORM_PASSWORD"))
    r.add_argument("--schemas", help="directory of the JSON Schemas (default: the ones installed with the package)")
    r.add_argument("--quiet", action="store_true", help="no live view, only the summary at exit")
    rep = sub.add_parser("report", help="summarise a receiver database")
    rep.add_argument("--store", "--db", dest="store", required=True, metavar="URL|FILE")
    kg = sub.add_parser("keygen", help="make the platform's Ed25519 command-signing key pair")
    kg.add_argument("--out", required=True, metavar="PREFIX", help="writes PREFIX.key and PREFIX.pub")
    sd = sub.add_parser("send", help="sign a command with --key, send it to GATEWAY, print the replies")
    sd.add_argument("gateway", metavar="GATEWAY")
    sd.add_argument("name", metavar="COMMAND", help="silence, ack, siren_test, status, rebirth, config_get, "
                                                    "config_push")
    sd.add_argument("args", nargs="*", metavar="NAME=VALUE", help="e.g. output=garage-siren seconds=5, "
                                                                  "toml=@new.toml")
    sd.add_argument("--key", required=True, help="the platform's private signing key (PREFIX.key)")
    sd.add_argument("--host", default="127.0.0.1")
    sd.add_argument("--port", type=int, default=1883)
    sd.add_argument("--root", default="city/v1", help="topic root (default city/v1)")
    sd.add_argument("--ttl", type=float, default=60, help="seconds the command stays valid (at most 300)")
    sd.add_argument("--changes-access", type=_sections, default=None, metavar="commands,uplink",
                    help="config_push only: the push knowingly changes the pinned platform keys and/or the "
                         "[uplink] target; kept only if the platform reaches the gateway through them again")
    sd.add_argument("--timeout", type=float, default=10, help="seconds to wait for the reply")
    sd.add_argument("--ca")
    sd.add_argument("--cert")
    sd.add_argument("--tls-key", help="the MQTT client certificate's key (--key is the signing key)")
    sd.add_argument("--username")
    sd.add_argument("--password", default=os.environ.get("GATEWAY_PLATFORM_PASSWORD"))
    from gateway.platform import fleet_sim

    fleet_sim.add_arguments(sub.add_parser("fleet-sim", help="many simulated gateways with the gateway's own "
                                                              "outbox and uplink code (docs/fleet.md)"))
    rl = sub.add_parser("release", help="build a signed release bundle (docs/updates.md)")
    rl.add_argument("--version", required=True, help="the release's version: its gateway wheel's version")
    rl.add_argument("--wheels", required=True, metavar="DIR", help="the gateway wheel and every dependency's "
                                                                   "(make wheels WHEEL_PLATFORM=...)")
    rl.add_argument("--key", required=True, help="the release signing key (gateway-platform keygen --out release)")
    rl.add_argument("--out", required=True, metavar="FILE", help="the bundle to write")
    rl.add_argument("--min-version", default=None, metavar="M",
                    help="the oldest running version this release may replace (default: any)")
    for name, what in (("gb26875-centre", "a GB/T 26875.3 fire monitoring centre (docs/gb26875.md)"),
                       ("sl651-centre", "an SL 651-2014 flood-office centre (docs/sl651.md)")):
        c = sub.add_parser(name, help=f"{what}: receive, confirm, print JSON lines")
        c.add_argument("--host", default="127.0.0.1")
        c.add_argument("--port", type=int, required=True)
        c.add_argument("--deny", type=int, default=0, metavar="N", help="deny the next N reports (-1: all)")
        c.add_argument("--stall", type=int, default=0, metavar="N", help="never answer the next N reports (-1: all)")
        c.add_argument("--drop", type=int, default=0, metavar="N", help="close the line on the next N reports")
        c.add_argument("--cut", type=int, default=0, metavar="N", help="send half a confirm to the next N reports, "
                                                                       "then close")
        if name == "gb26875-centre":
            c.add_argument("--address", default="000000000000", help="the centre's address, 12 hex digits")
            c.add_argument("--duty-check-s", type=float, default=0, metavar="S", help="send a duty check every S s")
        else:
            c.add_argument("--eot", action="store_true", help="confirm with EOT (station may leave) instead of ESC")
    return p


def _sections(text: str) -> list[str]:
    words = [w.strip() for w in text.split(",") if w.strip()]
    bad = [w for w in words if w not in ("commands", "uplink")]
    if bad or not words:
        raise argparse.ArgumentTypeError(f"a comma-separated list of commands, uplink (got {text!r})")
    return sorted(set(words))


def _centre(args, out) -> int:
    try:
        return _serve_centre(args, out)
    except OSError as e:
        print(f"gateway-platform {args.command}: cannot listen on {args.host}:{args.port}: {e.strerror}",
              file=sys.stderr)
        return 2


def _serve_centre(args, out) -> int:
    if args.command == "gb26875-centre":
        from gateway.platform.gb26875_centre import Gb26875Centre

        centre = Gb26875Centre(args.host, args.port, address=args.address, deny=args.deny, stall=args.stall,
                               drop=args.drop, cut=args.cut, echo=out)
    else:
        from gateway.platform.sl651_centre import Sl651Centre
        from gateway.sync.sl651.codec import EOT, ESC

        centre = Sl651Centre(args.host, args.port, deny=args.deny, stall=args.stall, drop=args.drop,
                             cut=args.cut, end=EOT if args.eot else ESC, echo=out)
    centre.start()
    out(f"{args.command} listening on {args.host}:{centre.port} (Ctrl-C to stop)")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        every = getattr(args, "duty_check_s", 0)
        while not done.wait(every or None):
            centre.request("duty_check")
    except KeyboardInterrupt:
        pass
    centre.stop()
    return 0


def _keygen(args, out) -> int:
    from gateway.platform.keys import keygen

    key_path, pub_path = keygen(args.out)
    out(f"wrote {key_path} (private, mode 0600: keep it on the platform)")
    out(f"wrote {pub_path} (public: pin it in each gateway's [commands] platform_keys)")
    return 0


def _send(args, out) -> int:
    import json

    from gateway.commands.signing import parse_utc
    from gateway.errors import CommandError
    from gateway.platform.keys import load_private_key
    from gateway.platform.sign import command_args, send_command, sign_command

    from gateway.platform.sign import IssueFile

    cmd_args = command_args(args.args)
    if args.changes_access:
        if args.name != "config_push":
            raise CommandError("bad_args", "--changes-access is for config_push only")
        cmd_args["changes_access"] = args.changes_access
    issued = IssueFile(args.key)
    cmd = sign_command(load_private_key(args.key), args.gateway, args.name, cmd_args, args.ttl,
                       after=issued.last())
    issued.save(parse_utc(cmd["issued_at"]))
    replies = send_command(args.host, args.port, cmd, root=args.root, timeout=args.timeout, ca=args.ca,
                           cert=args.cert, key=args.tls_key, username=args.username, password=args.password,
                           on_reply=lambda r: out(json.dumps(r, ensure_ascii=False)))
    return 0 if replies[-1].get("ok") else 1


def _release(args, out) -> int:
    from gateway.update.bundle import build_bundle

    m = build_bundle(version=args.version, wheels_dir=args.wheels, key_path=args.key, out=args.out,
                     min_version=args.min_version)
    out(f"wrote {args.out}: community-gateway {m['version']} (replaces {m['min_version']} or later), "
        f"{len(m['files'])} wheels, platforms {', '.join(m['platforms'])}")
    return 0


def _summary(store, out) -> int:
    """Print per-gateway figures; returns the number of undeclared gap ranges."""
    lost = 0
    for gw in store.gateways():
        n = store.counts(gw)
        undeclared = store.undeclared(gw)
        lost += len(undeclared)
        out(f"{gw}: {n[0]} events, seq {n[1]}..{n[2]}, declared gaps {store.declared(gw) or 'none'}, "
            f"UNDECLARED gaps {undeclared or 'none'}")
    out(f"duplicates dropped: {store.duplicates()}")
    return lost


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = lambda line: print(line, flush=True)  # noqa: E731 - the live view is line-buffered
    try:
        if args.command == "report":
            from gateway.platform.stores import open_store
            return 1 if _summary(open_store(args.store), out) else 0
        if args.command == "keygen":
            return _keygen(args, out)
        if args.command == "send":
            return _send(args, out)
        if args.command == "fleet-sim":
            from gateway.platform import fleet_sim
            return fleet_sim.main(args)
        if args.command == "release":
            return _release(args, out)
        if args.command in ("gb26875-centre", "sl651-centre"):
            return _centre(args, out)
        from gateway.platform.receiver import Receiver
        from gateway.platform.stores import describe_url
        # paho's thread decodes (pure Python) while the writer waits on PostgreSQL's socket: with the
        # default 5 ms GIL switch interval each of the writer's round trips waits for a slice.
        # 0.5 ms: 1,200 -> 1,550 events/s for one receiver (docs/fleet-platform.md)
        sys.setswitchinterval(0.0005)
        session = args.session
        if args.instance is not None:
            if not args.share:
                print("gateway-platform receive: --instance needs --share GROUP", file=sys.stderr)
                return 2
            session = session or f"gateway-platform-{args.share}-{args.instance}"
        receiver = Receiver(args.host, args.port, root=args.root, db=args.store, share=args.share,
                            session=session, session_expiry_s=args.session_expiry, batch_max=args.batch, linger_s=args.linger,
                            keep_events=False, ca=args.ca, cert=args.cert, key=args.key,
                            username=args.username, password=args.password, schemas=args.schemas,
                            echo=None if args.quiet else out)
        receiver.start()
    except GatewayError as e:
        print(f"gateway-platform: {e}", file=sys.stderr)
        return 2
    where = f"$share/{args.share}/" if args.share else ""
    out(f"receiving {where}{args.root}/+/event/+ and {args.root}/+/status from {args.host}:{args.port}"
        f" into {describe_url(args.store)}{f' as session {session}' if session else ''} (Ctrl-C to stop)")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    receiver.stop()
    _summary(receiver.store, out)
    out(f"invalid payloads: {receiver.invalid_count}")
    receiver.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
