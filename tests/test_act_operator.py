"""Silence, acknowledge and siren test exist once (gateway/act/operator.py): the control socket's
handlers and the platform's commands both go through it, so they accept and report the same."""

import pytest

from drivers.gpio.sim import SimGpio
from gateway.act import SafetyCore, SafetyLoop, Sirens, operator
from gateway.control.handlers import handlers
from gateway.decide import AlarmBook
from gateway.errors import OutputError
from test_act_sirens import SIREN, WATER, rd
from tests.ptys import wait_until


@pytest.fixture
def loop():
    pins = SimGpio()
    lp = SafetyLoop(SafetyCore(AlarmBook([WATER]), Sirens([SIREN], pins)), tick_s=0.01).start()
    try:
        yield lp, pins
    finally:
        lp.stop()


def _red(lp):
    for t in range(5):
        lp.submit(rd(WATER, 45, t))
    wait_until(lambda: lp.status()["alarms"], timeout=5, what="red raised")


def test_silence_ack_and_test_through_the_one_implementation(loop):
    lp, pins = loop
    _red(lp)
    assert operator.silence(lp, None, "cli") == ["garage-b2-water.level#1"]
    assert operator.silence(lp, None, "cli") == []  # already silenced: nothing
    assert operator.acknowledge(lp, "all", "platform") == ["garage-b2-water.level#1"]
    with pytest.raises(OutputError, match="seconds"):
        operator.siren_test(lp, "garage-siren", 61, "cli")
    with pytest.raises(OutputError, match="seconds"):
        operator.siren_test(lp, "garage-siren", True, "cli")
    assert operator.siren_test(lp, "garage-siren", 0.2, "cli") == 0.2


def test_the_control_socket_and_the_platform_call_it(loop, monkeypatch):
    lp, _ = loop
    calls = []
    for name in ("silence", "acknowledge", "siren_test"):
        real = getattr(operator, name)
        monkeypatch.setattr(operator, name, lambda *a, _n=name, _r=real, **k: (calls.append(_n), _r(*a, **k))[1])
    _red(lp)

    class D:
        safety = lp

    plain, _ = handlers(D())
    assert plain["silence"]({}) == {"silenced": ["garage-b2-water.level#1"]}
    assert plain["ack"]({"alarm": "all"}) == {"acknowledged": ["garage-b2-water.level#1"]}
    plain["siren_test"]({"output": "garage-siren", "seconds": 0.1})

    from gateway.commands.handler import CommandHandler

    class Cmd:
        def __init__(self, args):
            self.args = args

    h = CommandHandler.__new__(CommandHandler)
    h.daemon = D()
    assert h._silence(Cmd({}))[1] == {"silenced": []}
    assert h._ack(Cmd({"alarm": "all"}))[1] == {"acknowledged": []}
    h._siren_test(Cmd({"output": "garage-siren", "seconds": 0.1}))
    assert calls == ["silence", "acknowledge", "siren_test"] * 2
