"""What `gateway status` shows, built from the running daemon's parts: one dict, the same for the
screen (gateway.cli.status_screen) and for `--json`.

It opens with the verdict a technician reads at 2 a.m. (`FIRE stair-1-smoke RED since 19:19:41
(3 min), latched, sirens ON`), then alarms with their cause, every sensor with its last good value,
faults grouped per bus with a hint in plain words, outputs with why they are on and how long they
may stay on, the uplink and the outbox. Only snapshots are read: nothing here waits on the safety
loop, and the outbox extras come from a read-only SQLite connection (a reader never waits for the
writer in WAL mode)."""

from __future__ import annotations

import logging
import os
import time

from gateway import __version__
from gateway.errors import OutboxError
from gateway.reading import GOOD
from gateway.update.health import health, release_status
from gateway.update.remote import download_status

log = logging.getLogger(__name__)

# A fault reason word (DeviceFault.reason, "port") -> what to check, in words.
HINTS = {
    "timeout": "no reply: check unit id, baud, A/B, termination",
    "port": "port cannot be opened: adapter unplugged, wrong port name, or the user is not in dialout",
    "crc": "corrupted frames: check termination and bias, a second master on the bus, the baud rate",
    "garbage": "corrupted frames: check termination and bias, a second master on the bus, the baud rate",
    "bytecount": "wrong-length replies: another device answers at this unit id, or a wrong profile",
    "short": "replies cut off: check termination and bias, the baud rate, a slow converter",
    "trailing": "bytes after the reply: two devices share this unit id, or echo from the adapter",
    "unit-id": "replies from another unit: two devices share a unit id, or a second master on the bus",
    "function": "replies that answer something else: a second master on the bus, or a gateway in between",
    "tid": "answers to earlier requests: a slow device behind a TCP gateway; raise its timeout",
    "mbap-length": "malformed Modbus TCP frames: the device or converter is not speaking Modbus TCP",
    "protocol": "malformed Modbus TCP frames: the device or converter is not speaking Modbus TCP",
    "frame": "no valid frame: wrong baud or wiring (TX/RX swapped?), or the sensor is not streaming",
    "exception": "the device refuses the request: the profile's register map is not this device's",
    "range": "impossible values: a broken probe, or a profile for another device family",
    "decode": "undecodable values: a profile for another device family",
}
# Profile name words -> the hazard word of the verdict line.
HAZARDS = (("smoke", "FIRE"), ("fire", "FIRE"), ("water", "FLOOD"), ("level", "FLOOD"),
           ("ultrasonic", "FLOOD"), ("hydrant", "HYDRANT"), ("pressure", "HYDRANT"))


def daemon_status(d) -> dict:
    """The whole status of Daemon `d` (gateway.service.daemon)."""
    from gateway.service.daemon import SAFETY_ALLOWANCE_S

    now, wall = time.monotonic(), time.time()
    cfg = d.cfg
    safety = d.safety.status() if d.safety else {"alarms": [], "outputs": {}}
    sensors = _sensors(d, now)
    st = {
        "gateway": cfg.gateway.id, "firmware": __version__, "config_hash": cfg.text_hash,
        "config": cfg.path, "pid": os.getpid(), "uptime_s": round(now - d.started_mono, 1),
        "alarms": [_alarm(a, cfg, wall) for a in safety.get("alarms", [])],
        "sensors": sensors,
        "faults": _faults(d, sensors),
        "outputs": {n: _output(o, now) for n, o in _with_workers(safety.get("outputs", {}), d.outlets).items()},
        "points": safety.get("points", {}),  # what the alarm book cannot see: fault or stale
        "bus_restarts": d.acquisition.restarts() if d.acquisition else {},
        "devices": {n: s.as_dict() for n, s in d.acquisition.stats().items()} if d.acquisition else {},
        "uplink": _uplink(d),
        "outbox": _outbox(d, wall),
        "uplinks": {name: u.status() for name, u in dict(getattr(d, "centres", {})).items()},
        "recorder": d.recorder.stats(), "alarm_state": d.state_file.stats(),
        "watchdog_stale": [n for n, _ in d.watchdog.stale()] if d.watchdog else [],
    }
    st["health"] = health(d, SAFETY_ALLOWANCE_S)  # the update's health gate asks this (gateway/update/launcher.py)
    st.update(release_status(cfg.gateway.data_dir))
    st["update_download"] = download_status(cfg.gateway.data_dir)  # the platform's `update` (remote.py)
    if safety.get("drill"):  # gateway/act/drill.py
        st["drill"] = safety["drill"]
    st["verdict"] = verdict(st, wall)
    return st


def _with_workers(outputs: dict, workers: dict) -> dict:
    """The safety loop's output status, with what each voice/Modbus worker knows now (a backend's
    problem appears on the worker's thread, after the loop published its copy)."""
    return {name: dict(st, **workers[name].status()) if name in workers else st for name, st in outputs.items()}


def _sensors(d, now: float) -> list[dict]:
    if d.acquisition is None:
        return []
    cfg = d.cfg
    good = d.acquisition.last_good()
    latest = {(r.sensor, r.point): r for r in d.acquisition.latest(now)}
    bus_of = {s.name: s.bus for s in cfg.sensors.values()}
    out = []
    for s in cfg.sensors.values():
        for p in s.profile.points:
            r, g = latest.get((s.name, p.name)), good.get((s.name, p.name))
            row = {"sensor": s.name, "point": p.name, "bus": bus_of[s.name], "unit": p.unit,
                   "quality": r.quality if r else "waiting", "value": r.value if r else None,
                   "age_s": round(now - r.mono, 1) if r else None,
                   "last_good": g.value if g else None,
                   "last_good_age_s": round(now - g.mono, 1) if g else None}
            if r is not None and r.fault:
                row["fault"] = r.fault
            if p.states:
                row["label"] = p.states.get(r.value) if r and isinstance(r.value, int) else None
                row["last_good_label"] = p.states.get(g.value) if g and isinstance(g.value, int) else None
            out.append(row)
    return out


def _alarm(a: dict, cfg, wall: float) -> dict:
    since = a.get("level_ts") or a.get("raised_ts")
    rule = next((r for r in cfg.rules if r.name == a.get("rule")), None)
    return dict(a, since_ts=since, for_s=round(wall - since, 1) if since else None,
                latched=bool(a.get("latch")) and not a.get("acknowledged"),
                sounds=list(rule.sound) if rule else [],
                hazard=hazard_of(cfg, a.get("sensor")))


def hazard_of(cfg, sensor: str | None) -> str:
    s = cfg.sensors.get(sensor) if sensor else None
    name = s.profile.name.lower() if s else ""
    return next((word for key, word in HAZARDS if key in name), "ALARM")


def _faults(d, sensors: list[dict]) -> list[dict]:
    """One entry per bus and reason: the devices that have it and what to check."""
    groups: dict[tuple[str, str], dict] = {}
    loops = d.acquisition.loops if d.acquisition else []
    for lp in loops:
        if lp.port_error:
            groups[(lp.bus.name, "port")] = {"bus": lp.bus.name, "reason": "port", "detail": lp.port_error,
                                             "sensors": [dev.name for dev in lp.devices], "hint": HINTS["port"]}
            continue
        for dev in lp.devices:
            if not dev.stats.consecutive or not dev.stats.last_error:
                continue
            reason = dev.stats.last_error.split(":", 1)[0].strip()
            g = groups.setdefault((lp.bus.name, reason), {
                "bus": lp.bus.name, "reason": reason, "detail": dev.stats.last_error, "sensors": [],
                "hint": HINTS.get(reason, "see gateway status --json (per-device counters)")})
            g["sensors"].append(dev.name)
    # A point that faults while its device answers (an out-of-range value): one entry per reason too.
    for row in sensors:
        if row["quality"] == "fault" and row.get("fault"):
            reason = row["fault"].split(":", 1)[0].strip()
            if any(row["sensor"] in g["sensors"] for g in groups.values() if g["bus"] == row["bus"]):
                continue
            g = groups.setdefault((row["bus"], reason), {
                "bus": row["bus"], "reason": reason, "detail": row["fault"], "sensors": [],
                "hint": HINTS.get(reason, "see gateway status --json (per-device counters)")})
            g["sensors"].append(f"{row['sensor']}.{row['point']}")
    return list(groups.values())


def _output(o: dict, now: float) -> dict:
    out = {k: v for k, v in o.items() if not k.endswith("_mono")}
    since, test_until, limit = o.get("sounding_since_mono"), o.get("test_until_mono"), o.get("max_on_s") or 0
    if o.get("testing"):
        out["why"] = "test"
        out["test_left_s"] = round(max(0.0, test_until - now), 1) if test_until else None
    elif o.get("alarms") and o.get("level"):
        out["why"] = "alarm " + ", ".join(o["alarms"])
    elif o.get("silenced"):
        out["why"] = "silenced"
    else:
        out["why"] = None
    out["on_for_s"] = round(now - since, 1) if since is not None else None
    out["left_s"] = round(max(0.0, limit - (now - since)), 1) if since is not None and limit > 0 else None
    return out


def _uplink(d) -> dict:
    if d.uplink is None:
        return {"state": "none", "note": "no [uplink] configured" if d.cfg.uplink is None else
                "not started: the outbox is unavailable"}
    return dict(d.uplink.status(), certificate=d.cert_expiry)


def _outbox(d, wall: float) -> dict:
    """The outbox's own figures (as of its last write: the daemon holds the file exclusively, and
    status never waits for a commit in progress), plus the ages a technician reads."""
    if d.outbox is None:
        return {"state": "unavailable"}
    try:
        st = dict(d.outbox.stats())
    except OutboxError as e:
        return {"state": "error", "last_error": str(e)}
    oldest = st.get("oldest_pending_age_s_by_class") or {}
    last = st.get("last_delivered_ts")
    st.update({"oldest_alarm_age_s": oldest.get("alarm"),
               "last_delivered_age_s": round(wall - last, 1) if last else None})
    return st

def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def duration(seconds: float | None, exact: bool = False) -> str:
    """3 min (whole minutes gone by: "since 19:19:41 (3 min)"); `exact`: 9 min 37 s (time left)."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        m, s = divmod(int(seconds), 60)
        return f"{m} min {s} s" if exact and s else f"{m} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def alarm_flags(a: dict) -> list[str]:
    """latched / silenced by X / acknowledged by Y, as words."""
    flags = ["latched"] if a.get("latched") else []
    if a.get("acknowledged"):
        flags.append(f"acknowledged by {a.get('acknowledged_by') or '?'}")
    elif a.get("silenced"):
        flags.append(f"silenced by {a.get('silenced_by') or '?'}")
    return flags


# -- the verdict -------------------------------------------------------------------------------
_RANK = {"blue": 1, "yellow": 2, "orange": 3, "red": 4}


def verdict(st: dict, wall: float) -> str:
    """One line: the worst alarm and what the sirens do, else the faults, else OK."""
    sounding = [n for n, o in st["outputs"].items() if o.get("on")]
    alarms = sorted(st["alarms"], key=lambda a: (-_RANK.get(a.get("level"), 0), a.get("since_ts") or 0))
    uplink = _uplink_words(st["uplink"])
    if alarms:
        a = alarms[0]
        flags = alarm_flags(a)
        if sounding:
            flags.append("sirens ON" if len(sounding) == len(st["outputs"]) else f"sirens ON ({', '.join(sounding)})")
        else:
            flags.append("sirens off")
        since = a.get("since_ts")
        line = (f"{a.get('hazard', 'ALARM')} {a.get('sensor')} {str(a.get('level')).upper()}"
                + (f" since {clock(since)} ({duration(wall - since)})" if since else "") + ", " + ", ".join(flags))
        if len(alarms) > 1:
            line += f"; {len(alarms) - 1} more alarm{'s' if len(alarms) > 2 else ''}"
        return line
    sensors = {r["sensor"] for r in st["sensors"]}
    bad = sorted({r["sensor"] for r in st["sensors"] if r["quality"] != GOOD})
    if st["faults"] or bad:
        words = "; ".join(f"bus {g['bus']}: {', '.join(g['sensors'])} {g['hint'].split(':')[0]}" for g in st["faults"])
        return (f"FAULT: {len(bad)} of {len(sensors)} sensors not good"
                + (f" ({words})" if words else f" ({', '.join(bad)})") + f", {uplink}"
                + (", sirens ON" if sounding else ""))
    extra = ", sirens ON (test)" if sounding else ""
    if st["outbox"].get("state") in ("unavailable", "error"):
        return f"OK: {len(sensors)} sensors good, {uplink}, but the OUTBOX IS UNAVAILABLE (events not kept){extra}"
    return f"OK: {len(sensors)} sensors good, {uplink}{extra}"


def _uplink_words(up: dict) -> str:
    state = up.get("state")
    if state == "none":
        return "no uplink configured" if "no [uplink]" in (up.get("note") or "") else "uplink not started"
    if state == "online":
        return "uplink online"
    err = f" ({up['last_error']})" if up.get("last_error") else ""
    return f"uplink {state}{err}"
