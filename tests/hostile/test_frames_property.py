"""Property (issue 12): no reply other than a valid answer to the request ever yields a value.

Hypothesis builds a request (unit, function, address, count) and the register values of its
valid answer, then mutates that answer: truncated, extended, bits flipped, fields swapped or
overwritten (transaction id, protocol id, MBAP length, unit, function, byte count, CRC),
replaced by random bytes, and delivered in trickled pieces. The peers are real: a TCP server
on a free port (TcpLink) and the slave end of a socat pty pair (RtuLink). Whenever the link
returns registers, an oracle written apart from the drivers must find the bytes sent a valid
answer to that request carrying exactly those registers; a valid answer must be read.
(A flipped data bit in a Modbus TCP frame is such a valid answer: TCP frames carry no
checksum, so the oracle, not "unchanged bytes", is the judge.)

FUZZ_EXAMPLES sets the examples per target (default 50, about 10 s each here; `make fuzz`
runs 10,000)."""

from __future__ import annotations

import os
import struct
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.rtu import RtuLink
from drivers.tcp import TcpLink
from gateway.errors import BusError, DeviceFault
from peers import RtuPeer, TcpPeer, rtu_crc, rtu_reply, tcp_reply
from ptys import PtyPair

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "50"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
TIMEOUT = 0.15


# -- the oracles: what a valid answer is, written from the spec, not from the drivers --------------
def tcp_answer_values(request: bytes, reply: bytes) -> list[int] | None:
    tid, _, _, unit, function, _, count = struct.unpack(">HHHBBHH", request)
    if len(reply) != 9 + 2 * count:
        return None
    r_tid, protocol, length, r_unit, r_function, byte_count = struct.unpack(">HHHBBB", reply[:9])
    if (r_tid, protocol, length, r_unit, r_function, byte_count) != (tid, 0, 3 + 2 * count, unit, function,
                                                                     2 * count):
        return None
    return list(struct.unpack(f">{count}H", reply[9:]))


def rtu_answer_values(request: bytes, reply: bytes) -> list[int] | None:
    unit, function, _, count = struct.unpack(">BBHH", request[:6])
    if len(reply) != 5 + 2 * count or reply[:3] != bytes([unit, function, 2 * count]):
        return None
    if rtu_crc(reply[:-2]) != reply[-2:]:
        return None
    return list(struct.unpack(f">{count}H", reply[3:-2]))


# -- mutations of a valid answer -------------------------------------------------------------------
def _flip(data: bytes, bit: int) -> bytes:
    bit %= 8 * len(data)
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _put(data: bytes, at: int, value: bytes) -> bytes:
    at %= len(data)
    return data[:at] + value + data[at + len(value):]


def _swap(data: bytes, i: int, j: int) -> bytes:
    i, j = i % len(data), j % len(data)
    out = bytearray(data)
    out[i], out[j] = out[j], out[i]
    return bytes(out)


# Field offsets of a TCP answer (tid 0, protocol 2, length 4, unit 6, function 7, byte count 8)
# and of an RTU answer (unit 0, function 1, byte count 2; the CRC is the last two bytes).
TCP_FIELDS = [0, 2, 4, 6, 7, 8]
RTU_FIELDS = [0, 1, 2, -2]

mutation = st.one_of(
    st.tuples(st.just("none")),
    st.tuples(st.just("truncate"), st.integers(0, 300)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=12)),
    st.tuples(st.just("flip"), st.lists(st.integers(0, 4096), min_size=1, max_size=3)),
    st.tuples(st.just("field"), st.integers(0, 5), st.binary(min_size=1, max_size=2)),
    st.tuples(st.just("swap"), st.integers(0, 5), st.integers(0, 300)),
    st.tuples(st.just("random"), st.binary(max_size=40)),
)
# Trickled delivery: the reply cut at these points, each piece after this pause (seconds); the
# pauses stay well inside the timeout so that a valid answer trickled is still a valid answer.
trickling = st.one_of(st.just(()), st.lists(st.tuples(st.integers(1, 300), st.sampled_from([0.0, 0.002, 0.01])),
                                            max_size=4))


def mutate(valid: bytes, how: tuple, fields: list[int]) -> bytes:
    kind = how[0]
    if kind == "truncate":
        return valid[:how[1] % len(valid)]
    if kind == "extend":
        return valid + how[1]
    if kind == "flip":
        out = valid
        for bit in how[1]:
            out = _flip(out, bit)
        return out
    if kind == "field":
        return _put(valid, fields[how[1] % len(fields)], how[2])
    if kind == "swap":
        return _swap(valid, fields[how[1] % len(fields)], how[2])
    if kind == "random":
        return how[1]
    return valid


def pieces(reply: bytes, cuts, valid_len: int) -> list[tuple[float, bytes]]:
    """The reply in trickled pieces. Every cut lies inside the valid frame's length, so bytes past
    it (an extension) travel with its last byte: on a byte stream, bytes that come after the
    master has read a whole frame belong to nobody's reply, and are judged at the next request."""
    limit = min(len(reply), valid_len)
    points = sorted({c % limit for c, _ in cuts if limit > 1} - {0})
    delays = [d for _, d in cuts]
    out, start = [], 0
    for n, point in enumerate(points):
        out.append((delays[n] if n else 0.0, reply[start:point]))
        start = point
    out.append((delays[len(points)] if points and len(points) < len(delays) else 0.0, reply[start:]))
    return [(d, b) for d, b in out if b] or [(0.0, b"")]


request_spec = st.tuples(st.integers(1, 247), st.sampled_from([3, 4]), st.integers(0, 0xFFF0),
                         st.integers(1, 12)).flatmap(
    lambda r: st.tuples(st.just(r), st.lists(st.integers(0, 0xFFFF), min_size=r[3], max_size=r[3])))


class Script:
    """What the peer answers next: set by the example, read by the peer's thread."""

    def __init__(self, build_valid, fields):
        self.build_valid, self.fields = build_valid, fields
        self.how, self.cuts, self.values = ("none",), (), []
        self.sent: list[tuple[bytes, bytes]] = []  # (request, reply bytes)
        self.lock = threading.Lock()

    def __call__(self, request: bytes):
        with self.lock:
            valid = self.build_valid(request, self.values)
            reply = mutate(valid, self.how, self.fields)
            self.sent.append((request, reply))
            return pieces(reply, self.cuts, len(valid))


def check(link, script, oracle, spec, how, cuts):
    (unit, function, address, count), values = spec
    with script.lock:
        script.how, script.cuts, script.values = how, cuts, values
        script.sent.clear()
    try:
        got = link.read_registers(unit, function, address, count, timeout=TIMEOUT, retries=0)
    except DeviceFault:
        got = None
    except BusError:  # the reset connection was not taken back in time: reopen and judge nothing
        link.close()
        link.open()
        return
    with script.lock:
        sent = list(script.sent)
    assert len(sent) == 1, sent
    request, reply = sent[0]
    truth = oracle(request, reply)
    if got is not None:
        assert truth == got, f"a reply that is not a valid answer was read as {got}: {reply.hex(' ')}"
    else:
        assert truth is None, f"a valid answer was refused: {reply.hex(' ')}"


@pytest.fixture(scope="module")
def tcp():
    script = Script(tcp_reply, TCP_FIELDS)
    with TcpPeer(script) as peer, TcpLink("fuzz", *peer.address) as link:
        yield link, script


@pytest.fixture(scope="module")
def rtu(tmp_path_factory):
    script = Script(rtu_reply, RTU_FIELDS)
    with PtyPair(tmp_path_factory.mktemp("rtu-fuzz")) as pty, \
            RtuLink("fuzz", pty.a, baudrate=19200) as link, RtuPeer(pty.b, script):
        yield link, script


@FUZZ
@given(spec=request_spec, how=mutation, cuts=trickling)
def test_tcp_no_reply_but_a_valid_answer_is_a_value(tcp, spec, how, cuts):
    link, script = tcp
    check(link, script, tcp_answer_values, spec, how, cuts)


@FUZZ
@given(spec=request_spec, how=mutation, cuts=trickling)
def test_rtu_no_reply_but_a_valid_answer_is_a_value(rtu, spec, how, cuts):
    link, script = rtu
    check(link, script, rtu_answer_values, spec, how, cuts)
