"""Issue 13's config: the voice, Modbus and area outputs, `say` messages, accepted exactly as
written (through `gateway check`, the technician's command) and every mistake a sentence with its line."""

from __future__ import annotations

import subprocess
import sys
import wave

import pytest

from gateway.config import ConfigError, load_config

BASE = '''\
[gateway]
id = "voice-test"
data_dir = "./var"

[buses.rs485]
type = "rtu"
port = "/dev/ttyAMA0"

[[sensors]]
name = "garage-b2-water"
bus = "rs485"
unit = 1
profile = "water-level-rs485"
'''

# verbatim from issue 13
ISSUE = '''\
[outputs.garage-voice]
kind = "voice"
backend = "alsa"
device = "default"
area = "garage"
pattern = { orange = "repeat", red = "repeat" }

[outputs.garage-siren]
pin = 17
area = "garage"
pattern = { orange = "pulse", red = "steady" }

[outputs.stair-sounder]
kind = "modbus"
bus = "rs485"
unit = 9
coil = 0
pattern = { red = "steady" }

[[rules]]
sensor = "garage-b2-water"
point = "level"
above = { blue = 5, yellow = 15, orange = 25, red = 40 }
sound = ["garage-siren", "garage-voice", "stair-sounder"]
say = { orange = "地下车库B2积水已达橙色预警，请尽快将车辆驶离。", red = "地下车库B2积水已达红色预警，请勿进入车库。" }
'''


def write(tmp_path, text):
    path = tmp_path / "gateway.toml"
    path.write_text(BASE + text, encoding="utf-8")
    return path


def problems(tmp_path, text) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(str(write(tmp_path, text)))
    return [str(p) for p in e.value.problems]


def test_the_issue_example_passes_gateway_check_as_written(tmp_path):
    path = write(tmp_path, ISSUE)
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "check", "-c", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    cfg = load_config(str(path))
    voice, siren, sounder = (cfg.outputs[n] for n in ("garage-voice", "garage-siren", "stair-sounder"))
    assert (voice.kind, voice.voice.backend, voice.voice.device, voice.voice.voice, voice.area) == \
        ("voice", "alsa", "default", "cmn", "garage")
    assert set(voice.pattern) == {"orange", "red"} and voice.pattern["red"].name == "repeat"
    assert (siren.kind, siren.pin, siren.area) == ("relay", 17, "garage")
    assert (sounder.kind, sounder.pin, sounder.modbus.bus, sounder.modbus.unit, sounder.modbus.coil) == \
        ("modbus", None, "rs485", 9, 0)
    rule = cfg.rules[0]
    assert rule.say["red"] == "地下车库B2积水已达红色预警，请勿进入车库。"
    area = cfg.areas["garage"]
    assert (area.burst_s, area.messages, area.message_s) == (10.0, 1, 10.0)  # GB 50116 defaults


def test_areas_placeholders_and_clips(tmp_path):
    clip = tmp_path / "red.wav"
    with wave.open(str(clip), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(b"\0\0" * 1600)
    text = ISSUE.replace('say = {', 'say_clip = { red = "red.wav" }\nsay_clear = "{place}积水已退。"\nsay = {') \
        .replace('say = { orange = "地下', 'say = { orange = "{place}{level}预警，水深{value}{unit}。地下')
    text = text.replace('unit = 1\n', 'unit = 1\nplace = "地下车库B2"\n')
    text += '[areas.garage]\nburst_s = 8\nmessages = 2\nmessage_s = 12\n'
    (tmp_path / "gateway.toml").write_text((BASE + text).replace('unit = 1\n', 'unit = 1\nplace = "地下车库B2"\n'))
    cfg = load_config(str(tmp_path / "gateway.toml"))
    rule = cfg.rules[0]
    assert rule.say["orange"].startswith("地下车库B2{level}预警，水深{value}{unit}。")  # {place} resolved at load
    assert rule.say_clip == {"red": str(clip)}
    assert rule.say_clear == "地下车库B2积水已退。"
    assert cfg.areas["garage"].messages == 2 and cfg.areas["garage"].burst_s == 8


@pytest.mark.parametrize("old,new,expected", [
    ('area = "garage"\npattern = { orange = "repeat"', 'area = "garage"\npattern = { orange = "pulse"',
     "[outputs.garage-voice] pattern.orange: a voice output's pattern is one of repeat, once"),
    ('backend = "alsa"', 'backend = "alsaa"', "backend: must be one of alsa, syn6288, sim"),
    ('device = "default"', 'record = "v.jsonl"', 'record: not for backend = "alsa"'),
    ('coil = 0', 'coil = 0\nregister = 3', "give exactly one of coil (FC05) or register"),
    ('backend = "alsa"\ndevice = "default"', 'backend = "syn6288"', "[outputs.garage-voice] port: is required"),
    ('backend = "alsa"\ndevice = "default"', 'backend = "syn6288"\nport = "/dev/ttyUSB1"\nbaudrate = 4800',
     "baudrate: must be one of 9600, 19200, 38400"),
    ('unit = 9', 'unit = 300', "unit: must be between 1 and 247"),
    ('bus = "rs485"\nunit = 9', 'bus = "rs486"\nunit = 9', "unknown bus 'rs486'"),
    ('kind = "modbus"', 'kind = "modbus"\npin = 5', 'pin: not for kind = "modbus"'),
    ('say = {', 'say_clip = { red = "nowhere.wav" }\nsay = {', "no such file"),
    ('say = { orange = "地下', 'say = { orange = "{plaec}地下', "unknown placeholder {plaec}"),
    ('say = { orange = "地下车库B2积水已达橙色预警，请尽快将车辆驶离。", ', 'say = { ',
     "voice output garage-voice speaks at orange but the rule says nothing there"),
    ('[[rules]]', '[areas.garage]\nburst_s = 25\n\n[[rules]]', "burst_s: must be between 8.0 and 20.0"),
    ('[[rules]]', '[areas.garage]\nmessage_s = 5\n\n[[rules]]', "message_s: must be between 10.0 and 30.0"),
    ('[[rules]]', '[areas.garage]\nmessages = 3\n\n[[rules]]', "messages: must be between 1 and 2"),
    ('[[rules]]', '[areas.lobby]\n\n[[rules]]', "no output names area 'lobby'"),
])
def test_mistakes_are_sentences_with_their_line(tmp_path, old, new, expected):
    assert old in ISSUE
    found = problems(tmp_path, ISSUE.replace(old, new, 1))
    assert any(expected in p for p in found), found
    assert all(p.split(":")[1].isdigit() for p in found), found  # FILE:LINE: ...
