"""The health gate's question, answered by the running daemon: `status()["health"]`.

Healthy is what Daemon.healthy() means (the config push's gate uses the same): every bus port open and
its loop beating, the safety loop beating, the uplink online when the config has one. Here each
unmet condition is also said in words, for the rollback's reason."""

from __future__ import annotations

import time


def health(d, safety_allowance_s: float) -> dict:
    problems = []
    if not d.started or d.stopping or d.acquisition is None or d.safety is None:
        problems.append("the daemon is not fully started")
        return {"healthy": False, "problems": problems}
    now = time.monotonic()
    for lp in d.acquisition.loops:
        name = lp.bus.name
        if lp.port_error is not None:
            problems.append(f"bus {name}: port not open ({lp.port_error})")
        elif now - lp.heartbeat > lp.allowance_s:
            problems.append(f"bus {name}: not polled for {now - lp.heartbeat:.0f} s")
    if not d.safety.alive(safety_allowance_s):
        problems.append("the safety loop is not beating")
    if d.cfg.uplink is not None:
        state = d.uplink.status().get("state") if d.uplink is not None else "absent"
        if state != "online":
            problems.append(f"uplink {d.cfg.uplink.host}:{d.cfg.uplink.port} is {state}, not online")
    return {"healthy": not problems, "problems": problems}


def release_status(data_dir: str) -> dict:
    """What `gateway status` shows of releases: this one, the one before, the last update's outcome."""
    import sys

    from gateway import __version__

    from . import journal as J

    try:
        st = J.state(J.Journal(f"{data_dir}/update/journal").entries())
    except OSError:
        st = {"last": None, "previous": None, "trial": None}
    last = st["last"]
    return {"release": __version__, "release_dir": sys.prefix, "previous": st["previous"],
            "last_update": None if last is None else {
                "update": last["update"], "version": last["version"], "from": last["from"],
                "outcome": last["outcome"] or f"in progress ({last['phase']})", "reason": last["reason"],
                "message": last["message"], "at": last["at"], "by": last["by"]}}
