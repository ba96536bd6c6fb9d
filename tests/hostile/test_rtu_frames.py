"""Attack: Modbus RTU replies that are wrong as a whole, on a real pty pair (socat). The frame
checks existed for the header, CRC and byte count; what was missing (issue 12): bytes after a
complete frame were never looked for ("nothing left over"), and after a fault the line was
not flushed until it had been quiet for t3.5, so a unit still trickling its late answer
garbled the next unit's reply on the same segment."""

from __future__ import annotations

import pytest

from drivers.rtu import RtuLink, frame_gap_s
from gateway.errors import DeviceFault
from peers import RtuPeer, rtu_crc, rtu_reply, trickle
from ptys import PtyPair

GOOD = [1, 1, 500]


@pytest.fixture
def pty(tmp_path):
    with PtyPair(tmp_path) as pair:
        yield pair


def framed(hexbody: str) -> bytes:
    body = bytes.fromhex(hexbody)
    return body + rtu_crc(body)


BAD_FRAMES = {
    "trailing": (lambda req: rtu_reply(req, GOOD) + b"\xbe\xef", "trailing"),
    "byte-count": (lambda req: framed("01 03 08 00 01 00 01 01 f4 00 00"), "bytecount"),
    "odd-byte-count": (lambda req: framed("01 03 05 00 01 00 01 01"), "bytecount"),
    "other-unit": (lambda req: framed("02 03 06 00 01 00 01 01 f4"), "unit-id"),
    "other-function": (lambda req: framed("01 04 06 00 01 00 01 01 f4"), "function"),
    "crc": (lambda req: rtu_reply(req, GOOD)[:-1] + b"\x00", "crc"),
    "cut-off": (lambda req: rtu_reply(req, GOOD)[:-4], "short"),
    "exception-crc": (lambda req: bytes.fromhex("01 83 02 00 00"), "crc"),
}


@pytest.mark.parametrize("case", BAD_FRAMES)
def test_a_frame_wrong_as_a_whole_is_a_fault_and_the_next_reads_clean(pty, case):
    make, reason = BAD_FRAMES[case]
    seen = []

    def answer(request):
        seen.append(request)
        return [(0, make(request) if len(seen) == 1 else rtu_reply(request, GOOD))]

    with RtuLink("rs485", pty.a, baudrate=9600) as link, RtuPeer(pty.b, answer):
        with pytest.raises(DeviceFault) as err:
            link.read_registers(1, 3, 2, 3, timeout=0.15, retries=0)
        assert err.value.reason == reason, err.value
        assert link.read_registers(1, 3, 2, 3, timeout=0.15, retries=0) == GOOD


def test_a_trickling_unit_does_not_spoil_its_healthy_neighbour(pty):
    """Unit 2 answers 60 registers one byte every 2 ms (125 bytes, ~250 ms: past its deadline of
    50 ms + 152 ms of wire time; each gap a tenth of the 20 ms of quiet a flush waits for, and half
    of t3.5 = 4 ms at 9600 baud, so the line is never quiet while it talks). Before the fix unit 1's reply came mixed with unit 2's tail: `garbage: unit 1`,
    a fault of a healthy unit."""
    assert frame_gap_s(9600) > 0.003

    def answer(request):
        if request[0] == 2:
            return trickle(rtu_reply(request, list(range(60))), 0.002)
        return [(0, rtu_reply(request, GOOD))]

    with RtuLink("rs485", pty.a, baudrate=9600) as link, RtuPeer(pty.b, answer):
        for _ in range(3):
            with pytest.raises(DeviceFault) as err:
                link.read_registers(2, 3, 0, 60, timeout=0.05, retries=0)
            assert err.value.reason in ("timeout", "short")
            assert link.read_registers(1, 3, 2, 3, timeout=0.15, retries=0) == GOOD
