"""Dry contacts on a `gpio` bus: a water-immersion probe on a BCM pin (RPi.GPIO is simulated by the
sim backend, as for the relays) is debounced, read as 1/0, raises its rule's alarm, and a pin that
cannot be read is a fault; the config takes the pin, its resistor and active level, and refuses a
pin clash, a unit on a gpio bus and a profile that is not a contact."""

from __future__ import annotations

import time

import pytest

from drivers.gpio.sim import SimGpio
from gateway.acquire import Acquisition
from gateway.acquire.contacts import ContactLoop
from gateway.config import ConfigError, load_config
from gateway.decide import AlarmBook
from tests.ptys import wait_until

SITE = '''
[gateway]
id = "contacts"
data_dir = "./var"

[buses.contacts]
type = "gpio"

[[sensors]]
name = "b2-immersion"
bus = "contacts"
profile = "water-immersion-contact"
pin = 5
debounce_ms = 100
poll_s = 0.5

[[sensors]]
name = "lobby-call-point"
bus = "contacts"
profile = "manual-call-point"
pin = 6
active_low = false
pull_up = false

[outputs.garage-siren]
pin = 17
pattern = { red = "steady" }

[[rules]]
sensor = "b2-immersion"
point = "wet"
equals = { red = 1 }
sound = ["garage-siren"]
'''


def load(tmp_path, text=SITE):
    (tmp_path / "g.toml").write_text(text)
    return load_config(str(tmp_path / "g.toml"))


def test_the_config_names_pins_and_the_summary_shows_them(tmp_path):
    cfg = load(tmp_path)
    s = cfg.sensors["b2-immersion"]
    assert (s.pin, s.active_low, s.pull_up, s.debounce_ms, s.unit) == (5, True, True, 100, None)
    c = cfg.sensors["lobby-call-point"]
    assert (c.pin, c.active_low, c.pull_up) == (6, False, False)


@pytest.mark.parametrize("old,new,expected", [
    ("pin = 5\n", "pin = 17\n", "pin 17 is used by both outputs.garage-siren and sensors b2-immersion"),
    ("pin = 5\n", "pin = 5\nunit = 3\n", "unit: not allowed on a gpio bus (a contact on a pin has no Modbus unit id)"),
    ('profile = "water-immersion-contact"', 'profile = "relay-di-8ch"', "is not a contact profile"),
    ("pin = 5\n", "", "[sensors #1] pin: is required"),
    ('type = "gpio"', 'type = "gpio"\nport = "/dev/ttyAMA0"', "port: not for a gpio bus"),
])
def test_contact_mistakes(tmp_path, old, new, expected):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, SITE.replace(old, new, 1))
    assert expected in str(e.value), str(e.value)


def test_a_contact_is_debounced_read_and_decided(tmp_path):
    cfg = load(tmp_path)
    pins = SimGpio()
    got = []
    acq = Acquisition(cfg, got.append, gpio=pins)
    [loop] = acq.loops
    assert isinstance(loop, ContactLoop)
    acq.start()
    try:
        last = lambda name: next((r for r in reversed(got) if r.sensor == name), None)  # noqa: E731
        wait_until(lambda: last("b2-immersion") and last("lobby-call-point"), 5, what="first readings")
        assert (last("b2-immersion").value, last("lobby-call-point").value) == (0, 0)
        n = len(got)
        pins.set_input(5, 0)  # a 30 ms splash: shorter than the 100 ms debounce
        time.sleep(0.03)
        pins.set_input(5, 1)
        time.sleep(0.2)
        assert all(r.value == 0 for r in got[n:] if r.sensor == "b2-immersion")
        t0 = time.monotonic()
        pins.set_input(5, 0)  # water on the probe: the contact closes to ground
        wait_until(lambda: last("b2-immersion").value == 1, 2, what="wet")
        took = time.monotonic() - t0
        assert 0.09 <= took < 0.3, took  # the debounce, then at once (not at the next poll_s)
        pins.set_input(6, 1)  # active-high call point pressed
        wait_until(lambda: last("lobby-call-point").value == 1, 2, what="pressed")
    finally:
        acq.stop()
    book = AlarmBook(cfg.rules)
    assert [t.level for t in book.feed(last("b2-immersion"))] == ["red"]
    # a pin that cannot be read is a fault, never a 0
    pins.cleanup()
    loop = ContactLoop(cfg.buses["contacts"], [cfg.sensors["b2-immersion"]], SimGpio(), got.append)
    loop.gpio = _Broken()
    [r] = loop.scan(loop.contacts[0], time.monotonic())
    assert r.quality == "fault" and r.value is None and "GPIO5 cannot be read" in r.fault


class _Broken:
    def read_input(self, pin):
        raise RuntimeError("GPIO not allocated")
