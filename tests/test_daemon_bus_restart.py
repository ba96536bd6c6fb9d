"""A bus loop that dies (a bug outside its per-poll guard) while an alarm is active: its points
turn stale in the alarm book (a fault event, the alarm held), the daemon restarts the loop and says
so (a fault event for the bus, then recovered, and a count in status); readings flow again.
In-process: the real Daemon with a SimBus Modbus TCP slave and the sim GPIO."""

from __future__ import annotations

import pytest

from drivers.gpio.sim import SimGpio
from drivers.sim.modbus_device import SimBus
from gateway.config import load_config
from gateway.service.daemon import Daemon
from tests.daemonkit import SIREN_PIN, write_config
from tests.ptys import wait_until


@pytest.fixture
def daemon(tmp_path):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        path = write_config(tmp_path, "restart-gw", sim.port, above={"red": 40})
        cfg = load_config(path)
        sim.add_device(1, cfg.sensors["garage-b2-water"].profile, {"level": 45.0})
        pins = SimGpio()
        d = Daemon(cfg, gpio=pins).start()
        try:
            yield d, pins
        finally:
            d.stop()


def _events(d, **match):
    return [e for e in list(d.events) if all(e.get(k) == v for k, v in match.items())]


def test_a_dead_bus_loop_goes_stale_holds_the_alarm_and_is_restarted(daemon):
    d, pins = daemon
    wait_until(lambda: pins.level(SIREN_PIN) == 0, timeout=10, what="siren ON for red")
    [lp] = d.acquisition.loops

    def bug(dev):
        raise SystemExit("a bug no per-poll guard catches")  # not an Exception: the thread ends

    lp.poll = bug
    wait_until(lambda: _events(d, type="fault", quality="stale"), timeout=10, what="the point stale")
    st = d.status()
    assert st["points"]["garage-b2-water.level"]["quality"] == "stale"
    assert [a["level"] for a in st["alarms"]] == ["red"] and pins.level(SIREN_PIN) == 0  # held, still sounding
    wait_until(lambda: _events(d, type="fault", bus="garage", state="fault"), timeout=10,
               what="the bus loop's death reported")
    del lp.poll  # the "bug" goes away; the restarted loop polls again
    wait_until(lambda: _events(d, type="fault", sensor="garage-b2-water", state="recovered"), timeout=10,
               what="readings again after the restart")
    assert d.status()["points"] == {}
    assert d.status()["bus_restarts"]["garage"] >= 1
    assert "SystemExit" in _events(d, type="fault", bus="garage", state="fault")[0]["reason"]
    assert pins.values(SIREN_PIN)[-1] == 0 and 1 not in pins.values(SIREN_PIN)[1:]  # never dropped
