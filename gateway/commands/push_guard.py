"""What a pushed configuration may not do while alarms are active, and what it may do only when the
platform says so in the signed command.

    active_alarm_problems(old, new, alarms)   a push that would leave an active alarm unsounded
    access_changes(old, new)                  the [commands] keys / [uplink] target it changes

An active alarm keeps sounding across a push only if the new config still has its rule, still raises
its level (finite threshold, the current value still beyond it, a finite debounce), and every output
sounding it now still sounds it the same way: same pin and polarity, a pattern for that level, and a
max_on_s no shorter (a shorter one is a silence by the clock, 0.001 s is off). Silenced and
acknowledged alarms count too: an escalation sounds them again, through the new config.

Config-wide coherence (a rule unable to raise or clear, an output unable to sound a level its rules
raise) is the loader's job (gateway/config: `gateway check` refuses it, so a push refuses it in
ConfigPush.check); this module only looks at what is active right now."""

from __future__ import annotations

import math

ACCESS_SECTIONS = ("commands", "uplink")  # what the signed `changes_access` may name
# [uplink] keys that decide where and as whom the gateway connects; the rest (keepalive, replay pace,
# inflight window) is tuning, which cannot lock the platform out.
UPLINK_TARGET = ("host", "port", "topic_root", "client_id", "protocol", "username", "password", "tls")


def active_alarm_problems(old, new, alarms) -> list[str]:
    """Sentences, one per way `new` would leave an alarm of `alarms` (safety status dicts: id, rule,
    level, value) unsounded where `old` sounds it."""
    problems = []
    old_rules = {r.name: r for r in old.rules}
    new_rules = {r.name: r for r in new.rules}
    for alarm in alarms:
        aid, name, level = alarm.get("id"), alarm.get("rule"), alarm.get("level")
        rule, before = new_rules.get(name), old_rules.get(name)
        if rule is None:
            problems.append(f"active alarm {aid}: it removes rule {name}")
            continue
        problems += [f"active alarm {aid}: {p}" for p in _rule_problems(rule, level, alarm.get("value"))]
        if before is None:
            continue
        for out_name in _sounding(old, before, level):
            problems += [f"active alarm {aid}: output {out_name} {p}"
                         for p in _output_problems(old, new, rule, out_name, level)]
    return problems


def _rule_problems(rule, level: str, value) -> list[str]:
    out = []
    if not (isinstance(rule.debounce_s, (int, float)) and math.isfinite(rule.debounce_s)):
        out.append(f"rule {rule.name} debounce_s = {rule.debounce_s} would never let a reading count")
    raises = {*rule.above, *rule.below, *rule.equals,
              *(s.level for s in (rule.rise, rule.drop) if s is not None)}
    if level not in raises:
        out.append(f"rule {rule.name} no longer raises {level}")
        return out
    for side, table in (("above", rule.above), ("below", rule.below)):
        if level not in table:
            continue
        threshold = table[level]
        if not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
            out.append(f"rule {rule.name} {side}.{level} = {threshold} is not a finite number")
        elif _usable(value):
            # Where the new rule would let it clear: past the threshold by the hysteresis.
            clear = threshold - rule.hysteresis if side == "above" else threshold + rule.hysteresis
            if (side == "above" and value < clear) or (side == "below" and value > clear):
                out.append(f"rule {rule.name} {side}.{level} = {threshold:g} (hysteresis {rule.hysteresis:g}) "
                           f"would clear it at the current value {value:g}")
    return out


def _sounding(cfg, rule, level: str) -> list[str]:
    """The outputs of `cfg` that sound `rule`'s alarm at `level`."""
    return [o for o in rule.sound if o in cfg.outputs and level in cfg.outputs[o].pattern]


def _output_problems(old, new, rule, name: str, level: str) -> list[str]:
    if name not in new.outputs:
        return ["would be removed"]
    if name not in rule.sound:
        return [f"would no longer be in rule {rule.name}'s sound list"]
    was, now = old.outputs[name], new.outputs[name]
    out = []
    if level not in now.pattern:
        out.append(f"would have no pattern for {level}")
    if (now.pin, now.active_low) != (was.pin, was.active_low):
        out.append(f"would move from pin {was.pin} (active_low {was.active_low}) to pin {now.pin} "
                   f"(active_low {now.active_low})")
    if not (math.isfinite(now.max_on_s) and now.max_on_s >= was.max_on_s):
        out.append(f"max_on_s would shrink from {was.max_on_s:g} to {now.max_on_s:g} s")
    return out


def access_changes(old, new, same_keys) -> list[str]:
    """Which of ACCESS_SECTIONS `new` changes: "commands" when the pinned platform keys differ
    (`same_keys(old_paths, new_paths) -> bool` compares the keys themselves, not the file names),
    "uplink" when the broker, topic root or identity differ."""
    changed = []
    old_keys = old.commands.platform_keys if old.commands else ()
    new_keys = new.commands.platform_keys if new.commands else ()
    if not same_keys(old_keys, new_keys):
        changed.append("commands")
    if _target(old.uplink) != _target(new.uplink):
        changed.append("uplink")
    return changed


def _target(uplink):
    return None if uplink is None else tuple(getattr(uplink, k) for k in UPLINK_TARGET)


def _usable(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
