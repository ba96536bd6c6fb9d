"""The one-screen summary `gateway check` prints under "configuration is valid", so
the technician sees what the gateway understood, not just that it parsed."""

from __future__ import annotations

from gateway.config.model import LEVELS, Bus, Config, Rule
from .voice import areas_summary, output_where


def summary(cfg: Config) -> str:
    out = [f"gateway   {cfg.gateway.id}",
           f"config    {cfg.path} (sha256 {cfg.text_hash[:12]})",
           f"data_dir  {cfg.gateway.data_dir}"]
    out.append(f"buses ({len(cfg.buses)}), sensors ({len(cfg.sensors)}):")
    for bus in cfg.buses.values():
        out.append(f"  {bus.name:<14} {_bus(bus)}")
        for s in (s for s in cfg.sensors.values() if s.bus == bus.name):
            where = f"unit {s.unit:<3}" if s.unit is not None else f"BCM {s.pin:<4}" if s.pin is not None else "        "
            points = ", ".join(f"{p.name}" + (f" [{p.unit}]" if p.unit else "") for p in s.profile.points)
            out.append(f"    {s.name:<20} {where} every {s.poll_s:g} s  {s.profile.name}: {points}")
    out.append(f"rules ({len(cfg.rules)}):" if cfg.rules else "rules: none")
    for rule in cfg.rules:
        out.append(f"  {rule.name:<28} {_rule(rule)}")
    gpio = f"gpio {cfg.gpio.backend}" + (f", recording to {cfg.gpio.record}" if cfg.gpio.record else "")
    out.append(f"outputs ({gpio}):" if cfg.outputs else f"outputs: none ({gpio})")
    for o in cfg.outputs.values():
        patterns = ", ".join(f"{level} {o.pattern[level].name}" for level in LEVELS if level in o.pattern)
        low = "active-low" if o.active_low else "active-high"
        where = f"BCM {o.pin:<2} {low:<11}" if o.kind == "relay" else output_where(o)
        area = f" (area {o.area})" if o.area else ""
        out.append(f"  {o.name:<20} {where} {patterns}; off after {o.max_on_s:g} s{area}")
    if cfg.inputs:
        out.append("inputs:")
    for i in cfg.inputs.values():
        out.append(f"  {i.name:<20} BCM {i.pin:<2} {i.action}")
    out += areas_summary(cfg)
    out.append(f"uplink    {_uplink(cfg)}")
    if cfg.commands is not None:
        out.append(f"commands  {len(cfg.commands.platform_keys)} platform key(s)")
    if cfg.gb26875 is not None:
        g = cfg.gb26875
        out.append(f"gb26875   fire centre {g.host}:{g.port}, device {g.source} -> centre {g.destination}, "
                   f"confirm within {g.confirm_timeout_s:g} s, {g.resends} resends")
    if cfg.sl651 is not None:
        s = cfg.sl651
        out.append(f"sl651     flood office {s.host}:{s.port}, station {s.station} -> centre {s.centre}, "
                   f"water level from {s.sensor or 'the first water-level sensor'}")
    return "\n".join(out)


def _bus(bus: Bus) -> str:
    if bus.type == "gpio":
        return "gpio    dry contacts on BCM pins"
    if bus.type == "tcp":
        where = f"tcp     {bus.host}:{bus.port}"
    else:
        where = f"{bus.type:<7} {bus.port} {bus.baudrate} {bus.bytesize}{bus.parity}{bus.stopbits}"
    return f"{where}  timeout {bus.timeout_s:g} s, {bus.retries} retr{'y' if bus.retries == 1 else 'ies'}"


def _rule(rule: Rule) -> str:
    parts = []
    for word, table in (("above", rule.above), ("below", rule.below)):
        if table:
            parts.append(f"{word} " + " ".join(f"{lv} {table[lv]:g}" for lv in LEVELS if lv in table))
    if rule.equals:
        parts.append("equals " + " ".join(f"{lv} {'/'.join(map(str, rule.equals[lv]))}"
                                          for lv in LEVELS if lv in rule.equals))
    for word, rate in (("rise", rule.rise), ("drop", rule.drop)):
        if rate:
            parts.append(f"{word} {rate.amount:g} in {rate.within_s:g} s -> {rate.level}")
    if rule.hysteresis:
        parts.append(f"hysteresis {rule.hysteresis:g}")
    if rule.debounce_s:
        parts.append(f"debounce {rule.debounce_s:g} s")
    if rule.latch:
        parts.append("latched")
    parts.append("sounds " + ", ".join(rule.sound) if rule.sound else "no siren")
    return "; ".join(parts)


def _uplink(cfg: Config) -> str:
    up = cfg.uplink
    if up is None:
        return "offline (no [uplink]): events stay in the outbox"
    security = "TLS" + (" with client certificate" if up.tls and up.tls.cert else "") if up.tls else "plaintext"
    login = f", user {up.username}" if up.username else ""
    return (f"mqtt {up.host}:{up.port} (MQTT {up.protocol}, {security}{login}), "
            f"topics {up.topic_root}/{cfg.gateway.id}/..., replay {up.replay_per_s:g}/s")
