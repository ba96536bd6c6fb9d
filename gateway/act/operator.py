"""What people do to the sirens, once: silence, acknowledge, siren test, drill. The control socket
(gateway/control/handlers.py, the technician's CLI) and the platform's commands
(gateway/commands/handler.py) both call these, so the two cannot drift apart in what they accept
or report. Each waits for the safety loop's answer (one tick) at most `timeout` seconds."""

from __future__ import annotations

from gateway.errors import OutputError

TIMEOUT_S = 5.0  # the safety loop answers in one tick (50 ms); 5 s means it is stuck
TEST_MAX_S = 60.0


def silence(safety, alarm: str | None, by: str, timeout: float = TIMEOUT_S) -> list[str]:
    """Sirens off for `alarm` (None: every alarm); the alarms stay active. The ids silenced."""
    done = safety.silence(alarm, by=by).result(timeout)
    return [t.alarm_id for t in done if t.kind == "silenced"]


def acknowledge(safety, alarm: str, by: str, timeout: float = TIMEOUT_S) -> list[str]:
    """Acknowledge `alarm` ("all": every alarm). The ids acknowledged (or cleared by it)."""
    done = safety.acknowledge(None if alarm == "all" else alarm, by=by).result(timeout)
    return [t.alarm_id for t in done if t.kind in ("acknowledged", "cleared")]


def siren_test(safety, output: str, seconds, by: str, timeout: float = TIMEOUT_S) -> float:
    """Sound `output` for `seconds` (0 < seconds <= 60, and at most its max_on_s)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= TEST_MAX_S:
        raise OutputError(f"a siren test lasts 0 < seconds <= {TEST_MAX_S:g}, not {seconds!r}")
    safety.siren_test(output, float(seconds), by=by).result(timeout)
    return float(seconds)


def drill_start(safety, area: str | None, minutes, by: str, timeout: float = TIMEOUT_S) -> dict:
    """An emergency drill (gateway/act/drill.py) in `area` (None: every output) for `minutes`
    (None: the default). What is running: drill id, area, level, minutes."""
    from gateway.act.drill import DEFAULT_MINUTES

    minutes = DEFAULT_MINUTES if minutes is None else minutes
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)):
        raise OutputError(f"a drill's minutes must be a number, not {minutes!r}")
    done = safety.drill_start(area, float(minutes), by=by).result(timeout)
    t = next(t for t in done if t.kind == "raised")
    return {"drill": t.alarm_id, "area": t.point, "level": t.level, "minutes": minutes}


def drill_stop(safety, by: str, timeout: float = TIMEOUT_S) -> list[str]:
    """The running drill ended; the ids stopped (none: no drill was running)."""
    done = safety.drill_stop(by=by).result(timeout)
    return [t.alarm_id for t in done if t.kind == "cleared"]
