"""Decision transitions -> outbox events (the `alarm` and `fault` payloads of the contract)."""

from __future__ import annotations

from gateway.decide.transition import FAULT, RECOVERED, Transition


def event_of(t: Transition) -> tuple[str, dict]:
    """(type, fields) for the outbox. A point's fault or recovery is a `fault` event, never an alarm."""
    if t.kind in (FAULT, RECOVERED):
        fields = {"sensor": t.sensor, "point": t.point, "state": t.kind, "quality": t.state,
                  "reason": t.detail or ""}
        if t.alarm_id:
            fields["alarm"] = t.alarm_id
        return "fault", fields
    fields = {"alarm": t.alarm_id, "rule": t.rule, "sensor": t.sensor, "point": t.point,
              "transition": t.kind, "level": t.level, "previous_level": t.previous,
              "value": t.value, "unit": t.unit, "state": t.state}
    if t.by:
        fields["by"] = t.by
    if t.cause:
        fields["cause"] = t.cause
    if t.rule == "drill":  # gateway/act/drill.py: the drill's own alarm, never a sensor's
        fields["drill"] = True
    return "alarm", fields
