"""`gateway events`: the history in the outbox file, then (with --follow) what happens next.

The outbox keeps every event until the platform has it (and delivered rows for a day), so it is
the history; the daemon's in-memory ring only has the last thousand. A running daemon holds the
file exclusively (WAL without a shared-memory file) and answers `history` from it; with no daemon
the file is opened read-only (SQLite `mode=ro`)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sqlite3
import sys

from gateway.errors import GatewayError

TYPES = ("alarm", "fault", "audit", "status", "telemetry", "gap")
_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str | None, now: float) -> float | None:
    """`30m`, `2h`, `1d` (ago), `19:00` (today, local time), or an ISO date/time."""
    if not text:
        return None
    m = _AGE.match(text.strip())
    if m:
        return now - float(m.group(1)) * _UNIT_S[m.group(2)]
    try:
        if re.match(r"^\d{1,2}:\d{2}(:\d{2})?$", text.strip()):
            t = dt.time.fromisoformat(text.strip().zfill(5) if len(text.strip()) == 4 else text.strip())
            return dt.datetime.combine(dt.date.fromtimestamp(now), t).timestamp()
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        return when.timestamp()
    except ValueError:
        raise GatewayError(f"--since {text!r}: give an age (30m, 2h, 1d), a time today (19:00) "
                           f"or a date and time (2026-12-01T19:00)") from None


def parse_types(text: str | None) -> list[str]:
    """The types asked for; by default every type but telemetry (the per-point summaries would bury
    the alarms and faults a technician looks for: `--type telemetry` shows them)."""
    if not text:
        return [t for t in TYPES if t != "telemetry"]
    types = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in types if t not in TYPES]
    if bad:
        raise GatewayError(f"--type {','.join(bad)}: event types are {', '.join(TYPES)}")
    return types


def history(outbox_path: str, since: float | None = None, types: list[str] | None = None,
            n: int = 50) -> list[dict]:
    """The newest `n` events of the outbox file (oldest first), read-only: for when no daemon runs
    (a running daemon holds the file exclusively and answers `history` itself)."""
    from gateway.record.history import select_history

    if not os.path.exists(outbox_path):
        raise FileNotFoundError(outbox_path)
    db = sqlite3.connect(f"file:{outbox_path}?mode=ro", uri=True, timeout=2)
    try:
        return select_history(db, since, types, n)
    finally:
        db.close()


def run_events(addr, args) -> int:
    import time

    from gateway.cli.finding import open_stream

    since = parse_since(args.since, time.time())
    types = parse_types(args.type)
    from gateway.cli.finding import call_daemon
    from gateway.control import DaemonNotRunning

    path = os.path.join(addr.data_dir, "outbox.sqlite")
    try:
        try:  # the running daemon holds its outbox exclusively: it reads its own history
            past = call_daemon(addr, "history", {"since": since, "types": types, "n": args.n}, timeout=10.0)
        except DaemonNotRunning:
            past = history(path, since, types, args.n)
    except (OSError, sqlite3.Error, GatewayError) as e:
        # No readable file (another user, the daemon never ran here): the daemon's memory is better
        # than nothing, and says so.
        why = "does not exist" if isinstance(e, FileNotFoundError) else f"cannot be read ({e})"
        print(f"(outbox {path} {why}: showing the daemon's recent events instead)", file=sys.stderr)
        past = None
    if past is not None:
        for ev in past:
            _print(ev, args.json)
    if not args.follow and past is not None:
        return 0
    backlog = 0 if past is not None else args.n
    for ev in open_stream(addr, "events", {"follow": args.follow, "backlog": backlog}):
        if (types and ev.get("type") not in types) or (since and _ts(ev) < since):
            continue
        _print(ev, args.json)
    return 0


def _ts(ev: dict) -> float:
    try:
        return dt.datetime.fromisoformat(str(ev.get("ts")).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _print(ev: dict, as_json: bool) -> None:
    print(json.dumps(ev, ensure_ascii=False) if as_json else format_event(ev))
    sys.stdout.flush()


_SKIP = ("ts", "type", "v", "id", "boot", "clock_synced", "replay", "delivered", "seq")


def format_event(ev: dict) -> str:
    """One line a person reads: time, type, what happened; empty and null fields left out."""
    ts = str(ev.get("ts") or "")
    kind = ev.get("type", "?")
    f = {k: v for k, v in ev.items() if k not in _SKIP and v is not None and v != ""}
    if kind == "alarm":
        val = f.pop("value", None)
        unit = f.pop("unit", "")
        label = f.pop("label", None)
        what = f"{f.pop('alarm', '?')} {f.pop('transition', '?')} {f.pop('level', None) or ''}".rstrip()
        prev = f.pop("previous_level", None)
        if prev and prev != ev.get("level"):
            what += f" (was {prev})"
        if val is not None:
            what += f" value {val:g}{(' ' + unit) if unit else ''}" if isinstance(val, (int, float)) else f" value {val}"
            if label:
                what += f" ({label})"
        if f.get("cause"):
            what += f"; cause: {f.pop('cause')}"
        for k in ("rule", "sensor", "point"):
            f.pop(k, None)
        rest = " ".join(f"{k}={v}" for k, v in f.items())
        line = f"{ts} {kind:9} {what}" + (f"  {rest}" if rest else "")
    else:
        line = f"{ts} {kind:9} " + " ".join(f"{k}={v}" for k, v in f.items())
    if ev.get("delivered") is False and kind == "alarm":
        line += "  [not yet at the platform]"
    return line
