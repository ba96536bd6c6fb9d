"""Attack: Modbus TCP replies that are wrong as a whole but decode (issue 12). Before the fix
the frame `00 01 00 00 00 0b 01 03 06 00 01 00 01 01 f4 be ef` (byte count 6, eight data
bytes, MBAP length 11) was read as a good 50.0 cm and raised a red alarm; an odd byte count
and an MBAP length of 300 did the same; a unit trickling its reply left stale bytes in the
stream so the healthy unit behind the same endpoint faulted next (`garbage: unit 1`).

Every peer here is a real TCP server on a free port (tests/hostile/peers.py) whose reply
bytes the test writes. Each wrong frame must be a DeviceFault with its own reason word, the
connection must be reset, and the next valid answer must read clean."""

from __future__ import annotations

import textwrap
import time

import pytest

from drivers.tcp import TcpLink
from gateway.acquire import Acquisition
from gateway.config import load_config
from gateway.errors import DeviceFault
from peers import TcpPeer, tcp_reply, trickle

ISSUE_FRAME = bytes.fromhex("00 01 00 00 00 0b 01 03 06 00 01 00 01 01 f4 be ef")
GOOD = [1, 1, 500]  # unit code 1 = cm, 1 decimal, 500 -> 50.0 cm: the water-level profile's 0x0002..0x0004


def with_tid(request: bytes, frame: bytes) -> bytes:
    """`frame` as the answer to `request`: its transaction id echoed, nothing else touched."""
    return request[0:2] + frame[2:]


BAD_FRAMES = {
    # the issue's frame: MBAP length 11 is not byte count 6 + 3
    "issue-frame": (ISSUE_FRAME, "mbap-length"),
    # an odd byte count (7 for 3 registers) with a consistent MBAP length
    "odd-byte-count": (bytes.fromhex("00 01 00 00 00 0a 01 03 07 00 01 00 01 01 f4 be"), "bytecount"),
    # MBAP length 300: more than any Modbus PDU (253 + unit)
    "mbap-length-300": (bytes.fromhex("00 01 00 00 01 2c 01 03 06 00 01 00 01 01 f4"), "mbap-length"),
    # a byte count for 4 registers with their data, length consistent: not what we asked
    "too-many-registers": (bytes.fromhex("00 01 00 00 00 0b 01 03 08 00 01 00 01 01 f4 00 00"), "bytecount"),
    "protocol-id": (bytes.fromhex("00 01 00 07 00 09 01 03 06 00 01 00 01 01 f4"), "protocol"),
    "other-unit": (bytes.fromhex("00 01 00 00 00 09 02 03 06 00 01 00 01 01 f4"), "unit-id"),
    "other-function": (bytes.fromhex("00 01 00 00 00 09 01 04 06 00 01 00 01 01 f4"), "function"),
    "exception-too-long": (bytes.fromhex("00 01 00 00 00 04 01 83 02 00"), "mbap-length"),
    "trailing": (bytes.fromhex("00 01 00 00 00 09 01 03 06 00 01 00 01 01 f4 be ef"), "trailing"),
}


def read(link, **kw):
    kw.setdefault("timeout", 0.3)
    kw.setdefault("retries", 0)
    return link.read_registers(1, 3, 2, 3, **kw)


@pytest.mark.parametrize("case", BAD_FRAMES)
def test_a_frame_wrong_as_a_whole_is_a_fault_and_the_connection_is_reset(case):
    frame, reason = BAD_FRAMES[case]
    sent = []

    def answer(request):
        sent.append(request)
        if len(sent) == 1:
            return [(0, with_tid(request, frame))]
        return [(0, tcp_reply(request, GOOD))]

    with TcpPeer(answer) as peer, TcpLink("pumproom", *peer.address) as link:
        with pytest.raises(DeviceFault) as err:
            read(link)
        assert err.value.reason == reason, err.value
        assert read(link) == GOOD  # the next device starts clean ...
        assert peer.connections == 2  # ... on a new connection


def test_a_late_frame_for_another_transaction_is_a_fault():
    def answer(request):
        tid = (int.from_bytes(request[0:2], "big") + 1) & 0xFFFF
        return [(0, tid.to_bytes(2, "big") + tcp_reply(request, GOOD)[2:])]

    with TcpPeer(answer) as peer, TcpLink("pumproom", *peer.address) as link:
        with pytest.raises(DeviceFault) as err:
            read(link)
        assert err.value.reason == "tid"


def test_a_reply_cut_off_is_short_not_a_value():
    def answer(request):
        return [(0, tcp_reply(request, GOOD)[:-3])]  # and then silence

    with TcpPeer(answer) as peer, TcpLink("pumproom", *peer.address) as link:
        t0 = time.monotonic()
        with pytest.raises(DeviceFault) as err:
            read(link, timeout=0.2)
        assert err.value.reason == "short" and time.monotonic() - t0 < 0.6


def _garage_site(tmp_path, port, more=""):
    path = tmp_path / "gateway.toml"
    path.write_text(textwrap.dedent(f"""
        [gateway]
        id = "hostile-tcp"
        data_dir = "./var"

        [buses.pumproom]
        type = "tcp"
        host = "127.0.0.1"
        port = {port}
        retries = 0

        [[sensors]]
        name = "garage-b2-water"
        bus = "pumproom"
        unit = 1
        profile = "water-level-rs485"
    """) + textwrap.dedent(more))
    return load_config(str(path))


@pytest.mark.parametrize("case", ["issue-frame", "odd-byte-count", "mbap-length-300"])
def test_the_issue_frames_never_become_a_reading(tmp_path, case):
    """Through the acquisition, as the daemon polls: the reading is a fault, never 50.0 cm."""
    frame, reason = BAD_FRAMES[case]
    with TcpPeer(lambda request: [(0, with_tid(request, frame))]) as peer:
        acq = Acquisition(_garage_site(tmp_path, peer.address[1]))
        try:
            readings = acq.read_once()
        finally:
            acq.stop()
        assert peer.requests[0][7:12] == bytes.fromhex("03 00 02 00 03")  # the frame fits the request
    assert readings and all(r.quality == "fault" and r.value is None for r in readings), readings
    assert all(r.fault.startswith(reason) for r in readings), readings


def test_a_trickling_unit_does_not_spoil_its_healthy_neighbour():
    """Unit 2 answers one byte every 200 ms (its 15 bytes take 3 s); unit 1 answers at once.
    Before the fix the stale bytes of unit 2 stayed in the stream after its timeout and unit 1's
    next poll read them: `garbage: unit 1`, 5 polls in 8 s instead of 16."""
    def answer(request):
        if request[6] == 2:
            return trickle(tcp_reply(request, GOOD), 0.2)
        return [(0, tcp_reply(request, [1, 1, 123]))]

    with TcpPeer(answer) as peer, TcpLink("pumproom", *peer.address) as link:
        for _ in range(4):
            with pytest.raises(DeviceFault) as err:
                link.read_registers(2, 3, 2, 3, timeout=0.3, retries=0)
            assert err.value.reason in ("timeout", "short")
            assert link.read_registers(1, 3, 2, 3, timeout=0.3, retries=0) == [1, 1, 123]


def test_the_healthy_unit_keeps_its_cadence_under_the_daemons_bus_loop(tmp_path):
    """The same attack through the acquisition's own bus thread, as the daemon runs it: the
    healthy unit (poll_s 0.5) must keep every poll good while its neighbour trickles."""
    from ptys import wait_until

    def answer(request):
        if request[6] == 2:
            return trickle(tcp_reply(request, GOOD), 0.2)
        return [(0, tcp_reply(request, [1, 1, 123]))]

    with TcpPeer(answer) as peer:
        cfg = _garage_site(tmp_path, peer.address[1], """
            poll_s = 0.5

            [[sensors]]
            name = "pit-level"
            bus = "pumproom"
            unit = 2
            profile = "water-level-rs485"
            poll_s = 0.5
        """)
        readings = []
        acq = Acquisition(cfg, readings.append)
        acq.start()
        try:
            wait_until(lambda: sum(r.sensor == "garage-b2-water" for r in readings) >= 6, timeout=8,
                       what="six polls of the healthy unit")
            started = min(r.mono for r in readings)
        finally:
            acq.stop()
    healthy = [r for r in readings if r.sensor == "garage-b2-water"]
    assert all(r.quality == "good" and r.value == 12.3 for r in healthy), [r.fault for r in healthy]
    assert any(r.sensor == "pit-level" and r.quality == "fault" for r in readings)
    # six polls at 0.5 s take ~2.5 s plus the neighbour's timeouts (0.3 s each); not 8 s for 5
    assert healthy[5].mono - started < 5.0
