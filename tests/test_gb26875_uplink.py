"""The GB/T 26875.3 uplink against the reference centre over real TCP, on a real outbox and Recorder:
confirm, outage replay (fire alarms first), deny, timeout/resend, a centre that drops the line,
garbage and floods from the centre, duty check (查岗), clock sync and reads answered."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from gateway.config.centres import Gb26875
from gateway.platform.gb26875_centre import Gb26875Centre
from gateway.record import Outbox, Recorder
from gateway.record.cursors import DeliveryCursor
from gateway.sync.gb26875 import codec, datatypes as dt
from gateway.sync.gb26875.mapping import Gb26875Mapping
from gateway.sync.gb26875.uplink import CARRIED, Gb26875Uplink
from tests.ptys import wait_until

SENSORS = {"garage-b2-water": "water-level-rs485", "hydrant-3": "hydrant-pressure-rs485",
           "stair-2-smoke": "smoke-rs485"}
SMOKE_POSITION = 3


def smoke_alarm(state="active", transition="raised"):
    return {"alarm": "stair-2-smoke.status#1", "rule": "stair-2-smoke.status", "sensor": "stair-2-smoke",
            "point": "status", "transition": transition, "level": "red", "previous_level": None, "value": 1,
            "unit": "", "state": state}


def sensor_fault(sensor="hydrant-3"):
    return {"sensor": sensor, "point": "pressure", "state": "fault", "quality": "fault", "reason": "timeout"}


def pressure(value):
    return {"sensor": "hydrant-3", "point": "pressure", "unit": "MPa", "quality": "good", "reason": "period",
            "period_s": 60, "count": 60, "bad": 0, "min": value, "max": value, "mean": value, "last": value}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rig:
    def __init__(self, tmp_path, port: int, **cfg):
        self.outbox = Outbox(tmp_path / "outbox.sqlite", "gb-gw")
        self.recorder = Recorder(self.outbox).start()
        self.events: list[tuple[str, dict]] = []
        base = Gb26875(host="127.0.0.1", port=port, source="000000000379", destination="000000015b38",
                       confirm_timeout_s=0.3, resends=3, heartbeat_s=30, replay_per_s=1000)
        self.cfg = dataclasses.replace(base, **cfg)
        self.cursor = DeliveryCursor(self.outbox, "gb26875", CARRIED, writer=self.recorder.call,
                                     replay_per_s=self.cfg.replay_per_s)
        self.uplink = Gb26875Uplink(self.cfg, self.cursor, Gb26875Mapping(SENSORS),
                                    record=lambda t, f: self.events.append((t, f)),
                                    backoff_initial_s=0.1, backoff_max_s=0.3)

    def add(self, type_, fields):
        return self.outbox.add(type_, fields)

    def faults(self, reason):
        return [f for t, f in self.events if t == "fault" and f.get("reason") == reason]

    def close(self):
        self.uplink.stop()
        self.recorder.stop()
        self.outbox.close()


@pytest.fixture
def centre():
    with Gb26875Centre(address="000000015b38", device="000000000379") as c:
        yield c


@pytest.fixture
def rig(tmp_path, centre):
    r = Rig(tmp_path, centre.port)
    yield r
    r.close()


def test_smoke_alarm_is_delivered_as_a_fire_component_state_and_confirmed(rig, centre):
    rig.uplink.start()
    seq = rig.add("alarm", smoke_alarm())
    wait_until(lambda: centre.confirmed(), 5, what="confirmed frame")
    obj = centre.confirmed()[0]["objects"][0]
    assert (obj["system_type"], obj["component_type"], obj["position"]) == (dt.FIRE_ALARM_SYSTEM,
                                                                            dt.SMOKE_DETECTOR, SMOKE_POSITION)
    assert obj["state"] & dt.FIRE and obj["description"] == "stair-2-smoke"
    wait_until(lambda: rig.uplink.status().get("confirmed") == 1, 5, what="uplink counts the confirm")
    wait_until(lambda: rig.outbox.query("SELECT state FROM deliveries WHERE seq = ?", (seq,)) == [(1,)], 5,
               what="delivery mark committed by the recorder")
    st = rig.uplink.status()
    assert st["state"] == "online" and st["centre"] == f"127.0.0.1:{centre.port}"


def test_an_outage_is_replayed_in_order_with_fire_alarms_first(tmp_path):
    port = free_port()
    r = Rig(tmp_path, port)
    try:
        r.uplink.start()
        telemetry = r.add("telemetry", pressure(0.31))
        fault = r.add("fault", sensor_fault())
        first = r.add("alarm", smoke_alarm())
        cleared = r.add("alarm", smoke_alarm("cleared", "cleared"))
        wait_until(lambda: r.uplink.status()["state"] == "unreachable", 5, what="centre unreachable")
        with Gb26875Centre(port=port, address="000000015b38") as c:
            wait_until(lambda: len(c.confirmed()) == 4, 10, what="backlog replayed")
            kinds = [(u["type"], u["objects"][0].get("state")) for u in c.confirmed()]
            assert kinds == [(2, dt.RUNNING | dt.FIRE), (2, dt.RUNNING), (2, dt.RUNNING | dt.FAULT), (3, None)]
            assert c.confirmed()[3]["objects"][0]["value"] == pytest.approx(310.0)  # kPa, 0.1 kPa steps
            wait_until(lambda: r.cursor.pending() == 0, 5, what="nothing pending")
        assert sorted([telemetry, fault, first, cleared]) == [telemetry, fault, first, cleared]
    finally:
        r.close()


def test_denied_every_time_is_declared_failed_and_the_next_event_goes_on(rig, centre):
    centre.deny = -1
    rig.uplink.start()
    seq = rig.add("alarm", smoke_alarm())
    wait_until(lambda: rig.faults("denied"), 10, what="the denial declared")
    assert len(centre.of("send")) >= 1 + rig.cfg.resends  # sent, then resent 3 times, same serial
    serials = {ln["frame"]["serial"] for ln in centre.of("send") if ln.get("unit")}
    assert len(serials) == 1
    assert rig.faults("denied")[0]["failed_seq"] == seq
    centre.deny = 0
    rig.add("fault", sensor_fault())
    wait_until(lambda: centre.confirmed(), 5, what="the next event confirmed")
    assert rig.uplink.status()["failed"] == 1


def test_an_event_a_live_centre_never_confirms_cannot_wedge_the_ones_behind_it(rig, centre):
    centre.ignore = lambda unit: unit["type"] == dt.COMPONENT_STATE and unit["objects"][0]["state"] & dt.FAULT
    rig.uplink.start()
    stuck = rig.add("fault", sensor_fault())
    rig.add("telemetry", pressure(0.3))
    wait_until(lambda: rig.faults("ignored"), 20, what="the ignored event declared")
    assert rig.faults("ignored")[0]["failed_seq"] == stuck
    wait_until(lambda: any(u["type"] == dt.ANALOG for u in centre.confirmed()), 5, what="the next event goes on")
    st = rig.uplink.status()
    assert st["probes"] == 3 and st["failed"] == 1 and st["connects"] == 1  # the line was never reset
    assert not rig.faults("unconfirmed")  # the centre was alive all along: no outage declared


def test_unconfirmed_is_resent_then_the_line_is_reset_and_nothing_is_lost(rig, centre):
    centre.stall = 2  # two sends lost: the third (second resend) is confirmed
    rig.uplink.start()
    rig.add("alarm", smoke_alarm())
    wait_until(lambda: centre.confirmed(), 5, what="confirmed after resends")
    assert rig.uplink.status()["resent"] == 2
    centre.stall = -1  # the centre stops answering altogether
    seq = rig.add("alarm", smoke_alarm("cleared", "cleared"))
    wait_until(lambda: rig.faults("unconfirmed"), 10, what="outage declared")
    assert rig.uplink.status()["state"] in ("unconfirmed", "online", "connecting")
    centre.stall = 0
    wait_until(lambda: len(centre.confirmed()) == 2, 10, what="sent again after the reset")
    wait_until(lambda: [f for t, f in rig.events if f.get("state") == "recovered"], 5, what="recovery declared")
    assert rig.uplink.status()["connects"] >= 2
    wait_until(lambda: rig.outbox.query("SELECT state FROM deliveries WHERE seq = ?", (seq,)) == [(1,)], 5,
               what="delivered")


@pytest.mark.parametrize("how", ["drop", "cut"])
def test_a_centre_that_drops_the_line_mid_exchange_gets_the_event_again(rig, centre, how):
    setattr(centre, how, 1)  # drop: closed without an answer; cut: closed half-way through the confirm
    rig.uplink.start()
    rig.add("alarm", smoke_alarm())
    wait_until(lambda: centre.confirmed(), 10, what="confirmed after the reconnect")
    assert rig.uplink.status()["connects"] >= 2


def test_garbage_and_floods_from_the_centre_never_stop_the_alarms(rig, centre):
    rig.uplink.start()
    wait_until(lambda: centre.connections() == 1, 5, what="connected")
    good = codec.Frame(7, codec.REQUEST, codec.address("000000015b38"), codec.address("000000000379"),
                       bytes([dt.READ_DEVICE_STATE, 1, 0])).encode()
    bad_sum = good[:-3] + bytes([(good[-3] + 1) & 0xFF]) + b"##"
    elsewhere = codec.Frame(8, codec.REQUEST, codec.address("000000015b38"), codec.address("000000000999"),
                            bytes([dt.READ_DEVICE_STATE, 1, 0])).encode()
    stranger = codec.Frame(9, codec.REQUEST, codec.address("000000000777"), codec.address("000000000379"),
                           bytes([dt.READ_DEVICE_STATE, 1, 0])).encode()
    lying = bytearray(good)
    lying[24:26] = (5000).to_bytes(2, "little")
    centre.send_raw(b"\xff\x00garbage" + bad_sum + bytes(lying) + elsewhere + stranger + good[:15])
    centre.send_raw(good[15:] + good * 300)  # and a flood of reads
    rig.add("alarm", smoke_alarm())
    wait_until(lambda: centre.confirmed(), 5, what="the alarm still confirmed")
    st = rig.uplink.status()
    assert st["bad_frames"] >= 2 and st["misaddressed"] == 2 and st["thread_alive"]
    denies = [ln for ln in centre.of("deny") if ln["frame"]["serial"] == 7]
    assert denies  # the frame with a bad checksum was denied (its serial was readable)
    # the flood was cut down to the answer rate (the alarm goes first: the flood may still be read)
    wait_until(lambda: rig.uplink.status().get("answers_dropped", 0) > 0, 10, what="answers dropped")


def test_an_outbox_fault_is_the_device_state_and_a_read_answers_with_it(rig, centre):
    rig.uplink.start()
    rig.add("fault", {"component": "outbox", "state": "fault", "reason": "unwritable", "detail": "disk full"})
    wait_until(lambda: any(u["type"] == dt.DEVICE_STATE for u in centre.confirmed()), 5, what="device state")
    assert next(u for u in centre.confirmed() if u["type"] == dt.DEVICE_STATE)["objects"][0]["state"] == (
        dt.DEV_RUNNING | dt.DEV_FAULT)
    read = centre.request("read_state")
    wait_until(lambda: any(ln["frame"]["serial"] == read and ln["unit"]["objects"][0]["state"] & dt.DEV_FAULT
                           for ln in centre.of("answer")), 5, what="the read answered with the fault")


def test_duty_check_clock_sync_and_reads_are_answered(rig, centre):
    rig.uplink.start()
    wait_until(lambda: centre.connections() == 1, 5, what="connected")
    duty = centre.request("duty_check")
    wait_until(lambda: any(ln["frame"]["serial"] == duty for ln in centre.of("confirm")), 5, what="duty confirm")
    wait_until(lambda: any(u["type"] == dt.DEVICE_OPERATION and u["objects"][0]["flags"] & dt.OP_DUTY_ANSWER
                           for u in centre.confirmed()), 5, what="查岗应答 operation record")
    sync = centre.request("sync_clock")
    wait_until(lambda: any(ln["frame"]["serial"] == sync for ln in centre.of("confirm")), 5, what="sync confirm")
    read = centre.request("read_state")
    wait_until(lambda: any(ln["frame"]["serial"] == read and ln["unit"]["type"] == dt.DEVICE_STATE
                           for ln in centre.of("answer")), 5, what="device state answered")
    clock = centre.request("read_time")
    wait_until(lambda: any(ln["frame"]["serial"] == clock and ln["unit"]["type"] == dt.DEVICE_TIME
                           for ln in centre.of("answer")), 5, what="device time answered")
    unknown = centre.request("unknown_request")
    wait_until(lambda: any(ln["frame"]["serial"] == unknown for ln in centre.of("deny")), 5, what="denied")
    st = rig.uplink.status()
    assert st["duty_checks"] == 1 and st["last_duty_check"] and abs(st["centre_clock_offset_s"]) < 5


def test_keepalives_keep_a_quiet_link_checked_and_a_denied_one_is_still_an_answer(tmp_path, centre):
    r = Rig(tmp_path, centre.port, heartbeat_s=0.2)
    try:
        r.uplink.start()
        wait_until(lambda: r.uplink.status().get("heartbeats", 0) >= 2, 5, what="keep-alives confirmed")
        heartbeats = r.uplink.status()["heartbeats"]
        centre.deny_keepalives = True  # a centre that does not take empty send-data frames
        wait_until(lambda: r.uplink.status().get("keepalives_denied", 0) >= 2, 5, what="denied keep-alives")
        st = r.uplink.status()
        assert st["connects"] == 1 and st["heartbeats"] > heartbeats and not r.faults("unconfirmed")
    finally:
        r.close()
