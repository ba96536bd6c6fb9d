"""The config loader: the issue examples load exactly as written, and every mistake a
technician can make is reported as `FILE:LINE: [section] key: message`, all at once."""

from __future__ import annotations

import hashlib

import pytest

from gateway.config import ConfigError, Problem, load_config, resolve_config_path, summary
from gateway.config.model import DEFAULT_CONFIG_PATH, PATTERNS, RateSpec
from gateway.errors import GatewayError

# The acquisition issue's example, the safety issue's example and the outbox issue's
# [uplink], verbatim, plus a [commands] table whose key file the fixture creates.
ISSUE_EXAMPLE = '''\
[gateway]
id = "pd-zhangjiang-001"
data_dir = "./var"

[buses.rs485]
type = "rtu"                  # any pyserial port or URL: /dev/ttyAMA0, /dev/serial/by-id/..., a pty, socket://127.0.0.1:5021
port = "/dev/ttyAMA0"
baudrate = 9600

[buses.pumproom]
type = "tcp"
host = "127.0.0.1"
port = 5020

[buses.ultrasonic]
type = "serial"
port = "/dev/ttyUSB0"
baudrate = 9600

[[sensors]]
name = "garage-b2-water"
bus = "rs485"
unit = 1                      # Modbus unit id
profile = "water-level-rs485"
poll_s = 1.0

[[sensors]]
name = "hydrant-3"
bus = "pumproom"
unit = 2
profile = "hydrant-pressure-rs485"

[[sensors]]
name = "stair-2-smoke"
bus = "rs485"
unit = 5
profile = "smoke-rs485"

[[sensors]]
name = "pit-level"
bus = "ultrasonic"
profile = "a02yyuw-ultrasonic"

[gpio]
backend = "sim"               # "rpi" on a Pi (RPi.GPIO; rpi-lgpio provides the same module on a Pi 5)
record = "./var/pins.jsonl"   # sim only: one JSON line per pin change

[outputs.garage-siren]
pin = 17                      # BCM numbering
active_low = true
pattern = { orange = "pulse", red = "steady" }
max_on_s = 600

[inputs.silence-button]
pin = 27
action = "silence"

[[rules]]
sensor = "garage-b2-water"
point = "level"
above = { blue = 5, yellow = 15, orange = 25, red = 40 }   # cm
hysteresis = 2
debounce_s = 3
sound = ["garage-siren"]

[[rules]]
sensor = "hydrant-3"
point = "pressure"
below = { yellow = 0.14, red = 0.10 }                      # MPa
drop = { amount = 0.05, within_s = 5, level = "orange" }   # hydrant opened or broken

[[rules]]
sensor = "stair-2-smoke"
point = "status"
equals = { red = 1 }
latch = true
sound = ["garage-siren"]

[uplink]
host = "127.0.0.1"
port = 1883
topic_root = "city/v1"
client_id = "pd-zhangjiang-001"
# tls = { ca = "...", cert = "...", key = "..." }   username/password also supported
replay_per_s = 200

[commands]
platform_keys = ["keys/platform.pub"]
'''


@pytest.fixture
def site(tmp_path):
    """A config directory with the platform key file the example names."""
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "platform.pub").write_text("-----BEGIN PUBLIC KEY-----\n")
    return tmp_path


def write(site, text: str, name: str = "gateway.toml"):
    path = site / name
    path.write_text(text)
    return path


def line_of(text: str, fragment: str) -> int:
    """1-based line of the first line holding `fragment`: expected line numbers are
    derived from the text the test writes, so they cannot drift from it."""
    for n, line in enumerate(text.splitlines(), 1):
        if fragment in line:
            return n
    raise AssertionError(f"{fragment!r} not in the text")


def problems_of(path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    prefix = str(path.parent) + "/"
    return [str(p)[len(prefix):] if str(p).startswith(prefix) else str(p) for p in err.value.problems]


def edited_line(old: str, new: str) -> int:
    """The line, in the edited example, of the last line of `new` that `old` did not have."""
    before = ISSUE_EXAMPLE[:ISSUE_EXAMPLE.index(old)].count("\n")
    lines = new.split("\n")
    changed = [n for n, ln in enumerate(lines) if ln and ln not in old.split("\n")]
    return before + 1 + changed[-1]


def edit(old: str, new: str, text: str = ISSUE_EXAMPLE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# -- the valid examples ------------------------------------------------------------------
def test_issue_examples_load_exactly_as_written(site):
    path = write(site, ISSUE_EXAMPLE)
    cfg = load_config(str(path))

    assert cfg.path == str(path)
    assert cfg.text_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert cfg.gateway.id == "pd-zhangjiang-001"
    assert cfg.gateway.data_dir == str(site / "var")  # relative to the config file
    assert {n: (b.type, b.port) for n, b in cfg.buses.items()} == {
        "rs485": ("rtu", "/dev/ttyAMA0"), "pumproom": ("tcp", 5020), "ultrasonic": ("serial", "/dev/ttyUSB0")}
    assert cfg.buses["pumproom"].host == "127.0.0.1"
    assert cfg.buses["rs485"].timeout_s == 0.3 and cfg.buses["rs485"].retries == 1
    assert list(cfg.sensors) == ["garage-b2-water", "hydrant-3", "stair-2-smoke", "pit-level"]
    assert [(s.bus, s.unit, s.profile.name) for s in cfg.sensors.values()] == [
        ("rs485", 1, "water-level-rs485"), ("pumproom", 2, "hydrant-pressure-rs485"),
        ("rs485", 5, "smoke-rs485"), ("ultrasonic", None, "a02yyuw-ultrasonic")]
    assert cfg.gpio.backend == "sim" and cfg.gpio.record == str(site / "var" / "pins.jsonl")
    siren = cfg.outputs["garage-siren"]
    assert (siren.pin, siren.active_low, siren.max_on_s) == (17, True, 600.0)
    assert siren.pattern == {"orange": PATTERNS["pulse"], "red": PATTERNS["steady"]}
    assert (cfg.inputs["silence-button"].pin, cfg.inputs["silence-button"].action) == (27, "silence")
    water, hydrant, smoke = cfg.rules
    assert water.above == {"blue": 5, "yellow": 15, "orange": 25, "red": 40}
    assert (water.hysteresis, water.debounce_s, water.sound) == (2, 3, ("garage-siren",))
    assert hydrant.below == {"yellow": 0.14, "red": 0.10} and hydrant.sound == ()
    assert hydrant.drop == RateSpec(0.05, 5, "orange")
    assert smoke.equals == {"red": (1,)} and smoke.latch is True
    up = cfg.uplink
    assert (up.host, up.port, up.topic_root, up.client_id, up.replay_per_s) == (
        "127.0.0.1", 1883, "city/v1", "pd-zhangjiang-001", 200)
    assert up.protocol == "5" and up.tls is None
    assert cfg.commands.platform_keys == (str(site / "keys" / "platform.pub"),)


def test_only_gateway_id_is_required_and_defaults_apply(site):
    cfg = load_config(str(write(site, '[gateway]\nid = "gw-1"\n')))
    assert cfg.gateway.data_dir == "/var/lib/community-gateway"
    assert cfg.buses == {} and cfg.sensors == {} and cfg.rules == ()
    assert cfg.uplink is None and cfg.commands is None
    assert cfg.outbox.max_rows == 1_000_000 and cfg.gpio.backend == "sim"


def test_optional_keys_take_effect(site):
    text = ISSUE_EXAMPLE + '''
[outbox]
max_rows = 5000
max_mb = 64
telemetry_period_s = 30
deadband = 0.1
status_period_s = 120
'''
    text = edit('port = 1883', 'port = 8883\nprotocol = "3.1.1"\nusername = "gw"\npassword = "s3cret"\n'
                'tls = { ca = "keys/ca.pem", cert = "keys/gw.crt", key = "keys/gw.key" }', text)
    text = edit('max_on_s = 600', 'max_on_s = 600\n[outputs.strobe]\npin = 22\nactive_low = false\n'
                'pattern = { yellow = "slow-pulse", red = { on_s = 0.2, off_s = 0.3 } }', text)
    text = edit('poll_s = 1.0', 'poll_s = 1.0\ntimeout_s = 0.5\nretries = 2\nstale_after_s = 10', text)
    text = edit('debounce_s = 3', 'debounce_s = 3\nrise = { amount = 5, within_s = 600, level = "yellow" }', text)
    for name in ("ca.pem", "gw.crt", "gw.key"):
        (site / "keys" / name).write_text("x")
    (site / "keys" / "gw.key").chmod(0o600)  # a client key others can read is refused
    cfg = load_config(str(write(site, text)))
    assert (cfg.outbox.max_rows, cfg.outbox.max_mb, cfg.outbox.deadband) == (5000, 64.0, 0.1)
    assert cfg.uplink.tls.key == str(site / "keys" / "gw.key")
    assert (cfg.uplink.protocol, cfg.uplink.username) == ("3.1.1", "gw")
    assert cfg.outputs["strobe"].pattern["red"].on_s == 0.2
    assert cfg.outputs["strobe"].pattern["yellow"] is PATTERNS["slow-pulse"]
    water = cfg.sensors["garage-b2-water"]
    assert (water.timeout_s, water.retries, water.stale_after_s) == (0.5, 2, 10.0)
    assert cfg.rules[0].rise == RateSpec(5, 600, "yellow")


def test_summary_shows_what_the_gateway_understood(site):
    cfg = load_config(str(write(site, ISSUE_EXAMPLE)))
    text = summary(cfg)
    for expected in ("pd-zhangjiang-001", str(site / "var"), "rs485", "rtu", "/dev/ttyAMA0",
                     "127.0.0.1:5020", "garage-b2-water", "water-level-rs485: level [cm]",
                     "pit-level", "a02yyuw-ultrasonic: distance [mm]",
                     "garage-b2-water.level", "above blue 5 yellow 15 orange 25 red 40",
                     "drop 0.05 in 5 s -> orange", "latched", "garage-siren", "BCM 17",
                     "silence-button", "mqtt 127.0.0.1:1883"):
        assert expected in text, expected
    assert len(text.splitlines()) <= 24  # one screen

    no_uplink = ISSUE_EXAMPLE[:ISSUE_EXAMPLE.index("[uplink]")]
    offline = load_config(str(write(site, no_uplink, "offline.toml")))
    assert "offline (no [uplink])" in summary(offline)


def test_config_path_comes_from_flag_then_environment_then_default(monkeypatch):
    monkeypatch.setenv("GATEWAY_CONFIG", "/srv/env.toml")
    assert resolve_config_path("site.toml") == "site.toml"
    assert resolve_config_path(None) == "/srv/env.toml"
    monkeypatch.delenv("GATEWAY_CONFIG")
    assert resolve_config_path(None) == DEFAULT_CONFIG_PATH == "/etc/community-gateway/gateway.toml"


# -- the file itself ---------------------------------------------------------------------
def test_problem_prints_file_line_section_key_message():
    p = Problem("gw.toml", 7, "buses.rs485", "baudrate", "must be one of 9600")
    assert str(p) == "gw.toml:7: [buses.rs485] baudrate: must be one of 9600"
    assert str(Problem("gw.toml", 1, "", "", "x")) == "gw.toml:1: [-] -: x"


def test_config_error_is_the_gateway_error_family(site):
    path = write(site, '[gateway]\nid = "a b"\n')
    with pytest.raises(GatewayError) as err:
        load_config(str(path))
    assert isinstance(err.value, ConfigError) and isinstance(err.value, ValueError)
    assert str(err.value) == "\n".join(str(p) for p in err.value.problems)


def test_missing_file_is_a_problem_not_a_traceback(site):
    assert problems_of(site / "nope.toml") == [
        "nope.toml:0: [-] -: cannot read the file: No such file or directory"]


def test_toml_syntax_error_is_reported_with_its_line(site):
    text = edit('baudrate = 9600\n\n[buses.pumproom]', 'baudrate = 9600,\n\n[buses.pumproom]')
    assert problems_of(write(site, text)) == [
        f"gateway.toml:{line_of(text, 'baudrate = 9600,')}: [buses.rs485] baudrate: "
        "invalid TOML: expected newline or end of document after a statement (column 16)"]


def test_toml_duplicate_key_and_unclosed_array(site):
    text = '[gateway]\nid = "a"\nid = "b"\n'
    assert problems_of(write(site, text)) == [
        "gateway.toml:3: [gateway] id: invalid TOML: cannot overwrite a value (column 9)"]
    text = '[gateway]\nid = "a"\nprofiles = ["x",\n'
    assert problems_of(write(site, text)) == [
        "gateway.toml:3: [gateway] profiles: invalid TOML: invalid value (at the end of the file)"]


def test_not_utf8_is_reported(site):
    path = site / "gateway.toml"
    path.write_bytes(b'[gateway]\nid = "caf\xe9"\n')
    assert problems_of(path) == ["gateway.toml:2: [-] -: not UTF-8 text (save the file as UTF-8)"]


# -- unknown keys, at every level --------------------------------------------------------
@pytest.mark.parametrize("old, new, expected", [
    ('data_dir = "./var"', 'data_dri = "./var"',
     "[gateway] data_dri: unknown key 'data_dri'; did you mean 'data_dir'?"),
    ('baudrate = 9600\n\n[buses.pumproom]', 'bauds = 9600\n\n[buses.pumproom]',
     "[buses.rs485] bauds: unknown key 'bauds'; did you mean 'baudrate'?"),
    ('poll_s = 1.0', 'pol_s = 1.0', "[sensors #1] pol_s: unknown key 'pol_s'; did you mean 'poll_s'?"),
    ('level = "orange" }', 'lvl = "orange" }', "[rules #2] drop.lvl: unknown key 'lvl'; did you mean 'level'?"),
    ('latch = true', 'latched = true', "[rules #3] latched: unknown key 'latched'; did you mean 'latch'?"),
    ('max_on_s = 600', 'max_on = 600', "[outputs.garage-siren] max_on: unknown key 'max_on'; did you mean 'max_on_s'?"),
    ('action = "silence"', 'acton = "silence"', "[inputs.silence-button] acton: unknown key 'acton'; did you mean 'action'?"),
    ('replay_per_s = 200', 'replay_rate = 200',
     "[uplink] replay_rate: unknown key 'replay_rate'; did you mean 'replay_per_s'?"),
    ('[commands]', '[command]', "[-] command: unknown section 'command'; did you mean 'commands'?"),
    ('pin = 27', 'pin = 27\ncolour = "red"',
     "[inputs.silence-button] colour: unknown key 'colour'; allowed: pin, action, active_low, debounce_ms"),
])
def test_unknown_keys_get_did_you_mean(site, old, new, expected):
    text = edit(old, new)
    line = edited_line(old, new)
    problems = problems_of(write(site, text))
    assert problems[0] == f"gateway.toml:{line}: {expected}"
    # anything else (a required key now missing) is reported on the same line
    assert all(p.startswith(f"gateway.toml:{line}: ") for p in problems), problems


def test_unknown_keys_inside_inline_tables(site):
    text = edit('pattern = { orange = "pulse", red = "steady" }',
                'pattern = { orange = "pulse", red = { on_s = 1, of_s = 1 } }')
    text = edit('# tls = {', 'tls = { ca = "keys/platform.pub", certfile = "x" }\n# tls = {', text)
    line_pattern, line_tls = line_of(text, "of_s"), line_of(text, "certfile")
    assert problems_of(write(site, text)) == [
        f"gateway.toml:{line_pattern}: [outputs.garage-siren] pattern.red.of_s: unknown key 'of_s'; did you mean 'off_s'?",
        f"gateway.toml:{line_pattern}: [outputs.garage-siren] pattern.red.off_s: is required",
        f"gateway.toml:{line_tls}: [uplink] tls.certfile: unknown key 'certfile'; did you mean 'cert'?",
    ]


# -- each check, with its exact message and line -----------------------------------------
CASES = [
    # [gateway]
    ('[gateway]\nid = "pd-zhangjiang-001"', '[gateway]\nid = "pd/zhangjiang 001"',
     "[gateway] id: may hold only letters, digits, '.', '_' and '-' (it is used in MQTT topics; "
     'got "pd/zhangjiang 001")'),
    ('data_dir = "./var"', 'data_dir = 5', "[gateway] data_dir: must be a string (got 5)"),
    ('data_dir = "./var"', 'profiles = ["mine"]', "[gateway] profiles: no such file or directory: {site}/mine"),
    # buses
    ('type = "rtu" ', 'type = "rtuu" ', '[buses.rs485] type: must be one of rtu, tcp, serial, gpio (got "rtuu"); '
                                          "did you mean 'rtu'?"),
    ('baudrate = 9600\n\n[buses.pumproom]', 'baudrate = 9601\n\n[buses.pumproom]',
     "[buses.rs485] baudrate: must be one of 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400 (got 9601)"),
    ('port = "/dev/ttyAMA0"', 'port = "/dev/ttyAMA0"\nparity = "X"', '[buses.rs485] parity: must be one of N, E, O (got "X")'),
    ('port = "/dev/ttyAMA0"', 'port = "/dev/ttyAMA0"\ntimeout_s = 0', "[buses.rs485] timeout_s: must be greater than 0 and at most 10 (got 0)"),
    ('port = "/dev/ttyAMA0"', 'port = "/dev/ttyAMA0"\ntimeout_s = 10.5', "[buses.rs485] timeout_s: must be greater than 0 and at most 10 (got 10.5)"),
    ('port = "/dev/ttyAMA0"', 'port = "/dev/ttyAMA0"\nretries = 6', "[buses.rs485] retries: must be between 0 and 5 (got 6)"),
    ('port = "/dev/ttyAMA0"', 'port = "/dev/ttyAMA0"\nretries = true', "[buses.rs485] retries: must be a whole number (got true)"),
    ('port = "/dev/ttyAMA0"', 'port = "/dev/ttyAMA0"\nhost = "10.0.0.2"', "[buses.rs485] host: only for a tcp bus"),
    ('port = "/dev/ttyAMA0"', 'port = 502',
     '[buses.rs485] port: must be a device or pyserial URL string, e.g. "/dev/ttyAMA0" (got 502); a TCP port needs type = "tcp"'),
    ('port = 5020', 'port = "5020"', '[buses.pumproom] port: must be a whole number (got "5020")'),
    ('port = 5020', 'port = 70000', "[buses.pumproom] port: must be between 1 and 65535 (got 70000)"),
    ('host = "127.0.0.1"\nport = 5020', 'port = 5020',
     "[buses.pumproom] host: is required"),
    ('port = 5020', 'port = 5020\nbaudrate = 9600', "[buses.pumproom] baudrate: only for rtu and serial buses"),
    ('port = "/dev/ttyUSB0"\n', '', '[buses.ultrasonic] port: is required: a device or pyserial URL, e.g. "/dev/ttyAMA0"'),
    # sensors
    ('bus = "rs485"\nunit = 1', 'bus = "rs458"\nunit = 1',
     "[sensors #1] bus: unknown bus 'rs458'; buses are: rs485, pumproom, ultrasonic; did you mean 'rs485'?"),
    ('unit = 1 ', 'unit = 0 ', "[sensors #1] unit: must be between 1 and 247 (got 0)"),
    ('unit = 2', 'unit = 248', "[sensors #2] unit: must be between 1 and 247 (got 248)"),
    ('unit = 2\n', '', "[sensors #2] unit: is required on a tcp bus: the Modbus unit id, 1..247"),
    ('bus = "ultrasonic"', 'bus = "ultrasonic"\nunit = 3',
     "[sensors #4] unit: not allowed on a serial bus (a serial sensor has no Modbus unit id)"),
    ('unit = 5', 'unit = 1', "[sensors #3] unit: unit 1 on bus 'rs485' is already used by sensor 'garage-b2-water'"),
    ('poll_s = 1.0', 'poll_s = 0', "[sensors #1] poll_s: must be between 0.05 and 3600 (got 0)"),
    ('poll_s = 1.0', 'poll_s = "1s"', '[sensors #1] poll_s: must be a number (got "1s")'),
    ('profile = "smoke-rs485"', 'profile = "smoke"',
     "[sensors #3] profile: unknown profile 'smoke'; profiles are: a02yyuw-ultrasonic, hydrant-pressure-rs485, "
     "manual-call-point, pressure-switch-contact, relay-di-8ch, rs485-sound-light-alarm, smoke-rs485, "
     "water-immersion-contact, water-level-rs485 (from {shipped}); did you mean 'smoke-rs485'?"),
    ('profile = "a02yyuw-ultrasonic"', 'profile = "water-level-rs485"',
     "[sensors #4] profile: profile 'water-level-rs485' is kind modbus, but bus 'ultrasonic' (type serial) needs a serial profile"),
    ('profile = "smoke-rs485"', 'profile = "a02yyuw-ultrasonic"',
     "[sensors #3] profile: profile 'a02yyuw-ultrasonic' is kind serial, but bus 'rs485' (type rtu) needs a modbus profile"),
    # gpio, outputs, inputs
    ('backend = "sim" ', 'backend = "pigpio" ', '[gpio] backend: must be one of sim, rpi (got "pigpio")'),
    ('pin = 17 ', 'pin = 28 ', "[outputs.garage-siren] pin: must be a BCM GPIO number between 0 and 27 (got 28)"),
    ('pin = 27', 'pin = 17', "[inputs.silence-button] pin: pin 17 is used by both outputs.garage-siren and inputs.silence-button"),
    ('orange = "pulse", red', 'orange = "pulsed", red',
     "[outputs.garage-siren] pattern.orange: unknown pattern 'pulsed'; patterns are: steady, pulse, slow-pulse, "
     "fast-pulse, or { on_s = 1, off_s = 1 }; did you mean 'pulse'?"),
    ('orange = "pulse", red', 'amber = "pulse", red',
     "[outputs.garage-siren] pattern.amber: unknown level 'amber'; levels are: blue, yellow, orange, red"),
    ('pattern = { orange = "pulse", red = "steady" }\n', '',
     '[outputs.garage-siren] pattern: is required: which levels sound this output, e.g. { orange = "pulse", red = "steady" }'),
    ('max_on_s = 600', 'max_on_s = 0', "[outputs.garage-siren] max_on_s: must be between 1 and 86400 (got 0)"),
    ('active_low = true', 'active_low = "yes"', '[outputs.garage-siren] active_low: must be true or false (got "yes")'),
    ('action = "silence"', 'action = "mute"', '[inputs.silence-button] action: must be one of silence, ack (got "mute")'),
    # rules
    ('sensor = "hydrant-3"', 'sensor = "hydrant-4"',
     "[rules #2] sensor: unknown sensor 'hydrant-4'; sensors are: garage-b2-water, hydrant-3, stair-2-smoke, "
     "pit-level; did you mean 'hydrant-3'?"),
    ('point = "level"', 'point = "lvl"',
     "[rules #1] point: unknown point 'lvl' of sensor 'garage-b2-water' (profile water-level-rs485 has: level)"),
    ('sound = ["garage-siren"]\n\n[[rules]]', 'sound = ["garage-sirne"]\n\n[[rules]]',
     "[rules #1] sound: unknown output 'garage-sirne'; outputs are: garage-siren; did you mean 'garage-siren'?"),
    ('sound = ["garage-siren"]\n\n[[rules]]', 'sound = "garage-siren"\n\n[[rules]]',
     '[rules #1] sound: must be a list of strings, e.g. ["garage-siren"]'),
    ('yellow = 15, orange = 25', 'yellow = 15, orange = 12',
     "[rules #1] above.orange: above thresholds must increase with the level (blue < yellow < orange < red): "
     "orange = 12 is not above yellow = 15"),
    ('below = { yellow = 0.14, red = 0.10 }', 'below = { yellow = 0.10, red = 0.14 }',
     "[rules #2] below.red: below thresholds must decrease with the level (blue > yellow > orange > red): "
     "red = 0.14 is not below yellow = 0.1"),
    ('blue = 5, yellow', 'purple = 5, yellow',
     "[rules #1] above.purple: unknown level 'purple'; levels are: blue, yellow, orange, red"),
    ('red = 40 }', 'red = "40" }', '[rules #1] above.red: must be a number (got "40")'),
    ('hysteresis = 2', 'hysteresis = -1', "[rules #1] hysteresis: must be 0 or more (got -1)"),
    ('debounce_s = 3', 'debounce_s = -3', "[rules #1] debounce_s: must be between 0 and 3600 (got -3)"),
    ('amount = 0.05', 'amount = 0', "[rules #2] drop.amount: must be greater than 0 (got 0)"),
    ('within_s = 5, ', '', "[rules #2] drop.within_s: is required"),
    ('level = "orange" }', 'level = "amber" }', '[rules #2] drop.level: must be one of blue, yellow, orange, red (got "amber")'),
    ('equals = { red = 1 }', 'equals = { red = 1.5 }',
     "[rules #3] equals.red: must be a whole number or a list of whole numbers (got 1.5)"),
    ('equals = { red = 1 }', 'equals = { yellow = [1, 3], red = 1 }',
     "[rules #3] equals.red: code 1 is already listed for yellow"),
    ('equals = { red = 1 }\n', '', "[rules #3] -: has no condition: give above, below, equals, rise or drop"),
    ('latch = true', 'latch = 1', "[rules #3] latch: must be true or false (got 1)"),
    ('sensor = "stair-2-smoke"\npoint = "status"', 'sensor = "garage-b2-water"\npoint = "level"',
     "[rules #3] point: a rule for garage-b2-water.level already exists (line 59); put all its conditions in one rule"),
    # uplink, outbox, commands
    ('topic_root = "city/v1"', 'topic_root = "city/#"',
     "[uplink] topic_root: must not contain the MQTT wildcards '+' or '#' (got \"city/#\")"),
    ('topic_root = "city/v1"', 'topic_root = "/city/v1/"',
     "[uplink] topic_root: must not be empty or start or end with '/' (got \"/city/v1/\")"),
    ('port = 1883', 'port = 1883\nprotocol = 5', '[uplink] protocol: must be a string: "5" or "3.1.1" (got 5)'),
    ('port = 1883', 'port = 1883\nprotocol = "3.1"',
     '[uplink] protocol: must be one of 5, 3.1.1 (got "3.1"); did you mean \'3.1.1\'?'),
    ('port = 1883', 'port = 1883\npassword = "x"', "[uplink] password: needs username"),
    ('replay_per_s = 200', 'replay_per_s = 0', "[uplink] replay_per_s: must be between 1 and 100000 (got 0)"),
    ('# tls = {', 'tls = { ca = "ca.pem" }\n# tls = {', "[uplink] tls.ca: file not found: {site}/ca.pem"),
    ('# tls = {', 'tls = { cert = "keys/platform.pub" }\n# tls = {',
     "[uplink] tls.key: is required: a client certificate needs both cert and key"),
    ('platform_keys = ["keys/platform.pub"]', 'platform_keys = ["keys/platform.pub", "keys/old.pub"]',
     "[commands] platform_keys: file not found: {site}/keys/old.pub"),
    ('[commands]', '[outbox]\nmax_rows = 0\n[commands]', "[outbox] max_rows: must be greater than 0 (got 0)"),
    ('[commands]', '[outbox]\ndeadband = -0.1\n[commands]', "[outbox] deadband: must be between 0 and 10 (got -0.1)"),
]


@pytest.mark.parametrize("old, new, expected", CASES, ids=[c[2].split(":")[0] + " " + c[1][:20] for c in CASES])
def test_each_check_has_an_exact_message_and_line(site, old, new, expected):
    from gateway.config.profiles import SHIPPED_PROFILES

    text = edit(old, new)
    problems = problems_of(write(site, text))
    expected = expected.replace("{site}", str(site)).replace("{shipped}", str(SHIPPED_PROFILES))
    assert [p.split(": ", 1)[1] for p in problems] == [expected], problems
    # the problem sits on the edited line (a removed key: on its table's header, tested below)
    if any(ln and ln not in old.split("\n") for ln in new.split("\n")):
        assert problems[0].startswith(f"gateway.toml:{edited_line(old, new)}: "), problems


def test_missing_required_key_points_at_its_table(site):
    text = edit('unit = 2\n', '')
    header = line_of(text, 'name = "hydrant-3"') - 1
    assert problems_of(write(site, text)) == [
        f"gateway.toml:{header}: [sensors #2] unit: "
        "is required on a tcp bus: the Modbus unit id, 1..247"]
    assert problems_of(write(site, "[buses.x]\ntype = \"tcp\"\n")) == [
        "gateway.toml:1: [-] gateway: is required: a [gateway] table with id = \"...\"",
        "gateway.toml:1: [buses.x] host: is required",
        "gateway.toml:1: [buses.x] port: is required",
    ]


def test_record_is_only_for_the_sim_backend(site):
    text = edit('backend = "sim" ', 'backend = "rpi" ')
    assert problems_of(write(site, text)) == [
        f"gateway.toml:{line_of(text, 'record = ')}: [gpio] record: only for backend = \"sim\" "
        "(it records simulated pin changes)"]


def test_duplicate_sensor_name(site):
    old, new = 'name = "pit-level"', 'name = "stair-2-smoke"'
    text = edit(old, new)
    first = line_of(text, "stair-2-smoke")
    assert problems_of(write(site, text)) == [
        f"gateway.toml:{edited_line(old, new)}: [sensors #4] name: "
        f"duplicate sensor name 'stair-2-smoke' (first at line {first})"]


def test_a_pin_used_twice_names_both_users(site):
    text = edit('action = "silence"', 'action = "silence"\n\n[inputs.ack-button]\npin = 17\naction = "ack"')
    assert problems_of(write(site, text)) == [
        f"gateway.toml:{line_of(text, '[inputs.ack-button]') + 1}: "
        "[inputs.ack-button] pin: pin 17 is used by both outputs.garage-siren and inputs.ack-button"]


def test_every_problem_is_collected_at_once(site):
    text = ('[gateway]\n'                      # 1
            'id = "gw 1"\n'                    # 2
            'data_dri = "./var"\n'             # 3
            '[buses.a]\n'                      # 4
            'type = "rtu"\n'                   # 5
            'port = "/dev/ttyS0"\n'            # 6
            'baudrate = 1234\n'                # 7
            '[[sensors]]\n'                    # 8
            'name = "s"\n'                     # 9
            'bus = "b"\n'                      # 10
            'profile = "water-level-rs485"\n'  # 11
            '[outputs.siren]\n'                # 12
            'pin = 40\n'                       # 13
            'pattern = { red = "steady" }\n'   # 14
            '[[rules]]\n'                      # 15
            'sensor = "t"\n'                   # 16
            'point = "level"\n'                # 17
            'above = { red = 1, yellow = 2 }\n'  # 18
            '[uplink]\n'                       # 19
            'port = 1883\n')                   # 20
    assert problems_of(write(site, text)) == [
        "gateway.toml:2: [gateway] id: may hold only letters, digits, '.', '_' and '-' (it is used in MQTT topics; got \"gw 1\")",
        "gateway.toml:3: [gateway] data_dri: unknown key 'data_dri'; did you mean 'data_dir'?",
        "gateway.toml:7: [buses.a] baudrate: must be one of 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400 (got 1234)",
        "gateway.toml:10: [sensors #1] bus: unknown bus 'b'; buses are: a",
        "gateway.toml:13: [outputs.siren] pin: must be a BCM GPIO number between 0 and 27 (got 40)",
        "gateway.toml:16: [rules #1] sensor: unknown sensor 't'; sensors are: s",
        "gateway.toml:18: [rules #1] above.red: above thresholds must increase with the level "
        "(blue < yellow < orange < red): red = 1 is not above yellow = 2",
        "gateway.toml:19: [uplink] host: is required",
    ]
