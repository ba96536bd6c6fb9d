"""Generated configuration files through load_config, the validator behind `gateway check` and
config_push: random text, mutated lines of a valid file, and a valid file's tables with values
replaced by every TOML type, keys dropped and unknown keys added. The only failure allowed is a
ConfigError whose every problem is a located message (`FILE:LINE: ...`).

FUZZ_EXAMPLES sets the number of examples per test (default 200; `make fuzz` runs 10,000)."""

from __future__ import annotations

import json
import math
import os
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import ConfigError, load_config
from gateway.platform.keys import keygen
from test_commands import COMMANDS_TABLE, CONFIG

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BASE = CONFIG + COMMANDS_TABLE + '''
[uplink]
host = "127.0.0.1"
port = 1883
topic_root = "city/v1"
replay_per_s = 200

[outbox]
max_rows = 1000

[inputs.silence-button]
pin = 27
action = "silence"
'''
BASE_DATA = tomllib.loads(BASE)
KEYS = ["gateway", "id", "data_dir", "buses", "pumproom", "type", "host", "port", "sensors", "name", "bus",
        "unit", "profile", "poll_s", "gpio", "backend", "outputs", "pin", "active_low", "pattern", "max_on_s",
        "rules", "sensor", "point", "above", "below", "hysteresis", "sound", "latch", "debounce_s", "uplink",
        "commands", "platform_keys", "outbox", "inputs", "action", "red", "orange", "tls", "ca", "protocol"]

toml_scalars = (st.text(max_size=30) | st.integers() | st.floats() | st.booleans()
                | st.sampled_from(["rtu", "tcp", "sim", "garage-siren", "pumproom", "./keys/platform.pub", "", "5"]))
toml_values = st.recursive(toml_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=3),
                           max_leaves=8)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzcfg")
    (root / "keys").mkdir()
    keygen(str(root / "keys" / "platform"))
    load_config(write(root, BASE))  # the seed is valid: every failure below is the mutation's
    load_config(write(root, to_toml(BASE_DATA)))  # and so is the writer's rendering of it
    return root


def write(root, text: str) -> str:
    path = root / "gateway.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    return str(path)


def check(root, text: str) -> None:
    try:
        cfg = load_config(write(root, text))
    except ConfigError as e:
        assert e.problems, "a ConfigError lists its problems"
        for p in e.problems:
            message = str(p)
            assert message.strip() and "gateway.toml" in message, message
            assert "Traceback" not in message
    else:
        assert cfg.gateway.id  # a valid result is a whole Config


# -- a tiny TOML writer for the structured mutations -----------------------------------------------
def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v).replace("\x7f", "\\u007f")  # JSON escapes are TOML escapes, except DEL
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def to_toml(data: dict, prefix: str = "") -> str:
    lines, tables = [], []
    for k, v in data.items():
        key = json.dumps(k)
        if isinstance(v, dict):
            tables.append((f"{prefix}{key}", v, False))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            tables += [(f"{prefix}{key}", x, True) for x in v]
        else:
            lines.append(f"{key} = {toml_value(v)}")
    out = "\n".join(lines) + "\n"
    for name, table, array in tables:
        out += f"\n{'[[' if array else '['}{name}{']]' if array else ']'}\n" + to_toml(table, name + ".")
    return out


@st.composite
def mutated_data(draw):
    data = json.loads(json.dumps(BASE_DATA))
    for _ in range(draw(st.integers(1, 4))):
        parent = data
        while True:  # walk down to a random table
            children = [(k, v) for k, v in (parent.items() if isinstance(parent, dict) else enumerate(parent))
                        if isinstance(v, (dict, list)) and v]
            if not children or draw(st.booleans()):
                break
            parent = draw(st.sampled_from(children))[1]
        keys = list(parent) if isinstance(parent, dict) else list(range(len(parent)))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS) | st.text(min_size=1, max_size=10))] = draw(toml_values)
        elif keys and action == "delete":
            del parent[draw(st.sampled_from(keys))]
        elif keys:
            parent[draw(st.sampled_from(keys))] = draw(toml_values)
    return data


# -- the properties --------------------------------------------------------------------------------
@FUZZ
@given(text=st.text(max_size=400))
def test_random_text(site, text):
    check(site, text)


@FUZZ
@given(data=mutated_data())
def test_mutated_tables(site, data):
    check(site, to_toml(data))


@FUZZ
@given(ops=st.lists(st.tuples(st.sampled_from(["delete", "duplicate", "insert", "truncate"]),
                              st.integers(0, 200), st.text(max_size=40)), min_size=1, max_size=4))
def test_mutated_lines(site, ops):
    lines = BASE.splitlines()
    for op, i, text in ops:
        i %= len(lines) or 1
        if op == "delete" and lines:
            del lines[i]
        elif op == "duplicate" and lines:
            lines.insert(i, lines[i])
        elif op == "insert":
            lines.insert(i, text)
        elif lines:
            lines[i] = lines[i][: len(text)]
    check(site, "\n".join(lines) + "\n")


@FUZZ
@given(raw=st.binary(max_size=300))
def test_random_bytes(site, raw):
    (site / "gateway.toml").write_bytes(raw)
    try:
        load_config(str(site / "gateway.toml"))
    except ConfigError as e:
        assert all(str(p).strip() for p in e.problems)
