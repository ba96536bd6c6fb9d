"""RtuLink against real peers on a socat pty pair: pymodbus's serial server (SimBus) and, for
the exact bytes on the wire, a raw peer that we script byte by byte."""

from __future__ import annotations

import threading
import time

import pytest
import serial
from pymodbus.framer import FramerRTU

from drivers.modbus import open_link
from drivers.rtu import RtuLink, crc_ok, frame_gap_s, wire_time_s
from drivers.sim import SimBus
from gateway.config.model import Bus
from gateway.errors import BusError, ConfigError, DeviceFault
from ptys import PtyPair, wait_until
from test_drivers_sim import no_leftover_threads, shipped_profile  # noqa: F401  (fixture)

TIMEOUT, RETRIES = 0.2, 1
MARGIN = 0.25  # scheduling slack on a loaded CI machine


@pytest.fixture
def pty(tmp_path):
    with PtyPair(tmp_path) as pair:
        yield pair


@pytest.fixture
def sim(pty):
    bus = SimBus.rtu(pty.b, 9600)
    water = shipped_profile("water-level-rs485")
    bus.add_device(1, water, {"level": 12.3})
    bus.add_device(0x1A, water, {"level": -5.0})
    with bus:
        yield bus


@pytest.fixture
def link(pty):
    with RtuLink("rs485", pty.a, baudrate=9600) as lk:
        yield lk


class RawPeer:
    """A slave we script: reads one request frame (8 bytes) and answers with `reply(request)`."""

    def __init__(self, path: str):
        self.port = serial.serial_for_url(path, baudrate=9600, timeout=2)
        self.requests: list[tuple[float, bytes]] = []
        self.replied_at: list[float] = []

    def serve(self, replies: int, reply) -> threading.Thread:
        def run():
            for _ in range(replies):
                request = self.port.read(8)
                self.requests.append((time.monotonic(), request))
                if not request:
                    return
                answer = reply(request)
                if answer:
                    self.port.write(answer)
                    self.port.flush()
                self.replied_at.append(time.monotonic())
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def close(self):
        self.port.close()


@pytest.fixture
def peer(pty):
    p = RawPeer(pty.b)
    yield p
    p.close()


def read(link, unit=1, address=0, count=5, **kw):
    kw.setdefault("timeout", TIMEOUT)
    kw.setdefault("retries", RETRIES)
    return link.read_registers(unit, 3, address, count, **kw)


# -- the bytes on the wire (FIELD_NOTES test vectors) -------------------------------------
def test_unit_0x1a_vector_on_the_wire(link, peer):
    # request 1A 03 00 00 00 01 87 E1 -> reply 1A 03 02 00 01 1D 86 (value 1)
    t = peer.serve(1, lambda req: bytes.fromhex("1A 03 02 00 01 1D 86"))
    assert link.read_registers(0x1A, 3, 0, 1, timeout=0.5, retries=0) == [1]
    t.join(2)
    assert peer.requests[0][1] == bytes.fromhex("1A 03 00 00 00 01 87 E1")


def test_read_value_request_vector_on_the_wire(link, peer):
    reply = bytes.fromhex("01 03 02 00 7B")
    reply += FramerRTU.compute_CRC(reply).to_bytes(2, "big")
    t = peer.serve(1, lambda req: reply)
    assert link.read_registers(1, 3, 4, 1, timeout=0.5, retries=0) == [123]
    t.join(2)
    assert peer.requests[0][1] == bytes.fromhex("01 03 00 04 00 01 C5 CB")


def test_waits_t35_between_frames_and_flushes_stale_input(link, peer):
    # A stale, well-formed reply sits in the input buffer: it must not be taken as the answer.
    peer.port.write(bytes.fromhex("1A 03 02 00 09") + b"\x00\x00")
    wait_until(lambda: link._serial.in_waiting, what="stale bytes to arrive")
    t = peer.serve(2, lambda req: bytes.fromhex("1A 03 02 00 01 1D 86"))
    assert link.read_registers(0x1A, 3, 0, 1, timeout=0.5, retries=0) == [1]
    assert link.read_registers(0x1A, 3, 0, 1, timeout=0.5, retries=0) == [1]
    t.join(2)
    gap = peer.requests[1][0] - peer.replied_at[0]
    assert gap >= frame_gap_s(9600) * 0.9  # 4.0 ms of silence before the next frame


def _deadline_s(timeout: float, count: int = 1) -> float:
    """How long RtuLink waits for one try's answer: the slave's allowance plus both frames' wire time."""
    return timeout + wire_time_s(8 + 5 + 2 * count, 9600)


def test_a_late_answer_to_a_timed_out_try_is_the_retrys_answer(link, peer):
    # A slow slave answers every request 8 ms after the master stopped waiting. The retry repeats the
    # very same request, so the first answer, coming during the retry's wait, is its answer (checked
    # whole like any other). Flushed away, it cost a second full timeout and a fault for the poll, and
    # the slow unit's neighbours a third of their cadence (tests/faults/test_fault_sensors.py).
    late = _deadline_s(0.2) + 0.008
    t = peer.serve(2, lambda req: time.sleep(late) or bytes.fromhex("1A 03 02 00 01 1D 86"))
    t0 = time.monotonic()
    assert link.read_registers(0x1A, 3, 0, 1, timeout=0.2, retries=1) == [1]
    assert time.monotonic() - t0 < 2 * _deadline_s(0.2)
    t.join(2)
    assert [r[:1] for _, r in peer.requests] == [b"\x1a", b"\x1a"]  # asked twice, answered by the first


def test_a_late_answer_after_the_last_try_is_not_read_as_the_next_units(link, peer):
    # The same slow answer after the last try: the line is flushed before the next unit is asked,
    # so unit 1 gets its own answer, not a unit-id fault from unit 0x1A's.
    late = _deadline_s(0.2) + 0.008
    value_1 = bytes.fromhex("01 03 02 00 7B")
    value_1 += FramerRTU.compute_CRC(value_1).to_bytes(2, "big")
    t = peer.serve(2, lambda req: time.sleep(late) or bytes.fromhex("1A 03 02 00 01 1D 86")
                   if req[0] == 0x1A else value_1)
    with pytest.raises(DeviceFault) as err:
        link.read_registers(0x1A, 3, 0, 1, timeout=0.2, retries=0)
    assert err.value.reason == "timeout"
    assert link.read_registers(1, 3, 4, 1, timeout=0.2, retries=0) == [123]
    t.join(2)


def test_a_reply_begun_before_the_deadline_is_read_whole(link, peer):
    # A slow unit starts answering just before the deadline and the rest of its frame is on the wire
    # when the deadline passes (on a pty: already in the buffer). It is not cut off as 'short': once the
    # head has come, the rest has its own wire time, plus the quiet a flush waits for.
    def head_then_rest(req):
        time.sleep(_deadline_s(0.2) - 0.006)
        peer.port.write(bytes.fromhex("1A 03 02"))
        peer.port.flush()
        time.sleep(0.010)
        return bytes.fromhex("00 01 1D 86")
    t = peer.serve(1, head_then_rest)
    assert link.read_registers(0x1A, 3, 0, 1, timeout=0.2, retries=0) == [1]
    t.join(2)


@pytest.mark.parametrize("reply, reason", [
    (bytes.fromhex("1A 03 04 00 01"), "short"),  # announced 4 bytes, sent 2 then silence
    (bytes.fromhex("1A 06 02 00 01 00 00"), "function"),  # wrong function
    (bytes.fromhex("07 03 02 00 01 00 00"), "unit-id"),  # another unit answered
    (bytes.fromhex("1A 03 02 00 01 1D 87"), "crc"),
    (bytes.fromhex("1A 03 04 00 01 00 02 00 00"), "crc"),
])
def test_raw_bad_replies_are_classified(link, peer, reply, reason):
    t = peer.serve(1, lambda req: reply)
    with pytest.raises(DeviceFault) as err:
        link.read_registers(0x1A, 3, 0, 1, timeout=0.2, retries=0)
    t.join(2)
    assert err.value.reason == reason


def test_wrong_byte_count_with_good_crc_is_bytecount(link, peer):
    body = bytes.fromhex("1A 03 04 00 01 00 02")  # two registers for a one-register request
    t = peer.serve(1, lambda req: body + FramerRTU.compute_CRC(body).to_bytes(2, "big"))
    with pytest.raises(DeviceFault) as err:
        link.read_registers(0x1A, 3, 0, 1, timeout=0.5, retries=0)
    t.join(2)
    assert err.value.reason == "bytecount" and "byte count 4" in err.value.detail


# -- against pymodbus's serial server --------------------------------------------------------
def test_reads_the_qdy30a_image(link, sim):
    # 0 address, 1 baud code (3 = 9600), 2 unit code (1 = cm), 3 decimals, 4 value
    assert read(link, 1) == [1, 3, 1, 1, 123]
    assert read(link, 0x1A) == [0x1A, 3, 1, 1, (-50) & 0xFFFF]
    assert link.read_registers(1, 4, 4, 1, timeout=TIMEOUT, retries=0) == [123]  # FC04 too


def test_absent_unit_times_out_and_is_asked_once_per_try(link, sim):
    t0 = time.monotonic()
    with pytest.raises(DeviceFault) as err:
        read(link, 9)
    assert err.value.reason == "timeout"
    assert time.monotonic() - t0 < TIMEOUT * (1 + RETRIES) + MARGIN


@pytest.mark.parametrize("behaviour, arg, reason, tries", [
    ("dead", None, "timeout", 2),
    ("slow", 1.0, "timeout", 2),
    ("garbage", None, "unit-id", 2),  # the sim never starts its junk with the unit id
    ("bad_crc", None, "crc", 2),
    ("exception", 2, "exception", 1),  # a deliberate answer: not retried
    ("short", None, "bytecount", 2),
])
def test_faulty_device_gives_reason_within_bound(link, sim, behaviour, arg, reason, tries):
    sim.behave(1, behaviour, arg)
    before = sim.requests(1)
    t0 = time.monotonic()
    with pytest.raises(DeviceFault) as err:
        read(link, 1)
    elapsed = time.monotonic() - t0
    assert err.value.reason == reason
    assert elapsed < TIMEOUT * (1 + RETRIES) + MARGIN
    assert sim.requests(1) - before == tries
    if reason == "exception":
        assert err.value.detail == "code 2 illegal data address"
    # the line is clean again for the neighbour and for the device once it recovers
    assert read(link, 0x1A)[0] == 0x1A
    sim.behave(1, "normal")
    assert read(link, 1)[4] == 123


def test_slow_device_within_its_timeout_is_read(link, sim):
    sim.behave(1, "slow", 0.05)
    assert read(link, 1, timeout=0.3, retries=0)[4] == 123


def test_unmapped_register_is_an_exception(link, sim):
    with pytest.raises(DeviceFault) as err:
        read(link, 1, address=10, count=2)
    assert (err.value.reason, err.value.detail) == ("exception", "code 2 illegal data address")


def test_bad_requests_are_refused_before_the_wire(link):
    for args in [(0, 3, 0, 1), (248, 3, 0, 1), (1, 6, 0, 1), (1, 3, 0, 126), (1, 3, 0xFFFF, 2)]:
        with pytest.raises(ValueError):
            link.read_registers(*args, timeout=0.1, retries=0)


# -- the port itself ---------------------------------------------------------------------
def test_missing_port_says_which(tmp_path):
    link = RtuLink("rs485", str(tmp_path / "ttyUSB9"))
    with pytest.raises(BusError, match="ttyUSB9"):
        link.open()
    assert not link.is_open
    with pytest.raises(BusError, match="not open"):
        read(link)


def test_port_vanishes_and_returns(pty, link):
    water = shipped_profile("water-level-rs485")
    sim = SimBus.rtu(pty.b, 9600)
    sim.add_device(1, water, {"level": 12.3})
    with sim:
        assert read(link)[4] == 123
        pty.vanish()  # the USB adapter is pulled out
        with pytest.raises(BusError, match="ttyA"):
            read(link)
        assert not link.is_open
        with pytest.raises(BusError, match="ttyA"):
            link.open()
    pty.restore()
    sim = SimBus.rtu(pty.b, 9600)
    sim.add_device(1, water, {"level": 45.6})
    with sim:
        link.open()
        assert read(link)[4] == 456


def test_rtu_over_a_socket_url(link):
    # pymodbus serves the RTU framer over TCP for a socket:// port: an RTU-over-TCP converter
    sim = SimBus.rtu("socket://127.0.0.1:0", 9600)
    sim.add_device(3, shipped_profile("hydrant-pressure-rs485"), {"pressure": 0.35})
    with sim, RtuLink("converter", sim.address) as lk:
        assert sim.address.startswith("socket://127.0.0.1:") and not sim.address.endswith(":0")
        assert lk.read_registers(3, 3, 2, 3, timeout=0.5, retries=0) == [3, 3, 350]
        sim.behave(3, "bad_crc")
        with pytest.raises(DeviceFault, match="crc"):
            lk.read_registers(3, 3, 2, 3, timeout=0.2, retries=0)


def test_crc_helper_matches_field_vector():
    assert crc_ok(bytes.fromhex("1A 03 02 00 01 1D 86"))
    assert not crc_ok(bytes.fromhex("1A 03 02 00 01 1D 87"))


def test_open_link_picks_the_named_backend():
    rtu = open_link(Bus("rs485", "rtu", "/dev/ttyAMA0", parity="E", stopbits=1))
    assert isinstance(rtu, RtuLink) and rtu.parity == "E" and not rtu.is_open
    from drivers.tcp import TcpLink

    tcp = open_link(Bus("pumproom", "tcp", 5020, host="127.0.0.1"))
    assert isinstance(tcp, TcpLink) and (tcp.host, tcp.port) == ("127.0.0.1", 5020)
    with pytest.raises(ConfigError, match="not a Modbus bus"):
        open_link(Bus("ultrasonic", "serial", "/dev/ttyUSB0"))
