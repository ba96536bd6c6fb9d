"""The SafetyLoop thread: relays switch in the iteration that takes the reading, whatever
its consumers do. Waits are bounded polls on the pin history, never fixed sleeps."""

import logging
import threading
import time

import pytest

from drivers.gpio.sim import SimGpio
from gateway.act import SafetyCore, SafetyLoop, SilenceButton, Sirens
from gateway.config.model import PATTERNS, Input, Output, Rule
from gateway.decide import AlarmBook, UnknownAlarm
from gateway.errors import OutputError
from gateway.reading import Reading

TICK = 0.02
SIREN = Output("garage-siren", 17, active_low=True,
               pattern={"orange": PATTERNS["pulse"], "red": PATTERNS["steady"]}, max_on_s=600)
WATER = Rule("garage-b2-water", "level", above={"blue": 5, "yellow": 15, "orange": 25, "red": 40},
             hysteresis=2, sound=("garage-siren",))
SMOKE = Rule("stair-2-smoke", "status", equals={"red": (1,)}, latch=True, sound=("garage-siren",))
BUTTON = Input("silence-button", 27, action="silence", debounce_ms=50)
OFF, ON = 1, 0


def reading(rule, value, quality="good"):
    return Reading(rule.sensor, rule.point, value, "cm", quality, time.time(), time.monotonic())


@pytest.fixture
def rig():
    """Builds loops and guarantees they (and their threads) are gone after the test."""
    made = []

    def build(**kw):
        pins = SimGpio()
        core = SafetyCore(AlarmBook([WATER, SMOKE]), Sirens([SIREN], pins), [SilenceButton(BUTTON, pins)])
        loop = SafetyLoop(core, tick_s=TICK, **kw)
        made.append((loop, pins))
        return loop, pins

    yield build
    for loop, pins in made:
        assert loop.stop(timeout=5.0)
        pins.cleanup()


def changed_to(pins, values):
    return pins.wait_for(lambda p: p.values(17) == values, timeout=5.0)


def test_relay_switches_while_every_consumer_hangs(rig):
    # The outbox writer, the uplink and even stdout never return.
    never = threading.Event()
    entered = threading.Event()

    def hung(_item):
        entered.set()
        never.wait()

    class HungHandler(logging.Handler):
        def emit(self, record):
            never.wait()

    log = logging.getLogger("gateway.safety")
    handler = HungHandler()
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.INFO)
    try:
        loop, pins = rig(on_transition=hung, on_state=hung)
        loop.start()
        latencies = []
        for value, expect in ((45, ON), (0, OFF), (45, ON), (0, OFF), (45, ON)):
            n = len(pins.values(17))
            t0 = time.time()
            loop.submit(reading(WATER, value))
            assert pins.wait_for(lambda p: len(p.values(17)) == n + 1, timeout=5.0)
            change = pins.history(17)[-1]
            assert change["value"] == expect
            latencies.append(change["t"] - t0)
        assert entered.is_set()  # the consumers really were stuck from the first alarm on
        assert max(latencies) < TICK, latencies  # within one poll interval of each reading
        assert loop.alive(max_age_s=1.0)
    finally:
        never.set()
        log.removeHandler(handler)
        log.setLevel(old_level)


def test_remote_silence_and_acknowledge_from_another_thread(rig):
    got = []
    loop, pins = rig(on_transition=got.append)
    loop.start()
    loop.submit(reading(SMOKE, 1))
    assert changed_to(pins, [OFF, ON])
    result = {}
    caller = threading.Thread(target=lambda: result.update(t=loop.silence(by="platform").result(5)))
    caller.start()
    caller.join(5)
    assert [(t.kind, t.by) for t in result["t"]] == [("silenced", "platform")]
    assert changed_to(pins, [OFF, ON, OFF])
    with pytest.raises(UnknownAlarm):
        loop.acknowledge("no-such.alarm").result(5)
    loop.submit(reading(SMOKE, 0))
    kinds = [t.kind for t in loop.acknowledge("stair-2-smoke.status", by="cli").result(5)]
    assert kinds == ["acknowledged", "cleared"]
    deadline = time.monotonic() + 5
    while len(got) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [t.kind for t in got] == ["raised", "silenced", "acknowledged", "cleared"]
    assert loop.status()["alarms"] == []


def test_silence_button_through_the_loop(rig):
    loop, pins = rig()
    loop.start()
    loop.submit(reading(WATER, 45))
    assert changed_to(pins, [OFF, ON])
    pins.press(27)
    assert changed_to(pins, [OFF, ON, OFF])
    pins.release(27)
    alarm = loop.status()["alarms"][0]
    assert (alarm["level"], alarm["silenced"], alarm["silenced_by"]) == ("red", True, "button:silence-button")


def test_restart_restores_and_sounds_within_one_poll(rig):
    states = []
    loop, pins = rig(on_state=states.append)
    loop.start()
    loop.submit(reading(WATER, 45))
    assert changed_to(pins, [OFF, ON])
    deadline = time.monotonic() + 5
    while not states and time.monotonic() < deadline:
        time.sleep(0.01)
    snap = states[-1]  # what the daemon persisted, off the safety path
    assert [a["level"] for a in snap["alarms"]] == ["red"]
    # kill -9: no shutdown, a new process with fresh pins comes up with the snapshot.
    loop2, pins2 = rig()
    loop2.restore(snap)
    t0 = time.time()
    loop2.start()
    assert changed_to(pins2, [OFF, ON])
    assert pins2.history(17)[-1]["t"] - t0 < TICK


def test_stop_turns_outputs_off_and_ends_threads(rig, caplog):
    caplog.set_level(logging.INFO, logger="gateway.safety")
    loop, pins = rig()
    loop.start()
    loop.submit(reading(WATER, 45))
    assert changed_to(pins, [OFF, ON])
    assert loop.stop(timeout=5.0)
    assert pins.values(17) == [OFF, ON, OFF]
    names = {t.name for t in threading.enumerate()}
    assert not names & {"safety", "safety-log", "safety-transitions", "safety-state"}
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.safety"]
    assert any(m.startswith("alarm garage-b2-water.level#1 raised level=red value=45 cm") for m in lines)
    assert [m for m in lines if m.startswith("relay ")] == [
        "relay garage-siren GPIO17 ON (red steady) [alarm]", "relay garage-siren GPIO17 off [shutdown]"]
    with pytest.raises(OutputError, match="not running"):
        loop.silence()


def test_a_broken_consumer_and_bad_commands_do_not_stop_the_loop(rig):
    def broken(_t):
        raise RuntimeError("outbox exploded")

    loop, pins = rig(on_transition=broken)
    loop.start()
    with pytest.raises(OutputError, match="no output"):
        loop.siren_test("nope", 1)
    with pytest.raises(TypeError):
        loop.submit({"sensor": "garage-b2-water"})
    loop.submit(reading(WATER, "garbage"))  # a decoding bug upstream: a fault, not a crash
    loop.submit(reading(WATER, 45))
    assert changed_to(pins, [OFF, ON])
    loop.submit(reading(WATER, 0))
    assert changed_to(pins, [OFF, ON, OFF])
    assert loop.errors == 0 and loop.alive()


def test_siren_test_through_the_loop(rig):
    loop, pins = rig()
    loop.start()
    assert loop.siren_test("garage-siren", 0.2, by="cli").result(5) == []
    assert changed_to(pins, [OFF, ON, OFF])
    on, off = pins.history(17)[1:]
    assert 0.2 <= off["t"] - on["t"] < 0.2 + 3 * TICK
