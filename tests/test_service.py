"""The health probe a config push waits on: "the daemon running *this* config is fully up"."""

from drivers.gpio.sim import SimGpio
from drivers.sim.modbus_device import SimBus
from gateway.config import load_config
from gateway.service.daemon import Daemon
from gateway.service.process import CurrentDaemon
from tests.daemonkit import write_config
from tests.mosquitto import free_port
from tests.ptys import wait_until


def test_healthy_only_when_every_bus_is_up_for_that_config(tmp_path):
    (tmp_path / "down").mkdir()
    (tmp_path / "up").mkdir()
    dead_port = free_port()  # nobody listens: the bus cannot open
    cfg = load_config(str(write_config(tmp_path / "down", "svc-gw", dead_port)))
    d = Daemon(cfg, gpio=SimGpio()).start()
    try:
        cur = CurrentDaemon(d)
        wait_until(lambda: d.acquisition.loops[0].port_error, timeout=10, what="the bus fault")
        assert not cur.healthy(cfg.text_hash)  # running, but the bus is down
    finally:
        d.stop()

    with SimBus.tcp("127.0.0.1", 0) as sim:
        cfg = load_config(str(write_config(tmp_path / "up", "svc-gw", sim.port)))
        sim.add_device(1, cfg.sensors["garage-b2-water"].profile, {"level": 2.0})
        d = Daemon(cfg, gpio=SimGpio()).start()
        try:
            cur = CurrentDaemon(d)
            wait_until(lambda: cur.healthy(cfg.text_hash), timeout=10, what="healthy")
            assert not cur.healthy("another config's hash")
        finally:
            d.stop()
