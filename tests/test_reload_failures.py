"""A reload that fails half-way (found by review after the merges): the relays the running loop
drives are never cleaned up by the half-started successor, and the old daemon's outbox (held
exclusively) is let go, so the rollback daemon can open it. In-process through the process side's own
reload step, with the sim GPIO and a SimBus slave."""

from __future__ import annotations

import time

import pytest

from drivers.gpio.sim import SimGpio
from drivers.sim.modbus_device import SimBus
from gateway.config import load_config
from gateway.service.daemon import Daemon
from gateway.service.process import CurrentDaemon, _reload
from tests.daemonkit import SIREN_PIN, write_config
from tests.ptys import wait_until


@pytest.mark.parametrize("where", ["outlets", "acquisition"])
def test_a_reload_failing_half_way_keeps_the_siren_and_the_outbox(tmp_path, monkeypatch, where):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        path = write_config(tmp_path, "fail-gw", sim.port, above={"red": 40})
        cfg = load_config(path)
        sim.add_device(1, cfg.sensors["garage-b2-water"].profile, {"level": 45.0})
        pins = SimGpio()
        d = Daemon(cfg, gpio=pins).start()
        try:
            wait_until(lambda: pins.level(SIREN_PIN) == 0, timeout=10, what="siren ON for red")
            open(path, "a").write("\n# reloaded\n")
            new = load_config(path)
            failed = []

            def boom(*a, **k):
                if not failed:  # only the new config's start: the rollback must work
                    failed.append(1)
                    raise RuntimeError(f"injected failure in {where}")
                return real(*a, **k)

            if where == "outlets":
                import gateway.act.outlets as outlets
                real = outlets.modbus_outlets
                monkeypatch.setattr(outlets, "modbus_outlets", boom)
            else:
                real = Daemon._start_acquisition
                monkeypatch.setattr(Daemon, "_start_acquisition", lambda self: boom(self))
            t0 = time.time()
            d, _ = _reload(d, new, lambda c: Daemon(c, gpio=pins), CurrentDaemon(d), None, [])
            assert failed and d.cfg.text_hash == cfg.text_hash  # rolled back to the running config
            drops = [e for e in pins.history(SIREN_PIN) if e["t"] >= t0 and e["value"] == 1]
            assert drops == [], f"the siren dropped during the failed reload: {drops}"
            assert pins.level(SIREN_PIN) == 0
            # the rollback daemon owns a working outbox (the old one let go of its exclusive lock)
            wait_until(lambda: d.outbox is not None and d.outbox.stats()["state"] == "ok", timeout=10,
                       what="the rollback's outbox open")
            d.record("audit", {"action": "probe"})
            assert d.recorder.flush(10) and d.outbox.stats()["write_errors"] == 0
        finally:
            d.stop()
    assert pins.level(SIREN_PIN) == 1
