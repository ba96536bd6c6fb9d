"""`gateway status` as text: the screen a technician reads at 2 a.m. (the dict is
gateway.service.status; `--json` prints that dict as it is)."""

from __future__ import annotations

import time

from gateway.service.status import alarm_flags, clock, duration


def _value(v, unit: str = "", label: str | None = None) -> str:
    if v is None:
        return "-"
    text = f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
    if label:
        return f"{text} ({label})"
    return f"{text} {unit}".rstrip()


def _age(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def format_status(st: dict) -> str:
    now = time.time()
    out = [st.get("verdict") or "(no verdict: an older daemon)", ""]
    out.append(f"gateway {st.get('gateway')}  firmware {st.get('firmware', '?')}  pid {st.get('pid', '?')}  "
               f"up {_age(st.get('uptime_s'))}  config {str(st.get('config_hash', ''))[:12]}")
    out += _release(st)
    out += _alarms(st, now)
    out += _sensors(st)
    out += _faults(st)
    out += _outputs(st)
    out += _uplink(st, now)
    out += _outbox(st)
    if st.get("watchdog_stale"):
        out.append(f"WATCHDOG: not fed for {', '.join(st['watchdog_stale'])} (systemd will restart the daemon)")
    return "\n".join(out)


def _alarms(st: dict, now: float) -> list[str]:
    alarms = st.get("alarms", [])
    if not alarms:
        return ["", "ALARMS: none"]
    out = ["", "ALARMS:"]
    for a in alarms:
        since = a.get("since_ts")
        flags = alarm_flags(a)
        out.append(f"  {a['id']:30} {str(a.get('level')).upper():6} since {clock(since) if since else '?'}"
                   f" ({duration(now - since) if since else '?'})  now {_value(a.get('value'), a.get('unit', ''), a.get('label'))}"
                   + (f"  {', '.join(flags)}" if flags else ""))
        if a.get("cause"):
            out.append(f"  {'':30} cause: {a['cause']}")
        if a.get("sounds"):
            out.append(f"  {'':30} sounds: {', '.join(a['sounds'])}")
    return out


def _sensors(st: dict) -> list[str]:
    out = ["", f"  {'SENSOR':22} {'POINT':14} {'VALUE':>16}  {'AGE':>5}  QUALITY"]
    for r in st.get("sensors", []):
        if r["quality"] == "good":
            v, age, q = _value(r.get("value"), r.get("unit", ""), r.get("label")), r.get("age_s"), "good"
        else:
            # a fault is never a value: show the last good one, and how old it is
            last = r.get("last_good")
            v = (f"last {_value(last, r.get('unit', ''), r.get('last_good_label'))}" if last is not None else "-")
            age, q = r.get("last_good_age_s"), r["quality"]
        out.append(f"  {r['sensor']:22} {r['point']:14} {v:>16}  {_age(age):>5}  {q}")
    return out


def _faults(st: dict) -> list[str]:
    faults = st.get("faults", [])
    if not faults:
        return []
    out = ["", "FAULTS:"]
    for g in faults:
        out.append(f"  bus {g['bus']}: {', '.join(g['sensors'])}: {g['hint']}")
        out.append(f"  {'':6}({g['detail']})")
    return out


def _outputs(st: dict) -> list[str]:
    outs = st.get("outputs", {})
    out = ["", "OUTPUTS:" if outs else "OUTPUTS: none"]
    for name, o in outs.items():
        state = "ON " if o.get("on") else "off"
        why = ""
        if o.get("why") == "test":
            why = f"siren test, {o.get('test_left_s', 0):g} s left"
        elif o.get("why") and o["why"].startswith("alarm"):
            pattern = f"{o.get('level')} {o.get('pattern')}" if o.get("pattern") else str(o.get("level"))
            why = f"{pattern} for {o['why']}"
            if o.get("left_s") is not None:
                why += f"; {duration(o['left_s'], exact=True)} left before max_on_s {o.get('max_on_s'):g} s"
        elif o.get("why") == "silenced":
            why = "silenced (the alarm is still active)"
        if o.get("kind") == "modbus":
            where = f"{o.get('bus')}/{o.get('unit')}"
        elif o.get("kind") == "voice" or o.get("pin") is None:
            where = o.get("kind") or "-"
        else:
            where = f"GPIO{o.get('pin', '?')}"
        out.append(f"  {name:22} {where:<7} {state}  {why}".rstrip())
    out += [f"  {n}: FAULT {o['problem']}" for n, o in outs.items() if o.get("problem")]  # voice, Modbus
    if st.get("drill"):
        d = st["drill"]
        out.append(f"DRILL {d['id']} running in {d['area'] or 'all'} ({d['level']}), "
                   f"ends in {d['ends_ts'] - time.time():.0f} s")
    return out


def _release(st: dict) -> list[str]:
    """release 0.2.0 (previous 0.1.0); last update: 0.3.0 rolled_back (health: ...)"""
    if "release" not in st:
        return []
    line = f"release {st['release']}" + (f" (previous {st['previous']})" if st.get("previous") else "")
    last = st.get("last_update")
    if last:
        line += f"; last update: {(last['version'] + ' ') if last.get('version') else ''}{last.get('outcome')}"
        if last.get("reason"):
            line += f" ({last['reason']}: {last.get('message') or ''})".replace(": )", ")")
    dl = (st.get("update_download") or {}).get("downloading")
    if dl:  # the platform's `update` (gateway/update/remote.py)
        line += (f"; downloading {dl.get('version') or 'an update'}: {dl['received'] // 2**20} of "
                 f"{dl['size'] // 2**20} MiB")
    return [line]


def _uplink(st: dict, now: float) -> list[str]:
    up = st.get("uplink") or {}
    ob = st.get("outbox") or {}
    if up.get("state") == "none":
        return ["", f"UPLINK: {up.get('note', 'none')}"]
    line = f"UPLINK: {up.get('state')} to {up.get('broker', '?')}"
    if up.get("connected_since") and up.get("state") == "online":
        line += f" since {_local(up['connected_since'])}"
    parts = [line]
    if ob.get("last_delivered_ts"):
        parts.append(f"last delivery {clock(ob['last_delivered_ts'])} ({duration(now - ob['last_delivered_ts'])} ago)")
    else:
        parts.append("nothing delivered yet")
    if up.get("last_error"):
        parts.append(f"last error: {up['last_error']}")
    if up.get("next_retry_in_s") is not None and up.get("state") != "online":
        parts.append(f"next retry in {up['next_retry_in_s']:g} s")
    return ["", "; ".join(parts)]


def _local(iso: str) -> str:
    """The uplink's UTC ISO time as the local clock the rest of the screen uses."""
    import datetime as dt

    try:
        return clock(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return iso


def _outbox(st: dict) -> list[str]:
    ob = st.get("outbox") or {}
    if ob.get("state") in ("unavailable", "error"):
        return [f"OUTBOX: {ob.get('state').upper()}, events are not being kept"
                + (f": {ob['last_error']}" if ob.get("last_error") else "")]
    depth = ob.get("depth") or {}
    oldest = ob.get("oldest_pending_age_s_by_class") or {}
    classes = ", ".join(f"{name.replace('_', '/')} {n}" + (f" (oldest {_age(oldest.get(name))})" if n and name != "alarm" and oldest.get(name) is not None else "")
                        for name, n in depth.items())
    line = f"OUTBOX: {ob.get('pending', '-')} undelivered: {classes or '-'}"
    if ob.get("oldest_alarm_age_s") is not None:
        line += f"; OLDEST UNDELIVERED ALARM {_age(ob['oldest_alarm_age_s'])}"
    if ob.get("write_errors"):
        line += f"; {ob['write_errors']} write errors, last: {ob.get('last_error')}"
    return [line]
