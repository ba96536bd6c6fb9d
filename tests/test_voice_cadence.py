"""GB 50116-2013 §4.8 on the safety core: in an area, siren bursts alternate with spoken messages
within the configured bounds, start and stop together; silence and max_on_s cover voice; the sim
voice backend records what was said. Times are explicit (SafetyCore is pure); the voice worker is
real and runs on its own thread, so each step waits (bounded) for it to take the command."""

from __future__ import annotations

import time

import pytest

from drivers.gpio.sim import SimGpio
from drivers.voice.sim import SimVoice
from gateway.act import SafetyCore, Sirens
from gateway.act.voice import VoiceChange, VoiceWorker
from gateway.config.model import PATTERNS, VOICE_PATTERNS, Area, Output, Rule, VoiceSpec
from gateway.decide import AlarmBook
from gateway.reading import Reading

RED = "地下车库B2积水已达红色预警，请勿进入车库。"
ORANGE = "地下车库B2积水已达{level}预警，水深{value}{unit}，请尽快将车辆驶离。"
SIREN = Output("garage-siren", 17, pattern={"orange": PATTERNS["pulse"], "red": PATTERNS["steady"]},
               area="garage")
VOICE = Output("garage-voice", None, kind="voice", area="garage", voice=VoiceSpec("sim"), max_on_s=600,
               pattern={"orange": VOICE_PATTERNS["repeat"], "red": VOICE_PATTERNS["repeat"]})
RULE = Rule("garage-b2-water", "level", above={"orange": 25, "red": 40}, hysteresis=2,
            sound=("garage-siren", "garage-voice"), say={"orange": ORANGE, "red": RED},
            say_clear="地下车库B2积水已退去。")
ON, OFF = 0, 1  # active-low


@pytest.fixture
def rig():
    made = []

    def build(area=Area("garage"), voice=VOICE, siren=SIREN):
        backend = SimVoice()
        worker = VoiceWorker(voice.name, backend).start()
        core = SafetyCore(AlarmBook([RULE]), Sirens([siren, voice], SimGpio(), {voice.name: worker},
                                                    {"garage": area}))
        made.append(worker)
        return core, worker, backend

    yield build
    for w in made:
        assert w.stop(5)


def reading(value, mono):
    return Reading(RULE.sensor, RULE.point, value, "cm", "good", time.time(), mono)


def run(core, backend, t0, until, step=0.05, feed=()):
    """Tick from t0 to until; `feed` = [(t, value)]. Returns every relay/voice change in order."""
    changes, feed, t = [], sorted(feed), t0
    while t <= until:
        steps = []
        while feed and feed[0][0] <= t:
            steps.append(core.feed(reading(feed.pop(0)[1], t)))
        steps.append(core.tick(t, ts=time.time()))
        for s in steps:
            for c in s.relays:
                changes.append(c)
                if isinstance(c, VoiceChange):  # the worker takes it before the next one supersedes it
                    n = sum(1 for x in changes if isinstance(x, VoiceChange))
                    assert backend.wait_for(lambda b: len(b.said()) >= n, 5), changes
        t = round(t + step, 6)
    return changes


def stretches(changes, t0, end, on=lambda c: c.on):
    """[(start, end)] during which the changes say 'on'."""
    out, since = [], None
    for c in changes:
        if on(c) and since is None:
            since = c.mono
        elif not on(c) and since is not None:
            out.append((since - t0, c.mono - t0))
            since = None
    if since is not None:
        out.append((since - t0, end - t0))
    return out


def test_siren_bursts_alternate_with_messages_within_the_bounds(rig):
    core, worker, backend = rig(area=Area("garage", burst_s=8, messages=2, message_s=12))
    t0 = 1000.0
    changes = run(core, backend, t0, t0 + 80, feed=[(t0, 45)])
    sirens = [c for c in changes if not isinstance(c, VoiceChange)]
    voices = [c for c in changes if isinstance(c, VoiceChange)]
    bursts = stretches(sirens, t0, t0 + 80)
    assert bursts[0][0] == 0  # the siren at once: the reading's own step
    for start, end in bursts[:-1]:
        assert 8 <= end - start <= 20 and end - start == pytest.approx(8, abs=0.06)
    said = [c for c in voices if c.on]
    # cycle = 8 s burst + 2 x 12 s messages = 32 s: messages at 8, 20, 40, 52, 72
    assert [round(c.mono - t0, 2) for c in said] == [8, 20, 40, 52, 72]
    assert all(c.text == RED for c in said)
    # no message while a siren sounds, no siren while a message is due
    for c in said:
        assert not any(s <= c.mono - t0 < e for s, e in bursts)
    for (_, end), (nxt, _) in zip(bursts, bursts[1:]):
        assert nxt - end == pytest.approx(24, abs=0.06)  # exactly the two message slots
    # the sim backend said exactly these, in order, each cut at its slot's end
    record = backend.said()
    assert [r["action"] for r in record] == ["say", "say", "stop", "say", "say", "stop", "say"]
    assert [r["text"] for r in record if r["action"] == "say"] == [RED] * 5
    assert [round(asked - t0, 2) for asked, _, _ in worker.started] == [8, 20, 40, 52, 72]


def test_value_placeholders_a_worse_level_starts_over_and_clear_speaks(rig):
    core, worker, backend = rig()  # defaults: 10 s burst, one 10 s message
    t0 = 50.0
    changes = run(core, backend, t0, t0 + 40, feed=[(t0, 30), (t0 + 25, 45.5)])
    said = [c for c in changes if isinstance(c, VoiceChange) and c.on]
    assert said[0].text == "地下车库B2积水已达橙色预警，水深30cm，请尽快将车辆驶离。"
    assert round(said[0].mono - t0, 2) == 10
    # red at t0+25: the area starts over with a burst (steady siren at once), message at +35
    bursts = stretches([c for c in changes if not isinstance(c, VoiceChange)], t0, t0 + 40)
    assert [b for b in bursts if b[0] <= 25 < b[1]] == [(24, 35)]  # on at +25 (it was in a pulse's ON)
    assert [(round(c.mono - t0, 2), c.text) for c in said[1:]] == [(35, RED)]
    # the water goes mid-message: the voice stops in that very step and says the clear message once
    end = run(core, backend, t0 + 40.05, t0 + 41, feed=[(t0 + 40.05, 10)])
    assert {type(c).__name__ for c in end if not c.on} == {"VoiceChange"}  # the siren was quiet already
    assert len({c.mono for c in end if not c.on}) == 1  # the same step
    assert [c.text for c in end if isinstance(c, VoiceChange) and c.on] == ["地下车库B2积水已退去。"]


def test_silence_and_max_on_s_cover_voice(rig):
    core, worker, backend = rig(voice=Output(**{**VOICE.__dict__, "max_on_s": 25.0}))
    t0 = 0.0
    run(core, backend, t0, t0 + 12, feed=[(t0, 45)])
    assert backend.said()[-1]["action"] == "say"  # speaking in the first slot
    core.silence(by="cli", now=t0 + 12)
    assert backend.wait_for(lambda b: b.said()[-1]["action"] == "stop", 5)
    st = core.status()["outputs"]
    assert not st["garage-voice"]["on"] and not st["garage-siren"]["on"]
    # a new alarm; voice's max_on_s (25 s) silences it by the clock although the siren allows 600 s
    core2, _, backend2 = rig(voice=Output(**{**VOICE.__dict__, "max_on_s": 25.0}))
    changes = run(core2, backend2, t0, t0 + 40, feed=[(t0, 45)])
    assert core2.book.active()[0].silenced_by == "max_on_s"
    last = max(c.mono for c in changes)
    assert last == pytest.approx(25, abs=0.06)
    assert not any(c.on for c in changes if c.mono >= 25)


def test_an_area_without_voice_keeps_its_siren_pattern(rig):
    voice = Output(**{**VOICE.__dict__, "pattern": {"red": VOICE_PATTERNS["repeat"]}})
    core, _, backend = rig(voice=voice)
    changes = run(core, backend, 0.0, 30, feed=[(0.0, 30)])  # orange: the voice has nothing for it
    assert not any(isinstance(c, VoiceChange) for c in changes)
    ons = [c.mono for c in changes if c.on]
    assert ons[:4] == [0, 2, 4, 6]  # pulse 1 s / 1 s as before, never cut for a voice slot
