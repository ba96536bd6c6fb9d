"""The simulated devices: register images of the shipped profiles (checked against the
acquisition's own decoder), SimBus lifecycle and live control, emitters."""

from __future__ import annotations

import threading
import time
import tomllib
from pathlib import Path

import pytest

from drivers.sim import A02yyuwEmitter, LineEmitter, SimBus, device_registers, encode_point
from drivers.sim.registers import choose_decimals
from drivers.tcp import TcpLink
from gateway.acquire.decode import decode_point
from gateway.config.model import Point, Profile
from gateway.errors import BusError
from ptys import PtyPair, wait_until

PROFILES = Path(__file__).resolve().parent.parent / "gateway" / "profiles"


def shipped_profile(name: str) -> Profile:
    """A shipped profile, read straight from its TOML (independent of gateway.config)."""
    data = tomllib.loads((PROFILES / f"{name}.toml").read_text())
    points = []
    for p in data.pop("points", []):
        if "unit_codes" in p:
            p["unit_codes"] = {int(k): v for k, v in p["unit_codes"].items()}
        if "states" in p:
            p["states"] = {int(k): v for k, v in p["states"].items()}
        if "range" in p:
            p["range"] = tuple(p["range"])
        points.append(Point(**p))
    return Profile(points=tuple(points), **data)


@pytest.fixture(autouse=True)
def no_leftover_threads():
    before = set(threading.enumerate())
    yield
    wait_until(lambda: set(threading.enumerate()) <= before, timeout=5,
               what=f"threads to end: {set(threading.enumerate()) - before}")


# -- register images ---------------------------------------------------------------------
def test_water_level_image_is_a_qdy30a():
    image = device_registers(shipped_profile("water-level-rs485"), {"level": 123.4}, 7)
    # address, baud code 3 (9600), unit code 1 (cm), 1 decimal, value 1234
    assert image == {0: 7, 1: 3, 2: 1, 3: 1, 4: 1234}


def test_hydrant_pressure_uses_three_decimals_in_mpa():
    image = device_registers(shipped_profile("hydrant-pressure-rs485"), {"pressure": 0.35}, 2,
                             baudrate=19200)
    assert image == {0: 2, 1: 4, 2: 3, 3: 3, 4: 350}


def test_smoke_image_has_no_address_register_touch():
    image = device_registers(shipped_profile("smoke-rs485"),
                             {"status": 1, "faults": {"low_battery": True, "tamper": True},
                              "concentration": 2.5}, 5)
    assert image == {0: 1, 1: 0b110, 2: 250}


def test_decimals_shrink_until_the_value_fits():
    level = shipped_profile("water-level-rs485").points[0]
    assert choose_decimals(level, 12.3) == 1
    assert choose_decimals(level, 4000.0) == 0  # 40000 would overflow int16
    assert encode_point(level, 4000.0) == {3: 0, 4: 4000, 2: 1}
    with pytest.raises(ValueError):
        encode_point(level, 40000.0)


@pytest.mark.parametrize("point, value", [
    (Point("f", register=10, type="f32"), 123456.0),
    (Point("f", register=10, type="f32", word_order="CDAB"), -3.5),
    (Point("u", register=10, type="u32", word_order="CDAB"), 3_000_000_000),
    (Point("i", register=10, type="i32"), -70000),
    (Point("i", register=10, type="i16", scale=0.1, offset=-20.0), -7.5),
    (Point("u", register=10, type="u16", scale=0.01), 2.5),
])
def test_encode_decode_round_trip(point, value):
    # the acquisition's decoder is written independently: each checks the other
    assert decode_point(point, encode_point(point, value)) == pytest.approx(value)


def test_float_word_order_follows_field_notes():
    abcd = encode_point(Point("f", register=0, type="f32"), 123456.0)
    cdab = encode_point(Point("f", register=0, type="f32", word_order="CDAB"), 123456.0)
    assert [abcd[0], abcd[1]] == [0x47F1, 0x2000]
    assert [cdab[0], cdab[1]] == [0x2000, 0x47F1]


def test_bad_values_are_refused():
    smoke = shipped_profile("smoke-rs485")
    with pytest.raises(ValueError, match="unknown bits"):
        encode_point(smoke.points[1], {"on_fire": True})
    with pytest.raises(ValueError, match="no point"):
        device_registers(smoke, {"temperature": 20}, 5)
    with pytest.raises(ValueError, match="not a Modbus profile"):
        device_registers(shipped_profile("a02yyuw-ultrasonic"), {}, 1)


# -- SimBus ------------------------------------------------------------------------------
def test_tcp_sim_starts_stops_and_its_port_is_reusable_at_once():
    first = SimBus.tcp()
    first.add_device(1, shipped_profile("smoke-rs485"), {"status": 0})
    with first:
        host, port = first.address
        assert port != 0 and first.running
        with TcpLink("t", host, port) as link:
            assert link.read_registers(1, 3, 0, 3, timeout=0.5, retries=0) == [0, 0, 0]
    assert not first.running
    again = SimBus.tcp(port=port)
    again.add_device(1, shipped_profile("smoke-rs485"), {"status": 1})
    with again, TcpLink("t", host, port) as link:
        assert link.read_registers(1, 3, 0, 1, timeout=0.5, retries=0) == [1]


def test_busy_port_is_a_bus_error():
    first = SimBus.tcp()
    first.add_device(1, None, registers={0: 1})
    with first:
        clash = SimBus.tcp(port=first.address[1])
        clash.add_device(1, None, registers={0: 1})
        with pytest.raises(BusError, match="cannot listen"):
            clash.start()
        assert not clash.running


def test_set_value_add_device_and_record_live():
    sim = SimBus.tcp()
    water = shipped_profile("water-level-rs485")
    sim.add_device(1, water, {"level": 10.0})
    with sim, TcpLink("t", *sim.address) as link:
        sim.set_value(1, "level", 250.5)
        assert link.read_registers(1, 3, 3, 2, timeout=0.5, retries=0) == [1, 2505]
        sim.add_device(4, shipped_profile("smoke-rs485"), {"status": 3})  # while running
        assert link.read_registers(4, 3, 0, 1, timeout=0.5, retries=0) == [3]
        assert sim.requests(1) == 1 and sim.requests(4) == 1
        assert [(s.unit, s.function, s.address, s.count) for s in sim.served] == [(1, 3, 3, 2), (4, 3, 0, 1)]
    with pytest.raises(ValueError, match="no point"):
        sim.set_value(1, "pressure", 1.0)
    with pytest.raises(ValueError, match="already"):
        sim.add_device(1, water)


def test_a_32_bit_value_never_reads_torn():
    sim = SimBus.tcp()
    profile = Profile("meter", "modbus", points=(Point("flow", register=0, type="f32"),))
    sim.add_device(1, profile, {"flow": 1.0})
    stop = threading.Event()

    def flip():
        while not stop.is_set():
            for v in (1.0, -123456.0):
                sim.set_value(1, "flow", v)

    flipper = threading.Thread(target=flip)
    with sim, TcpLink("t", *sim.address) as link:
        flipper.start()
        try:
            seen = {decode_point(profile.points[0], dict(enumerate(
                link.read_registers(1, 3, 0, 2, timeout=0.5, retries=0)))) for _ in range(200)}
        finally:
            stop.set()
            flipper.join()
    assert seen <= {1.0, -123456.0}


def test_behaviours_are_checked():
    sim = SimBus.tcp()
    sim.add_device(1, None, registers={0: 1})
    for bad in [("sleepy", None), ("slow", None), ("exception", 0), ("bad_crc", None)]:
        with pytest.raises(ValueError):
            sim.behave(1, *bad)
    with pytest.raises(ValueError, match="no unit 2"):
        sim.behave(2, "dead")


def test_wire_timing_holds_the_reply_for_the_wire_time(tmp_path):
    from drivers.rtu import RtuLink

    with PtyPair(tmp_path) as pty:
        sim = SimBus.rtu(pty.b, 9600, wire_timing=True)
        sim.add_device(1, None, registers={a: a for a in range(10)})
        with sim, RtuLink("rs485", pty.a) as link:
            link.read_registers(1, 3, 0, 10, timeout=0.5, retries=0)
            t0 = time.monotonic()
            assert link.read_registers(1, 3, 0, 10, timeout=0.5, retries=0) == list(range(10))
            # (8 + 25) chars x 11 bits at 9600 baud + one t3.5 = 41.8 ms; a bare pty takes < 1 ms
            assert time.monotonic() - t0 >= 0.0415


# -- emitters ----------------------------------------------------------------------------
def test_emitters_stream_and_stop(tmp_path):
    import serial

    with PtyPair(tmp_path) as pty, A02yyuwEmitter(pty.b, 1234, hz=50) as emitter:
        with serial.serial_for_url(pty.a, timeout=1) as port:
            wait_until(lambda: emitter.frames >= 3, what="three frames")
            data = port.read(port.in_waiting)
            assert bytes([0xFF, 0x04, 0xD2, (0xFF + 0x04 + 0xD2) & 0xFF]) in data
        with pytest.raises(ValueError):
            emitter.behave("bad_line")
    with pytest.raises(KeyError):
        LineEmitter("/dev/null", "level={level}", {"depth": 1.0})
