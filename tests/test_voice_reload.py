"""A reload (Daemon.start(handover=old)) with voice and Modbus outputs sounding: an unchanged voice
output keeps its worker (one voice, not two, not none), a Modbus output the new config keeps is
driven by the new bus loop's queue and stays ON, and one the new config took away is written OFF
(the old bus loop is gone: nobody else would)."""

from __future__ import annotations

import json

from drivers.gpio.sim import SimGpio
from drivers.sim.modbus_device import SimBus
from gateway.act.voice import VoiceWorker
from gateway.config import load_config
from gateway.service.daemon import Daemon
from tests.daemonkit import write_config
from tests.ptys import wait_until

RED = "地下车库B2积水已达红色预警，请勿进入车库。"
OUTPUTS = '''
[outputs.garage-voice]
kind = "voice"
backend = "sim"
record = "./var/voice.jsonl"
pattern = { red = "repeat" }

[outputs.stair-sounder]
kind = "modbus"
bus = "garage"
unit = 9
coil = 0
pattern = { red = "steady" }
'''
B3 = '''
[outputs.b3-sounder]
kind = "modbus"
bus = "garage"
unit = 11
coil = 0
pattern = { red = "steady" }
'''


def test_a_reload_carries_the_voice_worker_and_the_modbus_outputs(tmp_path):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        path = write_config(tmp_path, "vr-gw", sim.port, above={"red": 40}, extra=OUTPUTS + B3)
        text = open(path).read().replace(
            'sound = ["garage-siren"]',
            f'sound = ["garage-siren", "garage-voice", "stair-sounder", "b3-sounder"]\nsay = {{ red = "{RED}" }}')
        open(path, "w").write(text)
        cfg = load_config(path)
        sim.add_device(1, cfg.sensors["garage-b2-water"].profile, {"level": 45.0})
        sim.add_device(9, None, coils=1)
        sim.add_device(11, None, coils=1)
        gpio = SimGpio()
        old = Daemon(cfg, gpio=gpio).start()
        new = None
        try:
            wait_until(lambda: sim.bits(9)[0] and sim.bits(11)[0], timeout=10, what="both sounders ON")
            voice = old.outlets["garage-voice"]
            assert isinstance(voice, VoiceWorker)
            wait_until(lambda: voice.spoken >= 1, timeout=10, what="the message said")
            # the new config: the same voice output and stair sounder, b3-sounder gone
            text2 = text.replace('"stair-sounder", "b3-sounder"]', '"stair-sounder"]').replace(B3, "")
            open(path, "w").write(text2)
            cfg2 = load_config(path)
            assert "b3-sounder" not in cfg2.outputs
            new = Daemon(cfg2, gpio=gpio).start(handover=old)
            assert new.outlets["garage-voice"] is voice  # adopted: still the one voice
            assert voice._sink._thread.is_alive()
            assert old.outlets == {}
            wait_until(lambda: sim.bits(11)[0] is False, timeout=10, what="the removed sounder written OFF")
            w = new._writes["garage"]
            wait_until(lambda: w.status("stair-sounder")["confirmed"], timeout=10, what="stair sounder confirmed")
            assert w.status("stair-sounder")["wanted"] == "ON" and sim.bits(9)[0] is True
            assert new.status()["outputs"]["garage-voice"]["on"]
            spoken = voice.spoken
            wait_until(lambda: voice.spoken > spoken, timeout=15, what="the voice goes on after the reload")
            lines = [json.loads(x) for x in (tmp_path / "var" / "voice.jsonl").read_text().splitlines() if x]
            assert all(x.get("text") in (RED, None) for x in lines)
        finally:
            (new or old).stop()
            if new is not None:
                old.stop()
    assert sim.bits(9)[0] is False  # a clean stop writes the kept sounder OFF
