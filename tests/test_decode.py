"""Decoding registers into values: types, word order, decimals, unit codes, ranges."""

import struct

import pytest

from gateway.acquire.decode import bits_set, decode_point
from gateway.acquire.plan import Request, plan_requests
from gateway.config.model import Point, Profile
from gateway.errors import DeviceFault

LEVEL = Point("level", unit="cm", register=4, type="i16", decimals_register=3, unit_register=2,
              unit_codes={1: "cm", 2: "mm", 16: "m"}, range=(-10, 1000))


def test_qdy30a_level_with_decimals():
    assert decode_point(LEVEL, {2: 1, 3: 1, 4: 153}) == pytest.approx(15.3)


def test_negative_int16():
    assert decode_point(LEVEL, {2: 1, 3: 1, 4: 0xFFF6}) == pytest.approx(-1.0)


def test_device_set_to_mm_is_converted_to_the_profile_unit():
    assert decode_point(LEVEL, {2: 2, 3: 0, 4: 250}) == pytest.approx(25.0)


def test_unknown_unit_code_is_a_fault_not_a_value():
    with pytest.raises(DeviceFault) as e:
        decode_point(LEVEL, {2: 9, 3: 1, 4: 100})
    assert e.value.reason == "unit"


def test_out_of_range_is_a_fault():
    with pytest.raises(DeviceFault) as e:
        decode_point(LEVEL, {2: 1, 3: 0, 4: 5000})
    assert e.value.reason == "range" and "outside plausible" in str(e.value)


def test_absurd_decimals_register_is_a_fault():
    with pytest.raises(DeviceFault) as e:
        decode_point(LEVEL, {2: 1, 3: 40, 4: 1})
    assert e.value.reason == "decode"


@pytest.mark.parametrize("order,words", [("ABCD", [0x47F1, 0x2000]), ("CDAB", [0x2000, 0x47F1])])
def test_float_word_order(order, words):
    p = Point("x", register=10, type="f32", word_order=order)
    assert decode_point(p, {10: words[0], 11: words[1]}) == pytest.approx(123456.0)


def test_float_nan_is_a_fault():
    hi, lo = struct.unpack(">HH", struct.pack(">f", float("nan")))
    with pytest.raises(DeviceFault):
        decode_point(Point("x", register=0, type="f32"), {0: hi, 1: lo})


def test_i32_and_u32():
    assert decode_point(Point("a", register=0, type="i32"), {0: 0xFFFF, 1: 0xFFFE}) == -2
    assert decode_point(Point("a", register=0, type="u32", word_order="CDAB"), {0: 1, 1: 2}) == 0x20001


def test_scale_and_offset():
    p = Point("c", register=0, type="u16", scale=0.01, offset=1.0)
    assert decode_point(p, {0: 250}) == pytest.approx(3.5)


def test_bits():
    p = Point("faults", register=1, type="bits", bits={"chamber_dirty": 0, "low_battery": 1, "tamper": 2})
    assert decode_point(p, {1: 0b110}) == 6
    assert bits_set(p, 6) == ["low_battery", "tamper"]


def test_missing_register_is_a_fault():
    with pytest.raises(DeviceFault):
        decode_point(LEVEL, {2: 1, 3: 1})


def test_adjacent_registers_are_one_request():
    prof = Profile("p", "modbus", points=(LEVEL,))
    assert plan_requests(prof) == [Request(3, 2, 3)]


def test_gaps_and_functions_split_requests_and_125_limit():
    pts = (Point("a", register=0), Point("b", register=5), Point("c", register=6, function=4),
           Point("d", register=100, type="u32"), Point("e", register=200))
    prof = Profile("p", "modbus", points=pts)
    assert plan_requests(prof) == [Request(3, 0, 1), Request(3, 5, 1), Request(3, 100, 2), Request(3, 200, 1),
                                   Request(4, 6, 1)]
    many = Profile("m", "modbus", points=tuple(Point(f"p{i}", register=i) for i in range(300)))
    reqs = plan_requests(many)
    assert [r.count for r in reqs] == [125, 125, 50]
    assert [r.address for r in reqs] == [0, 125, 250]


def test_quality_watch_reports_each_change_once_and_skips_ruled_points():
    from gateway.acquire.quality import QualityWatch
    from gateway.reading import Reading

    w = QualityWatch({("s", "ruled")})
    bad = Reading("s", "p", None, "", "fault", 0.0, 0.0, "timeout: no reply")
    good = Reading("s", "p", 1, "", "good", 0.0, 0.0)
    assert w.change(good) is None
    assert w.change(bad)["state"] == "fault" and w.change(bad) is None
    assert w.change(good)["state"] == "recovered" and w.change(good) is None
    assert w.change(Reading("s", "ruled", None, "", "fault", 0.0, 0.0, "x")) is None


def test_nan_and_infinity_are_faults_never_values():
    from gateway.acquire.decode import check_range

    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(DeviceFault):
            check_range(Point("x"), bad)


def test_a_device_dead_for_days_keeps_a_bounded_backoff():
    import time as _t

    from gateway.acquire.device import Device
    from gateway.config.model import Bus, Sensor

    dev = Device(Sensor("w", "b", Profile("p", "modbus", points=(LEVEL,)), unit=1, poll_s=1.0),
                 Bus("b", "tcp", 502, host="h", backoff_max_s=30.0))
    dev.stats.consecutive = 100_000  # 2**100000 would overflow a float
    now = _t.monotonic()
    dev.schedule_after(now)
    assert now < dev.next_due <= now + 30.0 + 0.5
