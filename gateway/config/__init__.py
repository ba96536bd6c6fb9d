"""The gateway's configuration: one TOML file, read and checked in full before anything
starts. `load_config` returns a `Config` (gateway/config/model.py) or raises one
ConfigError listing every problem as `FILE:LINE: [section] key: message`."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from gateway.config.model import DEFAULT_CONFIG_PATH, Config
from gateway.errors import ConfigError

from .centres import build_gb26875, build_sl651
from .coherence import problems_of
from .field import build_buses, build_gateway, build_sensors
from .outputs import build_gpio, build_inputs, build_outputs
from .problems import Problem
from .profiles import SHIPPED_PROFILES, ProfileLibrary
from .rules import build_rules
from .schema import KEYS
from .source import read_toml
from .summary import summary
from .tables import Table
from .uplink import build_commands, build_outbox, build_uplink
from .contacts import check_contact_pins
from .voice import build_areas, check_voice_rules
from .updates import build_updates

__all__ = ["ConfigError", "Problem", "load_config", "problems_of", "resolve_config_path", "summary",
           "KEYS", "SHIPPED_PROFILES", "ENV_VAR"]

ENV_VAR = "GATEWAY_CONFIG"


def resolve_config_path(cli_path: str | None = None) -> str:
    """`-c FILE`, else $GATEWAY_CONFIG, else /etc/community-gateway/gateway.toml."""
    return cli_path or os.environ.get(ENV_VAR) or DEFAULT_CONFIG_PATH


def load_config(path: str) -> Config:
    """Read, validate and resolve the config file at `path` (profiles included).
    Raises ConfigError with every problem found, in file and line order."""
    problems: list[Problem] = []
    file = Path(path).expanduser()
    src = read_toml(file, problems)
    if src.data is None:
        raise ConfigError(problems)
    base = file.absolute().parent
    top = Table(src.report, src.data, (), "")
    top.check_keys(KEYS[""], what="section")

    gateway = build_gateway(top, base)
    library = ProfileLibrary([Path(p) for p in gateway.profiles if Path(p).exists()], problems)
    buses = build_buses(top)
    sensors, sensor_names = build_sensors(top, buses, library, base)
    gpio = build_gpio(top, base)
    pins: dict[int, str] = {}  # BCM pin -> "outputs.NAME", shared so a clash names both
    outputs = build_outputs(top, pins, {n: b for n, b in buses.items() if b}, base)
    inputs = build_inputs(top, pins)
    check_contact_pins(top, sensors, pins)  # gpio contacts: config/contacts.py
    # every output written, valid or not: a rule naming a broken one is not "unknown"
    written = src.data.get("outputs")
    rules = build_rules(top, sensors, sensor_names, list(written) if isinstance(written, dict) else [], base)
    areas = build_areas(top, outputs)  # voice and cadence: config/voice.py
    check_voice_rules(top, rules, outputs)
    uplink = build_uplink(top, base)
    outbox = build_outbox(top)
    commands = build_commands(top, base)
    gb26875 = build_gb26875(top)
    sl651 = build_sl651(top, sensor_names)
    updates = build_updates(top, base)

    if problems:
        # the config file first, then each profile, each in line order
        problems.sort(key=lambda p: (p.file != src.report.file, p.file, p.line))
        raise ConfigError(problems)
    config = Config(path=os.path.normpath(file.absolute()), gateway=gateway, buses=dict(buses), sensors=sensors,
                    gpio=gpio, outputs=outputs, inputs=inputs, rules=rules, uplink=uplink,
                    outbox=outbox, commands=commands, areas=areas, gb26875=gb26875, sl651=sl651, updates=updates,
                    text_hash=hashlib.sha256(src.raw).hexdigest())
    # valid key by key; now whether the whole can still raise, clear and sound every alarm
    incoherent = problems_of(config, src.report.lines, src.data, src.report.file)
    if incoherent:
        raise ConfigError(incoherent)
    return config
