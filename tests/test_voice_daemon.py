"""Voice outputs in the running gateway: a voice backend that hangs never delays a relay (the
hung-consumer independence test, with the voice worker as the consumer), and `gateway run` with a
sim voice output in the siren's area and an alsa output on a missing sound card: the siren sounds at
once, the missing card is a fault event and a status line, the message follows the first burst."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from drivers.gpio.sim import SimGpio
from drivers.sim.modbus_device import SimBus
from drivers.voice.base import VoiceBackend
from gateway.act import SafetyCore, SafetyLoop, Sirens
from gateway.act.voice import VoiceWorker
from gateway.config import load_config
from gateway.config.model import PATTERNS, VOICE_PATTERNS, Area, Output, Rule, VoiceSpec
from gateway.decide import AlarmBook
from gateway.reading import Reading
from tests.daemonkit import SIREN_PIN, cli_json, run_daemon, stop_daemon, write_config
from tests.ptys import wait_until

TICK = 0.02
RED = "地下车库B2积水已达红色预警，请勿进入车库。"


class HungVoice(VoiceBackend):
    """A TTS module that takes the first message and never returns (a serial write stuck forever)."""
    name = "hung"

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()

    def speak(self, text, prefix=None):
        self.entered.set()
        self.release.wait()

    def stop(self):
        self.release.wait()


def test_a_hung_voice_backend_never_delays_a_relay():
    siren = Output("garage-siren", 17, pattern={"red": PATTERNS["steady"]}, area="garage")
    voice = Output("garage-voice", None, kind="voice", area="garage", voice=VoiceSpec("sim"),
                   pattern={"red": VOICE_PATTERNS["repeat"]})
    rule = Rule("garage-b2-water", "level", above={"red": 40}, sound=("garage-siren", "garage-voice"),
                say={"red": RED})
    backend = HungVoice()
    worker = VoiceWorker("garage-voice", backend).start()
    pins = SimGpio()
    # a voice output of no area... and one in the area: speak at once (its own area has no siren)
    lone = Output("lobby-voice", None, kind="voice", voice=VoiceSpec("sim"), pattern={"red": VOICE_PATTERNS["repeat"]})
    lone_worker = VoiceWorker("lobby-voice", backend).start()
    rule = Rule(**{**rule.__dict__, "sound": rule.sound + ("lobby-voice",)})
    core = SafetyCore(AlarmBook([rule]), Sirens([siren, voice, lone], pins,
                                                {"garage-voice": worker, "lobby-voice": lone_worker},
                                                {"garage": Area("garage")}))
    loop = SafetyLoop(core, tick_s=TICK).start()
    try:
        latencies = []
        for value, expect in ((45, 0), (0, 1), (45, 0), (0, 1), (45, 0)):
            n = len(pins.values(17))
            t0 = time.time()
            loop.submit(Reading(rule.sensor, rule.point, value, "cm", "good", time.time(), time.monotonic()))
            assert pins.wait_for(lambda p: len(p.values(17)) == n + 1, timeout=5.0)
            assert pins.history(17)[-1]["value"] == expect
            latencies.append(pins.history(17)[-1]["t"] - t0)
            assert backend.entered.wait(5)  # from the first alarm on, the voice backend is stuck
        assert max(latencies) < TICK, latencies
        assert loop.alive(max_age_s=1.0)
    finally:
        backend.release.set()
        assert loop.stop(5)
        assert worker.stop(5) and lone_worker.stop(5)


def _pins(tmp_path) -> list[dict]:
    f = tmp_path / "var" / "pins.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines() if x.strip()] if f.exists() else []


VOICE_TOML = f'''
[outputs.garage-voice]
kind = "voice"
backend = "sim"
record = "./var/voice.jsonl"
area = "garage"
pattern = {{ red = "repeat" }}

[outputs.lobby-voice]
kind = "voice"
backend = "alsa"
device = "no-such-card"
pattern = {{ red = "once" }}

[areas.garage]
burst_s = 8
'''


@pytest.mark.skipif(subprocess.run(["which", "aplay"], capture_output=True).returncode != 0,
                    reason="needs alsa-utils")
def test_the_daemon_speaks_after_the_burst_and_reports_a_missing_sound_card(tmp_path):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        path = write_config(tmp_path, "voice-gw", sim.port, above={"red": 40}, extra=VOICE_TOML)
        text = open(path).read().replace('sound = ["garage-siren"]',
                                         f'sound = ["garage-siren", "garage-voice", "lobby-voice"]\nsay = {{ red = "{RED}" }}')
        text = text.replace('[outputs.garage-siren]\n', '[outputs.garage-siren]\narea = "garage"\n')
        open(path, "w").write(text)
        sim.add_device(1, load_config(path).sensors["garage-b2-water"].profile, {"level": 2.0})
        proc = run_daemon(path)
        try:
            wait_until(lambda: (tmp_path / "var" / "control.sock").exists(), timeout=15, what="daemon up")
            sim.set_value(1, "level", 45.0)
            wait_until(lambda: any(p["pin"] == SIREN_PIN and p["value"] == 0 for p in _pins(tmp_path)),
                       timeout=10, what="siren ON")
            on_at = next(p["t"] for p in _pins(tmp_path) if p["pin"] == SIREN_PIN and p["value"] == 0)
            record = tmp_path / "var" / "voice.jsonl"
            wait_until(lambda: record.exists() and record.read_text().strip(), timeout=15, what="message said")
            said = json.loads(record.read_text().splitlines()[0])
            assert said["action"] == "say" and said["text"] == RED
            assert 7.9 <= said["t"] - on_at <= 9.0  # after the 8 s burst, not during it
            off = [p for p in _pins(tmp_path) if p["pin"] == SIREN_PIN and p["value"] == 1 and p["t"] > on_at]
            assert off and abs(off[0]["t"] - said["t"]) < 0.2  # the siren went quiet for the message
            wait_until(lambda: any(e.get("output") == "lobby-voice" and e.get("state") == "fault"
                                   for e in cli_json(path, "events")), timeout=15, what="fault event for the card")
            fault = next(e for e in cli_json(path, "events") if e.get("output") == "lobby-voice")
            assert fault["component"] == "output" and "no-such-card" in fault["detail"]
            status = cli_json(path, "status")[0]
            assert "no-such-card" in status["outputs"]["lobby-voice"]["problem"]
        finally:
            out = stop_daemon(proc)
    assert "Traceback" not in out, out
