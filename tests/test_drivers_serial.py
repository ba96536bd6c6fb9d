"""SerialSensorPort against streaming emitters on a socat pty pair, and its frame parsers."""

from __future__ import annotations

import re
import time

import pytest

from drivers.serial_sensor import SerialSensorPort, parse_a02yyuw, parse_lines
from drivers.sim import A02yyuwEmitter, LineEmitter, a02yyuw_frame
from gateway.errors import BusError, DeviceFault
from ptys import PtyPair, wait_until
from test_drivers_sim import no_leftover_threads  # noqa: F401  (fixture)

LEVEL = r"level=(?P<level>-?\d+(?:\.\d+)?)\s+temp=(?P<temp>-?\d+(?:\.\d+)?)"


@pytest.fixture
def pty(tmp_path):
    with PtyPair(tmp_path) as pair:
        yield pair


@pytest.fixture
def sensor(pty):
    with SerialSensorPort(pty.a, 9600, "N", 8, 1, "a02yyuw", None) as port:
        yield port


# -- the A02YYUW frame parser ------------------------------------------------------------
def test_parser_resynchronises_after_a_bad_checksum():
    bad = bytes([0xFF, 0x01, 0x02, 0x00])
    buf = b"\x13\x37" + bad + a02yyuw_frame(1500) + a02yyuw_frame(0x01FF) + b"\xff\x02"
    frames, nbad, tail = parse_a02yyuw(buf)
    assert [f["distance"] for f in frames] == [1500.0, 511.0]  # L = 0xFF is data, not a start
    assert nbad == 1
    assert tail == b"\xff\x02"  # kept for the next read


def test_parser_finds_a_frame_that_a_bad_one_hides():
    # FF FF 00 FE FD: "FF FF 00 FE" checks out (65280 mm) but no A02YYUW measures that
    # far; the frame starts at the second FF
    buf = bytes([0xFF]) + a02yyuw_frame(0x00FE)
    frames, nbad, _ = parse_a02yyuw(buf)
    assert [f["distance"] for f in frames] == [254.0]


def test_line_parser_takes_named_groups_as_floats():
    pat = re.compile(LEVEL)
    frames, nbad, tail = parse_lines(b"level=12.5 temp=-3\r\nERR\r\nlevel=13.0 temp=4.5\r\nlev", pat)
    assert frames == [{"level": 12.5, "temp": -3.0}, {"level": 13.0, "temp": 4.5}]
    assert nbad == 1 and tail == b"lev"


# -- against a streaming A02YYUW ---------------------------------------------------------
def test_reads_the_distance(pty, sensor):
    with A02yyuwEmitter(pty.b, 1234, hz=20):
        assert sensor.read(timeout=1.0) == {"distance": 1234.0}


def test_returns_the_newest_buffered_frame(pty, sensor):
    with A02yyuwEmitter(pty.b, 500, hz=100) as emitter:
        wait_until(lambda: emitter.frames >= 5, what="old frames to pile up")
        emitter.set_distance(600)
        n = emitter.frames
        wait_until(lambda: emitter.frames >= n + 2, what="new frames")
        # the buffer holds many 500s and then 600s: only the newest counts
        assert sensor.read(timeout=1.0) == {"distance": 600.0}


def test_noise_between_frames_is_skipped(pty, sensor):
    with A02yyuwEmitter(pty.b, 777, hz=50) as emitter:
        emitter.behave("noise")
        for _ in range(5):
            assert sensor.read(timeout=1.0) == {"distance": 777.0}


def test_only_bad_checksums_is_a_checksum_fault(pty, sensor):
    emitter = A02yyuwEmitter(pty.b, 1000, hz=50)
    emitter.behave("bad_checksum")  # from the first frame on
    with emitter:
        t0 = time.monotonic()
        with pytest.raises(DeviceFault) as err:
            sensor.read(timeout=0.3)
        assert err.value.reason == "checksum"
        assert time.monotonic() - t0 < 0.3 + 0.2
        emitter.behave("normal")
        assert wait_until(lambda: _try_read(sensor), what="a good frame") == {"distance": 1000.0}


def test_silent_sensor_is_a_timeout(pty, sensor):
    with A02yyuwEmitter(pty.b, 1000, hz=50) as emitter:
        emitter.behave("silent")
        _drain(sensor)
        t0 = time.monotonic()
        with pytest.raises(DeviceFault) as err:
            sensor.read(timeout=0.2)
        assert err.value.reason == "timeout"
        assert 0.19 <= time.monotonic() - t0 < 0.2 + 0.2


def _try_read(sensor):
    try:
        return sensor.read(timeout=0.2)
    except DeviceFault:
        return None


def _drain(sensor):
    """Swallow frames sent before the sensor went silent."""
    while True:
        try:
            sensor.read(timeout=0.05)
        except DeviceFault:
            return


# -- line sensors ------------------------------------------------------------------------
def test_line_sensor(pty):
    port = SerialSensorPort(pty.a, 9600, "N", 8, 1, "line", LEVEL)
    with port, LineEmitter(pty.b, "level={level:.1f} temp={temp:.1f}",
                           {"level": 12.5, "temp": 21.0}, hz=50) as emitter:
        assert port.read(timeout=1.0) == {"level": 12.5, "temp": 21.0}
        emitter.behave("noise")
        emitter.set_values(level=30.0)
        assert wait_until(lambda: (_try_read(port) or {}).get("level") == 30.0, what="level 30")
        emitter.behave("bad_line")
        _drain_until_fault(port, "frame")


def _drain_until_fault(port, reason):
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            port.read(timeout=0.2)
        except DeviceFault as f:
            assert f.reason == reason
            return
    raise AssertionError(f"no {reason} fault")


def test_line_sensor_needs_named_groups():
    with pytest.raises(ValueError, match="named group"):
        SerialSensorPort("/dev/null", frame="line", pattern=r"\d+")
    with pytest.raises(ValueError, match="frame"):
        SerialSensorPort("/dev/null", frame="modbus")


# -- the port itself ---------------------------------------------------------------------
def test_missing_port_says_which(tmp_path):
    port = SerialSensorPort(str(tmp_path / "ttyUSB0"))
    with pytest.raises(BusError, match="ttyUSB0"):
        port.open()
    with pytest.raises(BusError, match="not open"):
        port.read(timeout=0.1)


def test_port_vanishes_and_returns(pty, sensor):
    with A02yyuwEmitter(pty.b, 1111, hz=50):
        assert sensor.read(timeout=1.0) == {"distance": 1111.0}
        pty.vanish()
        with pytest.raises(BusError, match="ttyA"):
            wait_until(lambda: sensor.read(timeout=0.05) and False, what="BusError")
    assert not sensor.is_open
    with pytest.raises(BusError, match="ttyA"):
        sensor.open()
    pty.restore()
    sensor.open()
    with A02yyuwEmitter(pty.b, 2222, hz=50):
        assert sensor.read(timeout=1.0) == {"distance": 2222.0}


# -- socket:// (a ser2net serial server): pyserial's in_waiting there says 1 at most ----------
@pytest.fixture
def ser2net():
    """An A02YYUW behind a TCP port, read through pyserial's socket:// URL."""
    from gateway.sim.serial_socket import SocketA02yyuw
    from tests.mosquitto import free_port

    port = free_port()
    emitter = SocketA02yyuw("127.0.0.1", port, 2000, hz=50).start()
    try:
        yield emitter, f"socket://127.0.0.1:{port}"
    finally:
        emitter.stop()


def test_socket_url_reads_the_newest_frame_not_the_backlog(ser2net):
    emitter, url = ser2net
    with SerialSensorPort(url, 9600, "N", 8, 1, "a02yyuw", None) as sensor:
        assert sensor.read(timeout=2.0) == {"distance": 2000.0}
        n = emitter.frames
        wait_until(lambda: emitter.frames >= n + 25, what="a backlog of 2000s")
        emitter.set_distance(1500)
        n = emitter.frames
        wait_until(lambda: emitter.frames >= n + 3, what="the new level on the wire")
        assert sensor.read(timeout=1.0) == {"distance": 1500.0}


def test_socket_url_silent_stream_is_a_fault_by_the_second_poll(ser2net):
    emitter, url = ser2net
    with SerialSensorPort(url, 9600, "N", 8, 1, "a02yyuw", None) as sensor:
        assert sensor.read(timeout=2.0) == {"distance": 2000.0}
        n = emitter.frames
        wait_until(lambda: emitter.frames >= n + 25, what="a backlog")
        emitter.behave("silent")
        n = emitter.frames
        results = []
        for _ in range(2):  # two polls: the first may still see the last frame sent
            try:
                results.append(sensor.read(timeout=0.2))
            except DeviceFault as f:
                results.append(f.reason)
        assert results[-1] == "timeout", results


def test_pty_silent_stream_is_a_fault_by_the_second_poll(pty, sensor):
    with A02yyuwEmitter(pty.b, 1000, hz=100) as emitter:
        wait_until(lambda: emitter.frames >= 30, what="a backlog")
        emitter.behave("silent")
        reasons = []
        for _ in range(2):
            try:
                reasons.append(sensor.read(timeout=0.2))
            except DeviceFault as f:
                reasons.append(f.reason)
        assert reasons[-1] == "timeout", reasons
