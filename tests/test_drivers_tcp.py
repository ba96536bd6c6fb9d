"""TcpLink against pymodbus's TCP server (SimBus) with several units behind one port, as in
a plant room with an RTU-to-TCP gateway."""

from __future__ import annotations

import socket
import time

import pytest

from drivers.sim import SimBus
from drivers.tcp import TcpLink
from gateway.errors import BusError, DeviceFault
from test_drivers_sim import no_leftover_threads, shipped_profile  # noqa: F401  (fixture)

TIMEOUT, RETRIES = 0.2, 1
MARGIN = 0.25


@pytest.fixture
def sim():
    bus = SimBus.tcp()
    bus.add_device(1, shipped_profile("hydrant-pressure-rs485"), {"pressure": 0.35})
    bus.add_device(2, shipped_profile("smoke-rs485"), {"status": 0, "concentration": 0.4})
    with bus:
        yield bus


@pytest.fixture
def link(sim):
    with TcpLink("pumproom", *sim.address) as lk:
        yield lk


def read(link, unit=1, address=0, count=5, **kw):
    kw.setdefault("timeout", TIMEOUT)
    kw.setdefault("retries", RETRIES)
    return link.read_registers(unit, 3, address, count, **kw)


def test_reads_units_behind_one_port(link):
    assert read(link, 1) == [1, 3, 3, 3, 350]
    assert read(link, 2, count=3) == [0, 0, 40]
    assert link.read_registers(1, 4, 4, 1, timeout=TIMEOUT, retries=0) == [350]


def test_unit_the_gateway_cannot_reach_is_exception_11(link):
    with pytest.raises(DeviceFault) as err:
        read(link, 9)
    assert err.value.reason == "exception"
    assert err.value.detail.startswith("code 11 ")


@pytest.mark.parametrize("behaviour, arg, reason, tries", [
    ("dead", None, "timeout", 2),
    ("slow", 1.0, "timeout", 2),
    ("garbage", None, "function", 2),  # a wrong frame: the connection is reset and the request asked again
    ("exception", 6, "exception", 1),
    ("short", None, "bytecount", 2),
])
def test_faulty_unit_gives_reason_within_bound(sim, link, behaviour, arg, reason, tries):
    sim.behave(1, behaviour, arg)
    before = sim.requests(1)
    t0 = time.monotonic()
    with pytest.raises(DeviceFault) as err:
        read(link, 1)
    assert err.value.reason == reason
    assert time.monotonic() - t0 < TIMEOUT * (1 + RETRIES) + MARGIN
    assert sim.requests(1) - before == tries
    if reason == "exception":
        assert err.value.detail == "code 6 server device busy"
    # the neighbour behind the same port is unaffected, and the unit recovers
    assert read(link, 2, count=1) == [0]
    sim.behave(1, "normal")
    assert read(link, 1)[4] == 350
    assert link.is_open


def test_a_dead_unit_does_not_cut_the_others_off(sim, link):
    # each timeout resets the connection (a late reply must not be read as the next one), and
    # the endpoint takes the new one at once: the units behind it never notice
    sim.behave(1, "dead")
    for _ in range(6):
        with pytest.raises(DeviceFault, match="timeout"):
            read(link, 1, timeout=0.05, retries=0)
        assert link.is_open
    assert read(link, 2, count=1) == [0]
    assert link.resets == 6


def test_late_reply_is_not_taken_for_the_next_one(sim, link):
    sim.behave(1, "slow", 0.3)
    old = link._sock
    with pytest.raises(DeviceFault, match="timeout"):
        read(link, 1, timeout=0.05, retries=0)
    sim.behave(1, "normal")
    sim.set_value(1, "pressure", 0.12)
    # the late reply (350) would arrive on the connection the timeout dropped
    assert link._sock is not old
    assert read(link, 1, timeout=0.5, retries=0)[4] == 120


def test_refused_connection_says_where():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    link = TcpLink("pumproom", "127.0.0.1", port, connect_timeout=0.5)
    with pytest.raises(BusError, match=f"127.0.0.1:{port}"):
        link.open()
    assert not link.is_open
    with pytest.raises(BusError, match="not open"):
        read(link)


def test_server_gone_is_a_bus_error_then_open_works_again():
    water = shipped_profile("water-level-rs485")
    sim = SimBus.tcp()
    sim.add_device(1, water, {"level": 5.0})
    sim.start()
    host, port = sim.address
    link = TcpLink("pumproom", host, port, connect_timeout=0.5)
    try:
        link.open()
        assert read(link)[4] == 50
        sim.stop()  # the plant-room switch reboots
        with pytest.raises(BusError, match=f"{host}:{port}"):
            read(link)
        assert not link.is_open
        with pytest.raises(BusError):
            link.open()
        sim = SimBus.tcp(port=port)
        sim.add_device(1, water, {"level": 6.0})
        sim.start()
        link.open()
        assert read(link)[4] == 60
    finally:
        link.close()
        sim.stop()
