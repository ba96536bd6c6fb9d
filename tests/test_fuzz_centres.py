"""Whatever bytes a centre sends, the GB/T 26875.3 and SL 651 readers and the uplinks' frame handlers
neither raise nor grow without bound: generated garbage, valid frames mutated byte by byte, split at
random points, with valid headers and lying lengths, checksums made right again.

FUZZ_EXAMPLES sets the number of examples per test (default 200; `make fuzz` runs 10,000)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config.centres import Gb26875, Sl651
from gateway.record import Outbox
from gateway.record.cursors import DeliveryCursor
from gateway.sync.gb26875 import codec as gb, datatypes as dt
from gateway.sync.gb26875.mapping import Gb26875Mapping
from gateway.sync.gb26875.uplink import CARRIED, Gb26875Uplink
from gateway.sync.sl651 import codec as sl
from gateway.sync.sl651.uplink import CARRIED as SL_CARRIED, Sl651Uplink
from test_sl651 import SL_BJ, SL_REG

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
CENTRE, DEVICE = gb.address("000000015b38"), gb.address("000000000379")
GB_SEEDS = [gb.Frame(1, gb.REQUEST, CENTRE, DEVICE, bytes([dt.READ_DEVICE_STATE, 1, 0])).encode(),
            gb.Frame(2, gb.CONTROL, CENTRE, DEVICE, bytes([dt.SYNC_CLOCK, 1, 2, 58, 9, 26, 9, 12])).encode(),
            gb.Frame(3, gb.CONTROL, CENTRE, DEVICE, bytes([dt.DUTY_CHECK, 1, 10])).encode(),
            gb.Frame(4, gb.CONFIRM, CENTRE, DEVICE).encode()]
SL_SEEDS = [bytes.fromhex(h) for h in (SL_REG, *SL_BJ)]


class _Sock:
    """Collects what the uplink would send back (its answers and denials)."""
    def __init__(self):
        self.sent = 0

    def sendall(self, data):
        self.sent += len(data)


def _mutated(seeds, fix):
    @st.composite
    def build(draw):
        raw = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(0, 6))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            raw = fix(raw)
        cut = draw(st.integers(0, len(raw)))
        return [draw(st.binary(max_size=30)) + bytes(raw[:cut]), bytes(raw[cut:]) + draw(st.binary(max_size=30))]
    return build()


def _gb_fix(raw):
    raw[-3] = gb.checksum(raw[2:-3])
    return raw


def _sl_fix(raw):
    raw[-2:] = sl.crc16(bytes(raw[:-2])).to_bytes(2, "big")
    return raw


_UPLINKS: dict = {}  # one uplink per test (an outbox per example would cost most of the run)


def _uplink(kind, tmp_path_factory):
    if kind not in _UPLINKS:
        ob = Outbox(tmp_path_factory.mktemp(kind) / "o.sqlite", "fuzz")
        if kind == "gb":
            cfg = Gb26875("127.0.0.1", 1, "000000000379", "000000015b38")
            _UPLINKS[kind] = Gb26875Uplink(cfg, DeliveryCursor(ob, "gb26875", CARRIED), Gb26875Mapping({}))
        else:
            cfg = Sl651("127.0.0.1", 1, "0012345678", 1, "1234")
            _UPLINKS[kind] = Sl651Uplink(cfg, DeliveryCursor(ob, "sl651", SL_CARRIED), "w")
    up = _UPLINKS[kind]
    up.sock, up.reader = _Sock(), (gb.FrameReader() if kind == "gb" else sl.FrameReader())
    return up


@FUZZ
@given(chunks=_mutated(GB_SEEDS, _gb_fix) | st.lists(st.binary(max_size=300), max_size=4))
def test_gb26875_centre_bytes_never_raise(tmp_path_factory, chunks):
    up = _uplink("gb", tmp_path_factory)
    for chunk in chunks:
        for item in up.reader.feed(chunk):
            up._on_frame(item)  # noqa: SLF001 - the handler the uplink thread runs
    assert len(up.reader._buf) <= gb.HEADER + gb.MAX_DATA + 3  # noqa: SLF001


@FUZZ
@given(chunks=_mutated(SL_SEEDS, _sl_fix) | st.lists(st.binary(max_size=300), max_size=4))
def test_sl651_centre_bytes_never_raise(tmp_path_factory, chunks):
    up = _uplink("sl", tmp_path_factory)
    for chunk in chunks:
        for item in up.reader.feed(chunk):
            up._on_frame(item)  # noqa: SLF001
            if isinstance(item, sl.Frame) and item.up:
                try:
                    sl.parse_report(item.body)
                except sl.FrameError:
                    pass  # a refusal is fine; anything else is a bug
    assert len(up.reader._buf) <= 17 + sl.MAX_BODY  # noqa: SLF001
