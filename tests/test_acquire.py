"""Acquisition end to end: the per-bus poll loops against real simulated devices (pymodbus
servers over TCP and over a socat pty pair, an A02YYUW emitter on a pty)."""

from __future__ import annotations

import textwrap
import threading

import pytest

from drivers.sim.modbus_device import SimBus
from drivers.sim.serial_emitter import A02yyuwEmitter
from gateway.acquire import Acquisition
from gateway.config import load_config
from gateway.reading import FAULT, GOOD, STALE
from tests.ptys import PtyPair, wait_until


def _config(tmp_path, body: str):
    path = tmp_path / "gateway.toml"
    path.write_text(textwrap.dedent("""
        [gateway]
        id = "test-gw"
        data_dir = "./var"
    """) + textwrap.dedent(body))
    return load_config(str(path))


class Collector:
    def __init__(self):
        self.readings = []
        self.lock = threading.Lock()

    def __call__(self, r):
        with self.lock:
            self.readings.append(r)

    def of(self, sensor, point=None, quality=None):
        with self.lock:
            return [r for r in self.readings if r.sensor == sensor and (point is None or r.point == point)
                    and (quality is None or r.quality == quality)]


@pytest.fixture
def tcp_bus():
    with SimBus.tcp("127.0.0.1", 0) as sim:
        yield sim


def _tcp_cfg(tmp_path, port, n=1, poll=0.05, timeout=1.0):
    sensors = "".join(f"""
        [[sensors]]
        name = "level-{i}"
        bus = "plant"
        unit = {i}
        profile = "water-level-rs485"
        poll_s = {poll}
        timeout_s = {timeout}
    """ for i in range(1, n + 1))
    return _config(tmp_path, f"""
        [buses.plant]
        type = "tcp"
        host = "127.0.0.1"
        port = {port}
    """ + sensors)


def test_read_once_over_tcp_gives_the_simulated_value(tmp_path):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        cfg = _tcp_cfg(tmp_path, sim.port)
        sim.add_device(1, cfg.sensors["level-1"].profile, {"level": 17.5})
        [r] = Acquisition(cfg).read_once()
    assert (r.sensor, r.point, r.value, r.unit, r.quality) == ("level-1", "level", 17.5, "cm", GOOD)


def test_poll_loop_follows_value_changes_and_reads_adjacent_registers_in_one_request(tmp_path):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        cfg = _tcp_cfg(tmp_path, sim.port)
        sim.add_device(1, cfg.sensors["level-1"].profile, {"level": 3.0})
        got = Collector()
        acq = Acquisition(cfg, got)
        acq.start()
        try:
            wait_until(lambda: got.of("level-1", quality=GOOD), what="first good reading")
            sim.set_value(1, "level", 42.0)
            wait_until(lambda: any(r.value == 42.0 for r in got.of("level-1")), what="new value")
        finally:
            acq.stop()
        # unit, decimals and value (0x0002..0x0004) come in one FC03 request per poll
        polls = acq.stats()["level-1"].polls
        assert sim.requests(1) >= polls  # a retry on a loaded machine adds a request, never a poll
        reqs = [s for s in sim.served if s.unit == 1]
        assert all((s.function, s.address, s.count) == (3, 2, 3) for s in reqs)


@pytest.mark.parametrize("behaviour,arg,reason", [
    ("dead", None, "timeout"),
    ("exception", 2, "exception"),
    ("garbage", None, None),
    ("short", None, "bytecount"),
])
def test_a_misbehaving_device_is_a_fault_never_a_value_and_the_others_keep_reading(tmp_path, behaviour, arg, reason):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        cfg = _tcp_cfg(tmp_path, sim.port, n=2, timeout=0.3)
        for u in (1, 2):
            sim.add_device(u, cfg.sensors[f"level-{u}"].profile, {"level": 10.0 * u})
        sim.behave(2, behaviour, arg)
        readings = Acquisition(cfg).read_once()
    by = {r.sensor: r for r in readings}
    assert by["level-1"].quality == GOOD and by["level-1"].value == 10.0
    bad = by["level-2"]
    assert bad.quality == FAULT and bad.value is None and bad.fault
    if reason:
        assert bad.fault.startswith(reason), bad.fault


def test_out_of_range_value_is_a_fault(tmp_path):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        cfg = _tcp_cfg(tmp_path, sim.port)
        # 3000.0 cm: the registers hold it, the profile's plausible range (-10..1000) does not
        sim.add_device(1, cfg.sensors["level-1"].profile, {"level": 3000.0})
        [r] = Acquisition(cfg).read_once()
    assert r.quality == FAULT and r.value is None and r.fault.startswith("range")


def test_a_dead_device_is_backed_off_and_the_others_keep_their_cadence(tmp_path):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        cfg = _tcp_cfg(tmp_path, sim.port, n=5, poll=0.05, timeout=0.2)
        for u in range(1, 6):
            sim.add_device(u, cfg.sensors[f"level-{u}"].profile, {"level": 5.0})
        sim.behave(3, "dead")
        got = Collector()
        acq = Acquisition(cfg, got)
        acq.start()
        try:
            wait_until(lambda: all(len(got.of(f"level-{u}", quality=GOOD)) >= 40 for u in (1, 2, 4, 5)),
                       timeout=30, what="40 good polls of each live device")
        finally:
            acq.stop()
    stats = acq.stats()["level-3"]
    assert stats.failures.get("timeout", 0) >= 2
    assert not got.of("level-3", quality=GOOD)
    # A live device was polled >= 40 times; the silent one, probed with backoff and without
    # retries, far less: it no longer costs the bus 2 timeouts every cycle.
    assert sim.requests(3) < 20, sim.requests(3)


def test_rtu_over_a_pty_pair_with_a_port_that_vanishes_and_returns(tmp_path):
    pty = PtyPair(tmp_path).start()
    cfg = _config(tmp_path, f"""
        [buses.rs485]
        type = "rtu"
        port = "{pty.a}"
        baudrate = 9600

        [[sensors]]
        name = "stair-smoke"
        bus = "rs485"
        unit = 5
        profile = "smoke-rs485"
        poll_s = 0.05
    """)

    def serve():
        sim = SimBus.rtu(pty.b, 9600)
        sim.add_device(5, cfg.sensors["stair-smoke"].profile, {"status": 1, "faults": 0b10, "concentration": 1.5})
        return sim.start()

    sim = serve()
    got = Collector()
    acq = Acquisition(cfg, got)
    acq.start()
    try:
        wait_until(lambda: got.of("stair-smoke", "status", GOOD), what="smoke status over RTU")
        r = got.of("stair-smoke", "status", GOOD)[-1]
        assert r.value == 1
        assert got.of("stair-smoke", "faults", GOOD)[-1].value == 0b10
        assert got.of("stair-smoke", "concentration", GOOD)[-1].value == pytest.approx(1.5)

        sim.stop()
        pty.vanish()  # the USB adapter is pulled out
        wait_until(lambda: got.of("stair-smoke", "status", FAULT), what="a port fault")
        n_good = len(got.of("stair-smoke", "status", GOOD))

        pty.restore()
        sim = serve()
        wait_until(lambda: len(got.of("stair-smoke", "status", GOOD)) > n_good, timeout=20,
                   what="readings after the port returned")
    finally:
        acq.stop()
        sim.stop()
        pty.stop()


def test_missing_port_at_start_is_a_fault_and_the_gateway_keeps_trying(tmp_path):
    cfg = _config(tmp_path, f"""
        [buses.rs485]
        type = "rtu"
        port = "{tmp_path}/ttyNOPE"

        [[sensors]]
        name = "w"
        bus = "rs485"
        unit = 1
        profile = "water-level-rs485"
        poll_s = 0.05
    """)
    got = Collector()
    acq = Acquisition(cfg, got)
    acq.start()
    try:
        wait_until(lambda: len(got.of("w", quality=FAULT)) >= 2, what="repeated port faults")
    finally:
        acq.stop()
    assert "ttyNOPE" in got.of("w")[0].fault


def test_a02yyuw_on_a_pty(tmp_path):
    with PtyPair(tmp_path) as pty:
        cfg = _config(tmp_path, f"""
            [buses.ultrasonic]
            type = "serial"
            port = "{pty.a}"

            [[sensors]]
            name = "pit"
            bus = "ultrasonic"
            profile = "a02yyuw-ultrasonic"
            poll_s = 0.05
        """)
        with A02yyuwEmitter(pty.b, 1234, hz=50) as em:
            got = Collector()
            acq = Acquisition(cfg, got)
            acq.start()
            try:
                wait_until(lambda: any(r.value == 1234 for r in got.of("pit", quality=GOOD)), what="distance")
                em.behave("bad_checksum")
                wait_until(lambda: got.of("pit", quality=FAULT), what="checksum fault")
                assert got.of("pit", quality=FAULT)[-1].fault.startswith(("checksum", "timeout"))
            finally:
                acq.stop()


def test_latest_marks_old_values_stale(tmp_path):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        cfg = _tcp_cfg(tmp_path, sim.port, poll=1.0)
        sim.add_device(1, cfg.sensors["level-1"].profile, {"level": 3.0})
        acq = Acquisition(cfg)
        acq.read_once()
    [fresh] = acq.latest()
    from gateway.acquire.quality import stale_limits

    # stale_after defaults to 3 polls plus one worst round of the bus (gateway.acquire.quality)
    limit = stale_limits(cfg)[("level-1", "level")]
    assert 3.0 < limit <= 10.0
    [still] = acq.latest(now=fresh.mono + limit - 0.1)
    [old] = acq.latest(now=fresh.mono + limit + 0.1)
    assert fresh.quality == GOOD and still.quality == GOOD and old.quality == STALE and old.value == 3.0
