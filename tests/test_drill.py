"""Drills (应急演练): the area sounds as for a real warning with the drill announcement before every
message, its events carry "drill": true, a real alarm during the drill takes its outputs over and is
never marked drill, and stop, silence or the timeout end it; end to end through `gateway drill`."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from drivers.gpio.sim import SimGpio
from drivers.sim.modbus_device import SimBus
from drivers.voice.sim import SimVoice
from gateway.act import SafetyCore, Sirens
from gateway.act.voice import VoiceChange, VoiceWorker
from gateway.config import load_config
from gateway.config.model import PATTERNS, VOICE_PATTERNS, Area, Output, Rule, VoiceSpec
from gateway.decide import AlarmBook
from gateway.errors import OutputError
from gateway.reading import Reading
from gateway.record.events import event_of
from tests.daemonkit import cli_json, run_daemon, stop_daemon, write_config
from tests.ptys import wait_until

RED = "地下车库B2积水已达红色预警，请勿进入车库。"
SIREN = Output("garage-siren", 17, pattern={"orange": PATTERNS["pulse"], "red": PATTERNS["steady"]}, area="garage")
VOICE = Output("garage-voice", None, kind="voice", area="garage", voice=VoiceSpec("sim"),
               pattern={"red": VOICE_PATTERNS["repeat"]})
LOBBY = Output("lobby-siren", 18, pattern={"red": PATTERNS["steady"]}, area="lobby")
RULE = Rule("garage-b2-water", "level", above={"red": 40}, sound=("garage-siren", "garage-voice"), say={"red": RED})


@pytest.fixture
def core():
    backend = SimVoice()
    worker = VoiceWorker("garage-voice", backend).start()
    c = SafetyCore(AlarmBook([RULE]), Sirens([SIREN, VOICE, LOBBY], SimGpio(), {"garage-voice": worker},
                                             {"garage": Area("garage", burst_s=8)}))
    c.backend = backend
    yield c
    assert worker.stop(5)


def test_a_drill_sounds_its_area_with_the_announcement_and_ends(core):
    step = core.drill_start("garage", 1, by="cli", now=0.0)
    [t] = step.transitions
    kind, fields = event_of(t)
    assert (kind, fields["transition"], fields["level"], fields["drill"], fields["sensor"], fields["point"]) == \
        ("alarm", "raised", "red", True, "drill", "garage")
    assert [(c.output, c.on) for c in step.relays] == [("garage-siren", True)]  # not the lobby's
    changes = []
    for i in range(1, 200):
        changes += core.tick(i * 0.05).relays
    said = [c for c in changes if isinstance(c, VoiceChange) and c.on]
    assert said and said[0].mono == pytest.approx(8.0) and said[0].text == RED
    assert core.backend.wait_for(lambda b: any(r["action"] == "say" for r in b.said()), 5)
    first = next(r for r in core.backend.said() if r["action"] == "say")
    assert first["prefix"] == "现在是应急演练。" and first["text"] == RED
    # the timeout: 1 minute
    end = core.tick(60.0)
    assert [(t.kind, t.rule) for t in end.transitions] == [("cleared", "drill")]
    assert event_of(end.transitions[0])[1]["drill"] is True
    assert not core.status()["outputs"]["garage-siren"]["on"] and "drill" not in core.status()


def test_a_real_alarm_during_a_drill_is_real_and_takes_over(core):
    core.drill_start(None, 10, now=0.0)
    assert core.status()["outputs"]["lobby-siren"]["on"]  # every output without --area
    step = core.feed(Reading(RULE.sensor, RULE.point, 45.0, "cm", "good", time.time(), 1.0))
    [t] = step.transitions
    assert t.rule == RULE.name and "drill" not in event_of(t)[1]  # never marked drill
    changes = []
    for i in range(21, 200):
        changes += core.tick(i * 0.05).relays
    said = [c for c in changes if isinstance(c, VoiceChange) and c.on]
    assert said and said[0].text == RED
    assert core.backend.wait_for(lambda b: any(r["action"] == "say" for r in b.said()), 5)
    assert all(r["prefix"] is None for r in core.backend.said() if r["action"] == "say")  # no drill prefix
    # silence everything: the real alarm is silenced and the drill ends
    kinds = sorted((t.rule, t.kind) for t in core.silence(by="cli", now=11.0).transitions)
    assert kinds == [("drill", "cleared"), (RULE.name, "silenced")]


def test_a_drill_of_an_unknown_area_or_too_long_is_refused(core):
    with pytest.raises(OutputError, match="no output is in area 'roof'; areas: garage, lobby"):
        core.drill_start("roof", 5, now=0.0)
    with pytest.raises(OutputError, match="at most 240 minutes"):
        core.drill_start("garage", 500, now=0.0)
    assert core.drill_stop(now=0.0).transitions == []  # nothing running: nothing to stop


VOICE_TOML = '''
[outputs.garage-voice]
kind = "voice"
backend = "sim"
record = "./var/voice.jsonl"
pattern = { red = "repeat" }
'''


def test_gateway_drill_start_and_stop_end_to_end(tmp_path):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        path = write_config(tmp_path, "drill-gw", sim.port, above={"red": 40}, extra=VOICE_TOML)
        text = open(path).read().replace('sound = ["garage-siren"]',
                                         f'sound = ["garage-siren", "garage-voice"]\nsay = {{ red = "{RED}" }}')
        open(path, "w").write(text)
        sim.add_device(1, load_config(path).sensors["garage-b2-water"].profile, {"level": 2.0})
        proc = run_daemon(path)
        try:
            wait_until(lambda: (tmp_path / "var" / "control.sock").exists(), timeout=15, what="daemon up")
            run = subprocess.run([sys.executable, "-m", "gateway.cli", "drill", "start", "--minutes", "2",
                                  "-c", path], capture_output=True, text=True, timeout=20)
            assert run.returncode == 0 and "drill drill#1 running in all at red" in run.stdout, run.stderr
            record = tmp_path / "var" / "voice.jsonl"
            wait_until(lambda: record.exists() and record.read_text().strip(), timeout=10, what="drill spoken")
            said = json.loads(record.read_text().splitlines()[0])
            assert said["prefix"] == "现在是应急演练。" and said["text"] == RED
            assert cli_json(path, "status")[0]["drill"]["id"] == "drill#1"
            bad = subprocess.run([sys.executable, "-m", "gateway.cli", "drill", "start", "--area", "roof", "-c", path],
                                 capture_output=True, text=True, timeout=20)
            assert bad.returncode == 1 and "no output is in area 'roof'" in bad.stderr
            stop = subprocess.run([sys.executable, "-m", "gateway.cli", "drill", "stop", "-c", path],
                                  capture_output=True, text=True, timeout=20)
            assert "drill stopped: drill#1" in stop.stdout, stop.stderr
            events = [e for e in cli_json(path, "events") if e.get("type") == "alarm"]
            # the control socket names who asked: cli:USER[PID] (gateway/control/peers.py)
            assert [(e["transition"], e.get("drill"), e.get("by", "").split(":")[0]) for e in events] == \
                [("raised", True, "cli"), ("cleared", True, "cli")]
        finally:
            out = stop_daemon(proc)
    assert "Traceback" not in out, out


def test_the_signed_drill_command_starts_and_stops_a_drill(tmp_path):
    from test_commands import ON, OFF, SIREN_PIN as PIN, Site, wait_for

    site = Site(tmp_path)
    try:
        reply, cmd = site.send("drill", {"action": "start", "minutes": 5})
        assert reply["ok"] and reply["result"]["drill"] == "drill#1" and reply["result"]["area"] == "all", reply
        wait_for(lambda: site.pins.values(PIN)[-1] == ON, what="siren on for the drill")
        reply, _ = site.send("drill", {"action": "start", "minutes": 500})
        assert reply["ok"] is False and reply["error"] == "schema", reply  # at most 240 minutes
        reply, _ = site.send("drill", {"action": "stop"})
        assert reply["result"] == {"stopped": ["drill#1"]}
        wait_for(lambda: site.pins.values(PIN)[-1] == OFF, what="siren off")
        assert [a["command"] for a in site.audits] == ["drill", "drill", "drill"]
    finally:
        site.stop()


def test_drill_flags_reach_the_platform_through_a_real_broker(tmp_path):
    from gateway.platform import Receiver
    from tests.mosquitto import Mosquitto

    with Mosquitto(tmp_path / "broker") as broker, SimBus.tcp("127.0.0.1", 0) as sim:
        path = write_config(tmp_path, "drill-up", sim.port, above={"red": 40}, extra=f'''
            [uplink]
            host = "127.0.0.1"
            port = {broker.port}
            client_id = "drill-up"
        ''')
        sim.add_device(1, load_config(path).sensors["garage-b2-water"].profile, {"level": 2.0})
        rx = Receiver("127.0.0.1", broker.port).start()
        proc = run_daemon(path)
        try:
            wait_until(lambda: rx.presence.get("drill-up", {}).get("state") == "online", 20, what="birth")
            run = subprocess.run([sys.executable, "-m", "gateway.cli", "drill", "start", "--minutes", "1", "-c", path],
                                 capture_output=True, text=True, timeout=20)
            assert run.returncode == 0, run.stderr
            sim.set_value(1, "level", 45.0)  # a real flood during the drill
            wait_until(lambda: len(rx.of_type("alarm")) >= 2, 20, what="drill and real alarm at the platform")
            subprocess.run([sys.executable, "-m", "gateway.cli", "drill", "stop", "-c", path],
                           capture_output=True, text=True, timeout=20)
            wait_until(lambda: len(rx.of_type("alarm")) >= 3, 20, what="drill cleared at the platform")
        finally:
            out = stop_daemon(proc)
            rx.close()
    alarms = rx.of_type("alarm")
    assert rx.invalid == []  # every payload validated against docs/schemas (alarm.json has `drill`)
    drill = [(e["transition"], e.get("drill")) for e in alarms if e["sensor"] == "drill"]
    real = [(e["transition"], e.get("drill")) for e in alarms if e["sensor"] == "garage-b2-water"]
    assert drill == [("raised", True), ("cleared", True)]
    assert real == [("raised", None)]  # the real alarm during the drill is never marked drill
    assert "Traceback" not in out, out
