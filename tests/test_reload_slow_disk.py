"""A reload while a red alarm sounds and the SD card is slow (the old recorder takes 3 s to commit
and stop): the relay never drops, and readings flow again on the new config at once, not after the
slow commit (issue 11: "with a 3 s slow SD commit it stays silent 3 s"). In-process, through the
process side's own reload step, with the sim GPIO and a SimBus slave."""

from __future__ import annotations

import time

from drivers.gpio.sim import SimGpio
from drivers.sim.modbus_device import SimBus
from gateway.config import load_config
from gateway.record.recorder import Recorder
from gateway.service.daemon import Daemon
from gateway.service.process import CurrentDaemon, _reload
from tests.daemonkit import SIREN_PIN, write_config
from tests.ptys import wait_until

SLOW_S = 3.0


def test_a_reload_with_a_slow_sd_commit_keeps_the_siren_and_the_readings(tmp_path, monkeypatch):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        path = write_config(tmp_path, "slow-gw", sim.port, above={"red": 40})
        cfg = load_config(path)
        sim.add_device(1, cfg.sensors["garage-b2-water"].profile, {"level": 45.0})
        pins = SimGpio()
        d = Daemon(cfg, gpio=pins).start()
        try:
            wait_until(lambda: pins.level(SIREN_PIN) == 0, timeout=10, what="siren ON for red")
            real_stop = Recorder.stop

            def slow_stop(self, *a, **k):
                time.sleep(SLOW_S)  # the SD card's last commit (this is the fault, not a wait)
                return real_stop(self, *a, **k)

            monkeypatch.setattr(Recorder, "stop", slow_stop)
            open(path, "a").write("\n# reloaded\n")
            new = load_config(path)
            t0 = time.time()
            d, _ = _reload(d, new, lambda c: Daemon(c, gpio=pins), CurrentDaemon(d), None, [])
            took = time.time() - t0
            assert d.cfg.text_hash == new.text_hash and took >= SLOW_S  # the slow stop was on the path
            drops = [e for e in pins.history(SIREN_PIN) if e["t"] >= t0 and e["value"] == 1]
            assert drops == [], f"the siren dropped during the reload: {drops}"
            # the new bus loop polled (every 0.1 s) while the old recorder was still committing
            polls = d.acquisition.stats()["garage-b2-water"].polls
            assert polls >= 10, f"only {polls} polls: readings waited for the slow commit"
            assert [a["level"] for a in d.status()["alarms"]] == ["red"]
        finally:
            d.stop()
    assert pins.level(SIREN_PIN) == 1  # a real stop switches it off
