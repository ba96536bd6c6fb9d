"""What people do to the sirens, once: silence, acknowledge, siren test. The control socket
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
