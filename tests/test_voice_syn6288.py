"""The syn6288 backend over a socat pty pair, against a simulated module that checks every frame whole
and answers as the datasheet says (0x41 received, 0x45 not understood)."""

from __future__ import annotations

import pytest

from drivers.sim.syn6288 import SimSyn6288
from drivers.voice import VoiceError
from drivers.voice.syn6288 import Syn6288Voice, frame, parse, synthesis_frame
from gateway.act.voice import Speak, VoiceWorker
from ptys import PtyPair, wait_until

RED = "地下车库B2积水已达红色预警，请勿进入车库。"


def test_frames_on_the_wire():
    # stop and status query as the datasheet lists them
    assert frame(0x02).hex(" ") == "fd 00 02 02 fd"
    assert frame(0x21).hex(" ") == "fd 00 02 21 de"
    # "你好" in GB2312 is C4 E3 BA C3: FD, length 7 (cmd, param, 4 text bytes, xor), 01, 00, text, XOR
    f = synthesis_frame("你好", "gb2312")
    assert f.hex(" ") == "fd 00 07 01 00 c4 e3 ba c3 " + f"{0xFD ^ 0x07 ^ 0x01 ^ 0xC4 ^ 0xE3 ^ 0xBA ^ 0xC3:02x}"
    assert synthesis_frame("你好").hex(" ").startswith("fd 00 07 01 01 c4 e3 ba c3")  # GBK: param 1
    assert parse(f) == (0x01, 0x00, bytes.fromhex("c4e3bac3"))
    assert "XOR" in parse(f[:-1] + bytes([f[-1] ^ 1]))
    with pytest.raises(VoiceError, match="at most 200"):
        synthesis_frame("很" * 101)


@pytest.fixture
def pty(tmp_path):
    with PtyPair(tmp_path) as pair:
        yield pair


def test_speaks_stops_and_the_module_checks_each_frame(pty):
    with SimSyn6288(pty.b) as module:
        v = Syn6288Voice(pty.a)
        v.speak(RED, prefix="现在是应急演练。")
        v.stop()
        assert module.said == ["现在是应急演练。" + RED] and module.stops == 1 and module.refused == []
        assert module.frames[0][:5] == bytes([0xFD]) + (len(("现在是应急演练。" + RED).encode("gbk")) + 3).to_bytes(2, "big") + b"\x01\x01"
        v.close()


def test_a_refused_frame_and_a_silent_module_are_faults(pty):
    with SimSyn6288(pty.b) as module:
        v = Syn6288Voice(pty.a)
        with pytest.raises(VoiceError, match=r"refused the stop frame \(0x45\)"):
            v._send(bytes.fromhex("fd 00 02 02 00"), "stop")  # a bad XOR
        assert module.refused == ["XOR 00, expected FD"]
        module.answer = False
        with pytest.raises(VoiceError, match="no answer to the synthesis frame"):
            v.speak(RED)
        v._close()


def test_the_worker_reports_a_missing_module(tmp_path, pty):
    got = []
    worker = VoiceWorker("lobby-voice", Syn6288Voice(pty.a), on_problem=lambda n, t: got.append(t)).start()
    try:
        worker.put(Speak(RED, None, 0.0))  # nothing on the other end of the pty
        assert wait_until(lambda: got, 5)
        assert "no answer to the synthesis frame" in got[0]
    finally:
        assert worker.stop(5)
