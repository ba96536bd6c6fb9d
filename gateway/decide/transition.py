"""What the decision side tells everybody else: one Transition per change of an alarm
(or of a point's health). Frozen and small: it crosses threads into the outbox and logs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from gateway.config.model import LEVELS

RAISED = "raised"
ESCALATED = "escalated"
DEESCALATED = "deescalated"
SILENCED = "silenced"
ACKNOWLEDGED = "acknowledged"
CLEARED = "cleared"
FAULT = "fault"  # the point cannot be seen (quality fault or stale): not an alarm
RECOVERED = "recovered"
KINDS = (RAISED, ESCALATED, DEESCALATED, SILENCED, ACKNOWLEDGED, CLEARED, FAULT, RECOVERED)

# Ranks of the four-colour scale; 0 is "no alarm" so comparisons need no special case.
RANK = {None: 0, **{name: i + 1 for i, name in enumerate(LEVELS)}}
_BY_RANK = (None, *LEVELS)


def rank(level: str | None) -> int:
    return RANK[level]


def level_at(r: int) -> str | None:
    return _BY_RANK[r]


@dataclass(frozen=True, slots=True)
class Transition:
    """One change. `alarm_id` is "<sensor>.<point>#<n>" (n counts raises of that rule, kept
    across restarts) or None for a fault of a point with no active alarm. `state` is the
    alarm's state after the change (active, silenced, acknowledged, cleared) or, for
    fault/recovered, the point's quality."""

    alarm_id: str | None
    rule: str
    sensor: str
    point: str
    kind: str
    level: str | None
    previous: str | None
    value: float | int | None
    unit: str
    state: str
    mono: float
    ts: float
    by: str | None = None  # who silenced or acknowledged: "button:silence-button", "cli", "max_on_s", ...
    detail: str | None = None  # fault reason
    cause: str | None = None  # which condition of the rule put the alarm at this level (raise, escalate)

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """The log line's text."""
        head = f"alarm {self.alarm_id or self.rule} {self.kind}"
        if self.kind in (FAULT, RECOVERED):
            head = f"point {self.rule} {self.kind}" + (f" ({self.state}: {self.detail})" if self.detail else f" ({self.state})")
            return head + (f", alarm {self.alarm_id} is {self.level}" if self.alarm_id else "")
        lv = self.level if self.previous in (None, self.level) else f"{self.previous}->{self.level}"
        if self.kind == CLEARED:
            lv = f"none (was {self.previous})"
        val = "" if self.value is None else f" value={self.value:g}{(' ' + self.unit) if self.unit else ''}"
        by = f" by {self.by}" if self.by else ""
        cause = f" (rule {self.rule}: {self.cause})" if self.cause and self.kind in (RAISED, ESCALATED) else ""
        return f"{head} level={lv}{val} state={self.state}{by}{cause}"
