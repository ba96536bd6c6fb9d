"""GB/T 26875.3-2011 frames and data units against published vectors, byte for byte.

Sources (also in docs/gb26875.md):
- GB-RS: repository ActorLancer/GB-T-26875.3.2011-rs, file `GB26875文档.md`, section "示例" (worked
  frames of a vendor integration note: smoke-detector fire, mains fault, duty-check answer, software
  version, device time, the centre's confirm/deny, read device state, init, clock sync, duty check).
- GB-GO: repository shootingfans/codec_gb26875_3_2011, file `codec/reader_decoder_test.go` (a component
  state frame; its first copy carries a wrong checksum 0x63, the repeats the right one 0x68) and
  `codec/codec_test.go` (application data units of types 1, 2, 3, 21, 24)."""

from __future__ import annotations

import pytest

from gateway.sync.gb26875 import codec, datatypes as dt

H = bytes.fromhex
DEVICE, CENTRE = H("790300000000"), H("385B01000000")
T = (2, 58, 9, 26, 9, 12)  # 2012-09-26 09:58:02
# GB-RS 示例 1..11 (frames as printed; every checksum verified)
EX_FIRE = H("404001000101203A091A090C790300000000385B010000003000020201010128 0A000200 0200".replace(" ", "")
            + "20" * 30 + "00" + "023A091A090C" + "462323")
EX_CONFIRM = H("404001000101233A091A090C385B01000000790300000000000003AB2323")
EX_DENY = H("404001000101233A091A090C385B01000000790300000000000006AE2323")
EX_MAINS = H("404001000101203A091A090C790300000000385B0100000009000215010802 3A091A090C422323".replace(" ", ""))
EX_DUTY_ANSWER = H("404001000101203A091A090C790300000000385B010000000A00021801200102 3A091A090C5F2323".replace(" ", ""))
EX_TIME = H("404001000101203A091A090C790300000000385B0100000008000 21C01023A091A090C402323".replace(" ", ""))
EX_READ_STATE = H("404001000101203A091A090C385B010000007903000000000300045101 00FE2323".replace(" ", ""))
EX_READ_STATE_ANSWER = H("404001000101203A091A090C790300000000385B0100000009000515010802 3A091A090C452323".replace(" ", ""))
EX_INIT = H("404001000101203A091A090C385B0100000079030000000003000159010003 2323".replace(" ", ""))
EX_SYNC = H("404001000101203A091A090C385B01000000790300000000080001 5A01023A091A090C7D2323".replace(" ", ""))
EX_DUTY = H("404001000101203A091A090C385B0100000079030000000003000 15B010A0F2323".replace(" ", ""))
# GB-GO reader_decoder_test.go
GO_COMPONENT = ("40400000010118 0d11160a14 000000000000 060504030201 3000 02"
                "0201 0103 00 d9000600 0200 a3c1c7f8a3b1b2e3dfc8b2b8d7dfc0c8" + "00" * 15 + "301213010814").replace(" ", "")
GO_GOOD, GO_BAD_SUM = H(GO_COMPONENT + "682323"), H(GO_COMPONENT + "632323")


@pytest.mark.parametrize("raw", [EX_FIRE, EX_CONFIRM, EX_DENY, EX_MAINS, EX_DUTY_ANSWER, EX_TIME, EX_READ_STATE,
                                 EX_READ_STATE_ANSWER, EX_INIT, EX_SYNC, EX_DUTY, GO_GOOD])
def test_published_frames_decode_and_encode_back_byte_for_byte(raw):
    frame = codec.decode(raw)
    assert frame.encode() == raw


def test_fire_alarm_example_is_our_smoke_detector_encoding():
    """GB-RS 示例 1: "2号10区 感烟探测器 火警" — zone 10, position 2, smoke detector, state 0x0002."""
    smoke = dt.Component(dt.FIRE_ALARM_SYSTEM, 1, dt.SMOKE_DETECTOR, zone=10, position=2, description="")
    data = dt.component_state(smoke, dt.FIRE, T)
    frame = codec.Frame(serial=1, command=codec.SEND, source=DEVICE, destination=CENTRE,
                        data=data, time_label=(32, 58, 9, 26, 9, 12))
    # the example pads its description with 30 spaces and a NUL; we pad with NUL: same frame otherwise
    ours = frame.encode()
    theirs = codec.decode(EX_FIRE)
    assert ours[:38] == EX_FIRE[:38] and ours[-9:-3] == EX_FIRE[-9:-3]
    assert dt.decode(theirs.data)["objects"][0] | {"description": ""} == dt.decode(data)["objects"][0]


def test_device_state_operation_and_time_units_match_the_examples():
    assert dt.device_state(dt.DEV_MAINS_FAULT, T) == codec.decode(EX_MAINS).data  # 示例 2
    assert dt.device_operation(dt.OP_DUTY_ANSWER, 1, T) == codec.decode(EX_DUTY_ANSWER).data  # 示例 3
    assert dt.device_time(T) == codec.decode(EX_TIME).data  # 示例 5
    confirm = codec.Frame(serial=1, command=codec.CONFIRM, source=CENTRE, destination=DEVICE,
                          time_label=(35, 58, 9, 26, 9, 12))
    assert confirm.encode() == EX_CONFIRM


def test_centre_requests_decode():
    assert dt.decode(codec.decode(EX_READ_STATE).data)["name"] == "read_device_state"
    assert dt.decode(codec.decode(EX_INIT).data)["name"] == "init_device"
    sync = dt.decode(codec.decode(EX_SYNC).data)
    assert sync["name"] == "sync_clock" and sync["time_label"] == list(T)
    duty = dt.decode(codec.decode(EX_DUTY).data)
    assert duty["name"] == "duty_check" and duty["reserved"] == 10


def test_go_component_state_vector_and_its_wrong_checksum():
    d = dt.decode(codec.decode(GO_GOOD).data)["objects"][0]
    assert (d["system_type"], d["system_address"], d["state"], d["zone"], d["position"]) == (1, 3, 2, 0xD9, 6)
    assert d["description"] == "Ａ区１层呷哺走廊"
    assert d["time_label"] == [0x30, 0x12, 0x13, 0x01, 0x08, 0x14]
    with pytest.raises(codec.FrameError, match="checksum"):
        codec.decode(GO_BAD_SUM)


@pytest.mark.parametrize("unit_hex, name", [
    ("0101010204020400090207 15", "system_state"),  # codec_test.go "decode upload one system state"
    ("0301 0102 28 01020304 03 2003 040009020715", "analog"),  # "... one equipment parameter"
    ("1501 08 040009020715", "device_state"),  # "... one transmission state"
    ("1801 31fa 040009020715", "device_operation"),  # "... one transmission operation"
])
def test_go_data_unit_vectors(unit_hex, name):
    d = dt.decode(H(unit_hex.replace(" ", "")))
    assert d["name"] == name and d["count"] == 1


def test_go_analog_vector_values():
    d = dt.decode(H("0301010228010203040320030400090207 15".replace(" ", "")))["objects"][0]
    assert (d["analog_type"], d["raw"], d["value"]) == (3, 0x0320, 80.0)  # temperature 0.1 C x 800


def test_reader_resynchronises_after_garbage_and_splits_joined_frames():
    r = codec.FrameReader()
    got = r.feed(b"\x00\xffjunk" + EX_CONFIRM[:10])
    assert [type(x) for x in got] == [codec.FrameError]
    got = r.feed(EX_CONFIRM[10:] + GO_BAD_SUM + EX_DENY)
    frames = [x for x in got if isinstance(x, codec.Frame)]
    errors = [x for x in got if isinstance(x, codec.FrameError)]
    assert [f.command for f in frames] == [codec.CONFIRM, codec.DENY]
    assert any("checksum" in str(e) for e in errors)


def test_reader_never_buffers_past_a_lying_length_field():
    r = codec.FrameReader()
    bogus = bytearray(EX_CONFIRM)
    bogus[24:26] = (60000).to_bytes(2, "little")
    got = r.feed(bytes(bogus) + EX_CONFIRM)
    assert any(isinstance(x, codec.FrameError) and "over 1024" in str(x) for x in got)
    assert [x.command for x in got if isinstance(x, codec.Frame)] == [codec.CONFIRM]


def test_address_text_is_most_significant_first():
    assert codec.address("000000000379") == DEVICE
    assert codec.address_text(CENTRE) == "000000015b38"
