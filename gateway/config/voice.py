"""`[outputs.NAME]` of kind voice and modbus, `[areas.NAME]` (GB 50116-2013 §4.8 cadence),
and the spoken messages of a rule (`say`, `say_clip`, `say_clear`).

What a technician can get wrong here is checked here; what only the machine can tell
(espeak-ng missing, no ALSA device, a serial TTS module that does not answer) is not a
config error: a config error stops the daemon, and the relays must sound regardless. Those
are fault events and status lines at run time (gateway/act/voice.py)."""

from __future__ import annotations

import re
import string
import wave
from pathlib import Path

from gateway.config.model import LEVELS, VOICE_PATTERNS, Area, ModbusWrite, Output, Pattern, Sensor, VoiceSpec

from .paths import resolve
from .problems import suggest
from .schema import KEYS, MODBUS_BUSES, RANGES, VOICE_BACKENDS
from .tables import Table, named_tables, shown

PLACEHOLDERS = ("place", "level", "value", "unit")
# GB 50116-2013 §4.8: a sounder burst of 8-20 s; with broadcast, 1-2 messages of 10-30 s each.
BURST_S = RANGES["areas.NAME"]["burst_s"]
MESSAGES = RANGES["areas.NAME"]["messages"]
MESSAGE_S = RANGES["areas.NAME"]["message_s"]
_VOICE_KEYS = ("backend", "device", "voice", "speed", "port", "baudrate", "record")
_MODBUS_KEYS = ("bus", "unit", "coil", "register", "on_value", "off_value", "multiple_write", "timeout_s",
                "retry_s")
_RELAY_KEYS = ("pin", "active_low")
_ESPEAK_VOICE = re.compile(r"^[A-Za-z0-9_+-]+$")


def build_kind_output(t: Table, name: str, kind: str, buses: dict, base: Path) -> Output:
    """An output of kind voice or modbus (relays stay in outputs.py)."""
    own = _VOICE_KEYS if kind == "voice" else _MODBUS_KEYS
    for key in t.data:
        if key in _VOICE_KEYS + _MODBUS_KEYS + _RELAY_KEYS and key not in own:
            t.problem(key, f'not for kind = "{kind}"')
    area = _area_name(t)
    max_on_s = float(t.number("max_on_s", 600.0, within=RANGES["outputs.NAME"]["max_on_s"]))
    if kind == "voice":
        pattern = _voice_patterns(t)
        return Output(name=name, pin=None, pattern=pattern, max_on_s=max_on_s, kind=kind, area=area,
                      voice=_voice_spec(t, base))
    from .outputs import _patterns

    return Output(name=name, pin=None, pattern=_patterns(t), max_on_s=max_on_s, kind=kind, area=area,
                  modbus=_modbus_spec(t, buses))


def _area_name(t: Table) -> str | None:
    area = t.text("area")
    if area is not None and not re.match(r"^[A-Za-z0-9._-]+$", area):
        t.problem("area", f"may hold only letters, digits, '.', '_' and '-' (got {shown(area)})")
        return None
    return area


def _voice_patterns(t: Table) -> dict[str, Pattern]:
    names = ", ".join(VOICE_PATTERNS)
    if "pattern" not in t:
        t.problem("pattern", 'is required: which levels speak, e.g. { orange = "repeat", red = "repeat" }')
        return {}
    sub = t.sub("pattern")
    if sub is None:
        return {}
    if not sub.data:
        sub.problem("", f"is empty: give a pattern for at least one level ({', '.join(LEVELS)})")
    patterns = {}
    for level, value in sub.data.items():
        if level not in LEVELS:
            sub.problem(level, f"unknown level '{level}'; levels are: {', '.join(LEVELS)}{suggest(level, LEVELS)}")
        elif value not in VOICE_PATTERNS:
            sub.problem(level, f"a voice output's pattern is one of {names} (got {shown(value)})"
                               + (suggest(value, VOICE_PATTERNS) if isinstance(value, str) else ""))
        else:
            patterns[level] = VOICE_PATTERNS[value]
    return patterns


def _voice_spec(t: Table, base: Path) -> VoiceSpec | None:
    backend = t.text("backend", required=True, choices=VOICE_BACKENDS)
    if backend is None:
        return None
    own = {"alsa": ("device", "voice", "speed"), "syn6288": ("port", "baudrate"), "sim": ("record",)}[backend]
    for key in ("device", "voice", "speed", "port", "baudrate", "record"):
        if key in t and key not in own:
            t.problem(key, f'not for backend = "{backend}"')
    voice = t.text("voice", "cmn")
    if voice and not _ESPEAK_VOICE.match(voice):
        t.problem("voice", f"must be an espeak-ng voice name such as cmn (got {shown(voice)})")
    record = t.text("record")
    port = t.text("port", required=backend == "syn6288")
    return VoiceSpec(backend=backend, device=t.text("device", "default") or "default", voice=voice or "cmn",
                     speed=t.integer("speed", 150, within=RANGES["outputs.NAME"]["speed"]), port=port,
                     baudrate=t.integer("baudrate", 9600, choices=(9600, 19200, 38400)),
                     record=record and resolve(base, record))


def _modbus_spec(t: Table, buses: dict) -> ModbusWrite | None:
    bus_name = t.text("bus", required=True)
    if bus_name is not None and bus_name not in buses:
        listed = f"buses are: {', '.join(buses)}" if buses else "no [buses.NAME] is configured"
        t.problem("bus", f"unknown bus '{bus_name}'; {listed}{suggest(bus_name, buses)}")
    bus = buses.get(bus_name)
    if bus is not None and bus.type not in MODBUS_BUSES:
        t.problem("bus", f"bus '{bus_name}' is type {bus.type}; a Modbus output needs an rtu or tcp bus")
    unit = t.integer("unit", required=True, within=RANGES["outputs.NAME"]["unit"])
    if ("coil" in t) == ("register" in t):
        t.problem("coil", "give exactly one of coil (FC05) or register (FC06/FC16)")
    coil = t.integer("coil", None, within=RANGES["outputs.NAME"]["coil"])
    register = t.integer("register", None, within=RANGES["outputs.NAME"]["register"])
    if coil is not None:
        for key in ("on_value", "off_value", "multiple_write"):
            if key in t:
                t.problem(key, "only for a register output (a coil is on or off)")
    on_value = t.integer("on_value", 1, within=RANGES["outputs.NAME"]["on_value"])
    off_value = t.integer("off_value", 0, within=RANGES["outputs.NAME"]["off_value"])
    if on_value == off_value:
        t.problem("on_value", f"must differ from off_value ({off_value}): ON would not be told from OFF")
    spec = ModbusWrite(bus=bus_name or "", unit=unit or 1, coil=coil, register=register, on_value=on_value,
                       off_value=off_value, multiple_write=t.flag("multiple_write", False),
                       timeout_s=float(t.number("timeout_s", 0.3, gt=0, le=10)),
                       retry_s=float(t.number("retry_s", 1.0, within=RANGES["outputs.NAME"]["retry_s"])))
    return spec if unit is not None and (coil is None) != (register is None) else None


def build_areas(top: Table, outputs: dict[str, Output]) -> dict[str, Area]:
    """Every area an output names: its `[areas.NAME]` table, or the defaults."""
    areas = {}
    named = {o.area for o in outputs.values() if o.area}
    for name, t in named_tables(top, "areas"):
        t.check_keys(KEYS["areas.NAME"])
        if name not in named:
            t.problem("", f"no output names area '{name}' (set area = \"{name}\" in its [outputs.NAME])"
                          + suggest(name, named))
        areas[name] = Area(name=name,
                           burst_s=float(t.number("burst_s", 10.0, ge=BURST_S[0], le=BURST_S[1])),
                           messages=t.integer("messages", 1, ge=MESSAGES[0], le=MESSAGES[1]),
                           message_s=float(t.number("message_s", 10.0, ge=MESSAGE_S[0], le=MESSAGE_S[1])))
    for name in sorted(named - set(areas)):
        areas[name] = Area(name=name)
    return areas


# -- a rule's messages ---------------------------------------------------------------------------
def say_fields(t: Table, sensor: Sensor | None, base: Path) -> dict:
    """`say`, `say_clip` and `say_clear` of a [[rules]] entry, for the Rule constructor."""
    from .rules import _levels

    place = (sensor.place or sensor.name) if sensor else ""
    say = {}
    sub = t.sub("say")
    if sub is not None:
        for level in _levels(sub):
            text = sub.text(level, required=True)
            if text and _template_ok(sub, level, text):
                say[level] = text.replace("{place}", place)
    clips = {}
    sub = t.sub("say_clip")
    if sub is not None:
        for level in _levels(sub):
            path = sub.text(level, required=True)
            if not path:
                continue
            path = resolve(base, path)
            problem = wav_problem(path)
            if problem:
                sub.problem(level, problem)
            elif level not in say:
                sub.problem(level, f"a clip replaces the message say.{level}, which is not given")
            clips[level] = path
    clear = t.text("say_clear")
    if clear is not None and not _template_ok(t, "say_clear", clear):
        clear = None
    return {"say": say, "say_clip": clips, "say_clear": clear and clear.replace("{place}", place)}


def _template_ok(t: Table, key: str, text: str) -> bool:
    if not text.strip():
        t.problem(key, "must not be empty")
        return False
    try:
        fields = [f for _, f, spec, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as e:
        t.problem(key, f"is not a valid message ({e}); write {{{{ and }}}} for a literal brace")
        return False
    for f in fields:
        if f not in PLACEHOLDERS:
            t.problem(key, f"unknown placeholder {{{f}}}; placeholders are: "
                           + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS) + suggest(f, PLACEHOLDERS))
            return False
    return True


def wav_problem(path: str) -> str | None:
    """Why `path` cannot be played as a clip, or None."""
    try:
        with wave.open(path, "rb") as w:
            if w.getnframes() == 0:
                return f"{path} holds no audio"
    except FileNotFoundError:
        return f"no such file: {path}"
    except (OSError, EOFError, wave.Error) as e:
        return f"{path} is not a PCM WAV file ({e})"
    return None


def check_voice_rules(top: Table, rules, outputs: dict[str, Output]) -> None:
    """A rule that sounds a voice output at a level must have something to say at that level,
    and `say` on a rule that sounds no voice output would never be heard."""
    raw = top.data.get("rules")
    for i, rule in enumerate(rules):
        voices = [outputs[n] for n in rule.sound if n in outputs and outputs[n].kind == "voice"]
        index = _rule_index(raw, rule)
        t = Table(top.report, raw[index], ("rules", index), f"rules #{index + 1}") if index is not None else None
        if t is None:
            continue
        if rule.say and not voices:
            t.problem("say", "the rule sounds no voice output (kind = \"voice\"): add one to sound, or drop say")
        for out in voices:
            missing = [lv for lv in out.pattern if lv in _reachable(rule) and lv not in rule.say]
            if missing:
                t.problem("say", f"voice output {out.name} speaks at {', '.join(missing)} but the rule says "
                                 f"nothing there: add say.{missing[0]} = \"...\"")


def _reachable(rule) -> set[str]:
    levels = set(rule.above) | set(rule.below) | set(rule.equals)
    for rate in (rule.rise, rule.drop):
        if rate:
            levels.add(rate.level)
    return levels


def _rule_index(raw, rule) -> int | None:
    if not isinstance(raw, list):
        return None
    for i, body in enumerate(raw):
        if isinstance(body, dict) and body.get("sensor") == rule.sensor and body.get("point") == rule.point:
            return i
    return None


__all__ = ["build_kind_output", "build_areas", "say_fields", "check_voice_rules", "wav_problem",
           "PLACEHOLDERS", "BURST_S", "MESSAGES", "MESSAGE_S"]


# -- `gateway check` ------------------------------------------------------------------------------
def output_where(o: Output) -> str:
    if o.kind == "modbus" and o.modbus:
        m = o.modbus
        what = f"coil {m.coil}" if m.coil is not None else f"register {m.register} = {m.on_value}/{m.off_value}"
        return f"modbus {m.bus} unit {m.unit} {what}"
    v = o.voice
    if v is None:
        return "voice"
    where = {"alsa": f"ALSA {v.device}, espeak-ng {v.voice}", "syn6288": f"SYN6288 on {v.port} at {v.baudrate}",
             "sim": "simulated"}[v.backend]
    return f"voice {where}"


def areas_summary(cfg) -> list[str]:
    out = []
    for a in cfg.areas.values():
        names = [o.name for o in cfg.outputs.values() if o.area == a.name]
        out.append(f"area {a.name}: siren {a.burst_s:g} s, then {a.messages} message(s) of {a.message_s:g} s "
                   f"(GB 50116-2013 §4.8): {', '.join(names)}")
    return out
