"""Stale is a state of the alarm book (issue 11 item 4): a point with no good reading for its
stale limit (`stale_after` polls) turns stale on the book's own tick, even when nothing arrives at
all (a dead bus loop): one fault event, the alarm held (neither raised nor cleared), shown in the
safety status; the next good reading recovers it."""

from gateway.config.model import Rule
from gateway.decide import AlarmBook
from gateway.reading import Reading

WATER = Rule("garage-b2-water", "level", above={"red": 40}, hysteresis=2, sound=("garage-siren",))
KEY = ("garage-b2-water", "level")


def rd(value, t):
    return Reading(WATER.sensor, WATER.point, value, "cm", "good", ts=1_700_000_000 + t, mono=t)


def kinds(ts):
    return [(x.kind, x.state, x.level) for x in ts]


def test_a_point_without_readings_turns_stale_and_holds_its_alarm():
    book = AlarmBook([WATER], stale_after={KEY: 3.0})
    assert kinds(book.feed(rd(45, 0))) == [("raised", "active", "red")]
    assert book.tick(2.9) == []
    [t] = book.tick(3.1)  # nothing arrived for 3.1 s: the bus loop is dead or hung
    assert (t.kind, t.state, t.alarm_id, t.level) == ("fault", "stale", "garage-b2-water.level#1", "red")
    assert "3" in t.detail
    assert book.tick(100.0) == []  # once, not at every tick
    assert [a.level for a in book.active()] == ["red"]  # held: a dead bus neither clears nor raises
    assert book.points() == {"garage-b2-water.level": {"quality": "stale", "reason": t.detail,
                                                      "alarm": "garage-b2-water.level#1"}}
    # back: recovered, and a calm value clears as usual
    assert kinds(book.feed(rd(1, 101))) == [("recovered", "good", "red"), ("cleared", "cleared", None)]
    assert book.points() == {}


def test_a_point_that_never_read_turns_stale_from_the_first_tick():
    book = AlarmBook([WATER], stale_after={KEY: 3.0})
    assert book.tick(10.0) == []  # the watch starts here
    [t] = book.tick(13.5)
    assert (t.kind, t.state, t.alarm_id) == ("fault", "stale", None)


def test_without_limits_nothing_turns_stale():
    book = AlarmBook([WATER])
    book.feed(rd(45, 0))
    assert book.tick(1000.0) == []


def test_the_limit_is_stale_after_polls_plus_one_worst_round_of_the_bus(tmp_path):
    from gateway.acquire.device import Device
    from gateway.acquire.quality import stale_limits
    from gateway.config import load_config
    from tests.daemonkit import write_config

    cfg = load_config(write_config(tmp_path, "gw", 1502, hydrant=True))
    bus = cfg.buses["garage"]
    worst = sum(Device(s, bus).worst_poll_s() for s in cfg.sensors.values())
    limits = stale_limits(cfg)
    assert limits[KEY] == 3 * 0.1 + worst  # default stale_after = 3 polls of 0.1 s
    text = open(tmp_path / "gateway.toml").read().replace('name = "hydrant-3"', 'name = "hydrant-3"\nstale_after_s = 7')
    (tmp_path / "gateway.toml").write_text(text)
    assert stale_limits(load_config(str(tmp_path / "gateway.toml")))[("hydrant-3", "pressure")] == 7.0
