"""Profiles as data: the shipped ones, the technician's own (a directory, a file, a path),
and every check on a profile file reported against that file's own lines."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_config
from gateway.config.profiles import SHIPPED_PROFILES

BASE = '''\
[gateway]
id = "gw-1"
{gateway_extra}

[buses.rs485]
type = "rtu"
port = "/dev/ttyAMA0"

[buses.uart]
type = "serial"
port = "/dev/ttyUSB0"

[[sensors]]
name = "probe"
bus = "{bus}"
{unit}profile = "{profile}"
'''

GOOD_POINT = '''\
[[points]]
name = "value"
register = 0
'''


def config(tmp_path, profile: str, gateway_extra: str = "", bus: str = "rs485"):
    unit = "unit = 1\n" if bus == "rs485" else ""
    path = tmp_path / "gateway.toml"
    path.write_text(BASE.format(gateway_extra=gateway_extra, bus=bus, unit=unit, profile=profile))
    return path


def write_profile(folder, name: str, body: str):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(body)
    return path


def problems_of(path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    return [str(p) for p in err.value.problems]


# -- the shipped profiles ----------------------------------------------------------------
@pytest.mark.parametrize("name, kind, points", [
    ("water-level-rs485", "modbus", {"level": "cm"}),
    ("hydrant-pressure-rs485", "modbus", {"pressure": "MPa"}),
    ("smoke-rs485", "modbus", {"status": "", "faults": "", "concentration": "dB/m"}),
    ("a02yyuw-ultrasonic", "serial", {"distance": "mm"}),
])
def test_shipped_profiles_load_with_their_points(tmp_path, name, kind, points):
    cfg = load_config(str(config(tmp_path, name, bus="rs485" if kind == "modbus" else "uart")))
    profile = cfg.sensors["probe"].profile
    assert profile.kind == kind
    assert profile.source == str(SHIPPED_PROFILES / f"{name}.toml")
    assert {p.name: p.unit for p in profile.points} == points


def test_water_level_profile_reads_the_qdy30a_registers(tmp_path):
    level = load_config(str(config(tmp_path, "water-level-rs485"))).sensors["probe"].profile.points[0]
    assert (level.register, level.type, level.decimals_register, level.unit_register) == (4, "i16", 3, 2)
    assert level.unit_codes[1] == "cm" and level.range == (-10.0, 1000.0)


def test_smoke_profile_bits_and_states(tmp_path):
    status, faults, _ = load_config(str(config(tmp_path, "smoke-rs485"))).sensors["probe"].profile.points
    assert status.states == {0: "normal", 1: "alarm", 2: "fault", 3: "test", 4: "silenced"}
    assert faults.bits == {"chamber_dirty": 0, "low_battery": 1, "tamper": 2}


# -- the technician's own profiles -------------------------------------------------------
def test_a_profiles_directory_overrides_a_shipped_profile(tmp_path):
    mine = write_profile(tmp_path / "my-profiles", "water-level-rs485",
                         'name = "water-level-rs485"\nkind = "modbus"\n[[points]]\nname = "depth"\n'
                         'register = 0x0010\nunit = "m"\n')
    cfg = load_config(str(config(tmp_path, "water-level-rs485", 'profiles = ["my-profiles"]')))
    profile = cfg.sensors["probe"].profile
    assert profile.source == str(mine)
    assert [(p.name, p.register, p.unit) for p in profile.points] == [("depth", 16, "m")]


def test_shipped_profiles_remain_reachable_next_to_a_directory(tmp_path):
    (tmp_path / "my-profiles").mkdir()
    cfg = load_config(str(config(tmp_path, "smoke-rs485", 'profiles = ["my-profiles"]')))
    assert cfg.sensors["probe"].profile.source == str(SHIPPED_PROFILES / "smoke-rs485.toml")


def test_a_listed_profile_file_is_found_by_its_name(tmp_path):
    write_profile(tmp_path / "vendor", "acme-v2", 'name = "acme-level"\nkind = "modbus"\n' + GOOD_POINT)
    cfg = load_config(str(config(tmp_path, "acme-level", 'profiles = ["vendor/acme-v2.toml"]')))
    assert cfg.sensors["probe"].profile.name == "acme-level"


def test_a_profile_path_is_accepted_directly(tmp_path):
    write_profile(tmp_path, "custom", 'name = "custom"\nkind = "modbus"\n' + GOOD_POINT)
    cfg = load_config(str(config(tmp_path, "./custom.toml")))
    assert cfg.sensors["probe"].profile.source == str(tmp_path / "custom.toml")


def test_a_missing_profile_path_or_entry(tmp_path):
    assert problems_of(config(tmp_path, "./nope.toml")) == [
        f"{tmp_path}/gateway.toml:17: [sensors #1] profile: profile file not found: {tmp_path}/nope.toml"]
    (tmp_path / "mine").mkdir()
    assert problems_of(config(tmp_path, "acme", 'profiles = ["mine", "gone"]')) == [
        f"{tmp_path}/gateway.toml:3: [gateway] profiles: no such file or directory: {tmp_path}/gone",
        f"{tmp_path}/gateway.toml:17: [sensors #1] profile: unknown profile 'acme'; profiles are: "
        f"a02yyuw-ultrasonic, hydrant-pressure-rs485, manual-call-point, pressure-switch-contact, relay-di-8ch, "
        f"rs485-sound-light-alarm, smoke-rs485, water-immersion-contact, water-level-rs485 "
        f"(from {tmp_path}/mine, {SHIPPED_PROFILES})"]


def test_a_profile_in_a_directory_must_carry_its_file_name(tmp_path):
    path = write_profile(tmp_path / "p", "acme", 'name = "acme-v1"\nkind = "modbus"\n' + GOOD_POINT)
    assert problems_of(config(tmp_path, "acme", 'profiles = ["p"]')) == [
        f"{path}:1: [-] name: is 'acme-v1' but the file is acme.toml; a profile in a directory "
        "is found by its file name, so name it 'acme'"]


def test_a_broken_profile_is_reported_once_for_two_sensors(tmp_path):
    path = write_profile(tmp_path / "p", "acme", 'name = "acme"\nkind = "modbus"\n[[points]]\nname = "v"\n')
    text = config(tmp_path, "acme", 'profiles = ["p"]').read_text()
    text += '\n[[sensors]]\nname = "probe-2"\nbus = "rs485"\nunit = 2\nprofile = "acme"\n'
    (tmp_path / "gateway.toml").write_text(text)
    assert problems_of(tmp_path / "gateway.toml") == [f"{path}:3: [points #1] register: is required"]


# -- checks on a profile file, each with the profile's own FILE:LINE ----------------------
MODBUS_CASES = [
    ('units = "cm"\n', 4, "[points #1] units: unknown key 'units'; did you mean 'unit'?"),
    ('colour = "red"\n', 4, "[points #1] colour: unknown key 'colour'; allowed: name, unit, register, function, "
                            "type, word_order, scale, offset, decimals_register, unit_register, unit_codes, range, "
                            "bits, states, field"),
    ('registr = 1\n', 4, "[points #1] registr: unknown key 'registr'; did you mean 'register'?"),
    ('type = "int16"\n', 4, "[points #1] type: must be one of u16, i16, u32, i32, f32, bits, bit (got \"int16\"); did you mean 'i16'?"),
    ('type = "u32"\nword_order = "BADC"\n', 5, "[points #1] word_order: must be one of ABCD, CDAB (got \"BADC\")"),
    ('function = 6\n', 4, "[points #1] function: must be one of 1, 2, 3, 4 (got 6)"),
    ('range = [10, 0]\n', 4, "[points #1] range: low must be below high (got [10, 0])"),
    ('range = [0]\n', 4, "[points #1] range: must be [low, high], two numbers (got a list)"),
    ('scale = 0\n', 4, "[points #1] scale: must not be 0"),
    ('type = "bits"\nbits = { tamper = 16 }\n', 5, "[points #1] bits.tamper: must be a bit number between 0 and 15 (got 16)"),
    ('bits = { tamper = 2 }\n', 4, "[points #1] bits: only for type = \"bits\""),
    ('states = { one = "alarm" }\n', 4, "[points #1] states.one: the code must be a whole number"),
    ('unit_codes = { 3 = 3 }\n', 4, "[points #1] unit_codes.3: must be a string (got 3)"),
    ('field = "distance"\n', 4, "[points #1] field: only for kind = \"serial\""),
    ('decimals_register = 200\n', 3,
     "[points #1] register: register 0 with its decimals_register/unit_register spans 201 registers; "
     "one Modbus read is at most 125"),
]


@pytest.mark.parametrize("extra, line, expected", MODBUS_CASES)
def test_modbus_profile_checks(tmp_path, extra, line, expected):
    path = write_profile(tmp_path / "p", "acme", 'name = "acme"\nkind = "modbus"\n' + GOOD_POINT + extra)
    # point keys start at line 4: name (4), register (5), then `extra`
    assert problems_of(config(tmp_path, "acme", 'profiles = ["p"]')) == [f"{path}:{line + 2}: {expected}"]


def test_register_bounds(tmp_path):
    body = ('name = "acme"\nkind = "modbus"\n'
            '[[points]]\nname = "a"\nregister = 70000\n'
            '[[points]]\nname = "b"\nregister = 65535\ntype = "f32"\n'
            '[[points]]\nname = "a"\nregister = 1\n')
    path = write_profile(tmp_path / "p", "acme", body)
    assert problems_of(config(tmp_path, "acme", 'profiles = ["p"]')) == [
        f"{path}:5: [points #1] register: must be between 0 and 65535 (got 70000)",
        f"{path}:8: [points #2] register: a f32 point needs 2 registers; 65535 + 2 runs past 65535",
        f"{path}:11: [points #3] name: duplicate point name 'a' (first at line 4)",
    ]


def test_profile_top_level_checks(tmp_path):
    path = write_profile(tmp_path / "p", "acme", 'name = "acme"\nkind = "rs485"\nframe = "line"\nvendor = "x"\n')
    assert problems_of(config(tmp_path, "acme", 'profiles = ["p"]')) == [
        f"{path}:1: [-] points: is required: at least one [[points]] table",
        f"{path}:2: [-] kind: must be one of modbus, serial (got \"rs485\")",
        f"{path}:4: [-] vendor: unknown key 'vendor'; allowed: name, kind, description, frame, pattern, points",
    ]


def test_serial_profile_checks(tmp_path):
    path = write_profile(tmp_path / "p", "tty", 'name = "tty"\nkind = "serial"\nframe = "line"\n'
                         'pattern = "^L=(?P<level>[0-9.]+"\n'
                         '[[points]]\nname = "level"\nregister = 4\n')
    assert problems_of(config(tmp_path, "tty", 'profiles = ["p"]', bus="uart")) == [
        f"{path}:4: [-] pattern: not a valid regular expression: missing ), unterminated subpattern at position 3",
        f"{path}:5: [points #1] field: is required",
        f"{path}:7: [points #1] register: only for kind = \"modbus\"",
    ]


def test_serial_line_profile_fields_name_pattern_groups(tmp_path):
    path = write_profile(tmp_path / "p", "tty", 'name = "tty"\nkind = "serial"\nframe = "line"\n'
                         'pattern = "^L=(?P<level>[0-9.]+)$"\n'
                         '[[points]]\nname = "level"\nfield = "lvl"\n')
    assert problems_of(config(tmp_path, "tty", 'profiles = ["p"]', bus="uart")) == [
        f"{path}:7: [points #1] field: the profile's pattern has no group 'lvl' (groups: level)"]
    path.write_text(path.read_text().replace('"lvl"', '"level"'))
    cfg = load_config(str(tmp_path / "gateway.toml"))
    assert cfg.sensors["probe"].profile.pattern == "^L=(?P<level>[0-9.]+)$"


def test_profile_syntax_error_names_the_profile_file(tmp_path):
    path = write_profile(tmp_path / "p", "acme", 'name = "acme"\nkind = modbus\n')
    assert problems_of(config(tmp_path, "acme", 'profiles = ["p"]')) == [
        f"{path}:2: [-] kind: invalid TOML: invalid value (column 8)"]
