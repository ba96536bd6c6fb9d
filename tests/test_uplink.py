"""The uplink against a real mosquitto, with the reference receiver as the platform.

Every test's receiver validates each payload against the schemas in gateway/contract; `assert not rx.invalid` is how
"all payloads validate" is checked wherever the gateway publishes.
"""

import json
import os
import signal
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config.model import Outbox as OutboxLimits
from gateway.config.model import Uplink as UplinkConfig
from gateway.platform import Receiver
from gateway.record import Event, Health, Outbox, Recorder, TelemetryAggregator
from gateway.sync import Uplink
from mosquitto import Mosquitto, wait_for

GW = "pd-zhangjiang-001"
BIRTH = {"firmware": "0.1.0-test", "config_hash": "sha256:abc", "sensors": ["water-1", "smoke-1"]}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def alarm(n, level="red"):
    return {"alarm": f"water-1.level#{n}", "rule": "water-1.level", "sensor": "water-1", "point": "level",
            "transition": "raised", "level": level, "previous_level": None, "value": 31.5, "unit": "cm",
            "state": "active"}


def telemetry(i):
    return {"sensor": "water-1", "point": "level", "unit": "cm", "quality": "good", "reason": "period",
            "period_s": 60.0, "count": 60, "bad": 0, "min": i, "max": i, "mean": float(i), "last": i}


def make_uplink(broker, outbox, gw=GW, **cfg):
    cfg = UplinkConfig(**{"host": broker.host, "port": broker.port, "replay_per_s": 10_000, **cfg})
    return Uplink(cfg, outbox, gw, BIRTH, backoff_initial_s=0.1, backoff_max_s=0.5)


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.close()


@pytest.fixture
def receiver(broker):
    rx = Receiver(broker.host, broker.port).start()
    yield rx
    rx.close()


def delivered_all(rx, outbox):
    """Every seq the outbox ever issued arrived, or is declared gone."""
    expected = set(range(1, outbox.next_seq))
    got = rx.seqs()
    return got >= expected - {s for lo, hi in rx.declared_gaps(GW) for s in range(lo, hi + 1)}


def test_broker_down_at_boot_then_up_everything_arrives_alarms_first(tmp_path):
    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    # the platform's persistent session: the broker keeps queueing for it across its own restart
    rx = Receiver(broker.host, broker.port, session="platform-a").start()
    broker.stop()
    ob = Outbox(tmp_path / "o.db", GW, OutboxLimits(max_rows=60), evict_fraction=0.1)
    up = make_uplink(broker, ob, replay_per_s=500).start()
    try:
        for i in range(100):
            ob.add("telemetry", telemetry(i))
            if i % 10 == 5:
                ob.add("alarm", alarm(i))
        wait_for(lambda: up.status()["attempts"] >= 2, 10, what="reconnect attempts")
        assert up.status()["state"] == "unreachable" and "cannot reach" in up.status()["last_error"]
        assert ob.stats()["evicted"] > 0  # the outage outlasted the outbox: a declared gap
        broker.start()
        wait_for(lambda: delivered_all(rx, ob), 30, what="the backlog at the platform")
        wait_for(lambda: ob.stats()["pending"] == 0, 10, what="every row PUBACKed")
    finally:
        up.stop()
        rx.stop()
        broker.close()
    assert not rx.invalid
    assert rx.undeclared_gaps() == []
    assert rx.declared_gaps(GW), "the eviction was declared"
    order = [e["type"] for e in rx.events]
    assert max(i for i, t in enumerate(order) if t == "alarm") < min(i for i, t in enumerate(order) if t == "telemetry")
    assert all(e["replay"] for e in rx.events), "recorded during the outage = backlog"
    assert rx.presence[GW]["state"] == "offline"  # the clean stop published it


def test_live_alarm_overtakes_a_paced_backlog(broker, receiver):
    ob = Outbox(os.path.join(broker.dir, "o.db"), GW)
    ob.add_many([Event("telemetry", telemetry(i)) for i in range(150)])
    up = make_uplink(broker, ob, replay_per_s=50).start()
    try:
        wait_for(lambda: len(receiver.events) >= 10, 10, what="replay to start")
        t0 = time.monotonic()
        live = ob.add("alarm", alarm(1))
        wait_for(lambda: live in receiver.seqs(), 2, what="the live alarm")
        alarm_latency = time.monotonic() - t0
        backlog_left = 150 - len(receiver.of_type("telemetry"))
        wait_for(lambda: len(receiver.events) == 151, 15, what="the whole backlog")
        st = wait_for(lambda: (s := up.status())["delivered"] == 151 and s, 5, what="the last PUBACK")
    finally:
        up.stop()
    assert alarm_latency < 0.5 and backlog_left > 50, (alarm_latency, backlog_left)
    received = receiver.store.db.execute(
        "SELECT min(received), max(received) FROM events WHERE type = 'telemetry'").fetchone()
    # 150 at 50/s with a burst of one batch (the bucket saves up min(50, batch.MAX_READINGS) readings,
    # gateway/sync/uplink.py): at least (150 - 50) / 50 = 2 s; generous both ways
    assert 1.5 < received[1] - received[0] < 8.0, received
    (a,) = receiver.of_type("alarm")
    assert a["replay"] is False and all(e["replay"] for e in receiver.of_type("telemetry"))
    assert st["replayed"] == 150 and st["delivered"] == 151 and st["inflight"] == 0
    assert not receiver.invalid


KILL_SCRIPT = r"""
import sys, time
from gateway.config.model import Uplink as UplinkConfig
from gateway.record import Outbox
from gateway.sync import Uplink
path, port, gw, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
ob = Outbox(path, gw)
cfg = UplinkConfig(host="127.0.0.1", port=port, replay_per_s=20000, inflight_max=20)
Uplink(cfg, ob, gw, {"firmware": "t", "config_hash": "h", "sensors": ["w"]}, backoff_initial_s=0.1).start()
for i in range(n):
    if i % 25 == 0:
        fields = {"sensor": "w", "point": "p", "transition": "raised", "level": "red", "state": "active"}
        seq = ob.add("alarm", fields)
    else:
        seq = ob.add("telemetry", {"sensor": "w", "point": "p", "unit": "m", "quality": "good", "reason": "period",
                                   "period_s": 1.0, "count": 1, "min": i, "max": i, "mean": i, "last": i})
    print(seq, flush=True)
    time.sleep(0.001)
print("done", flush=True)
time.sleep(600)
"""


def run_gateway(tmp_path, broker, n):
    script = tmp_path / "gateway_proc.py"
    script.write_text(KILL_SCRIPT)
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "o.db"), str(broker.port), GW, str(n)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)


def read_committed(proc, until: int, timeout: float = 20) -> list[int]:
    seqs, deadline = [], time.monotonic() + timeout
    while len(seqs) < until and time.monotonic() < deadline:
        line = proc.stdout.readline().strip()
        if line == "done" or not line:
            break
        seqs.append(int(line))
    return seqs


def test_kill_9_mid_flow_every_committed_event_arrives_and_lwt_says_offline(tmp_path, broker, receiver):
    proc = run_gateway(tmp_path, broker, 5000)
    try:
        committed = read_committed(proc, 1500)
        assert len(committed) == 1500
        wait_for(lambda: receiver.presence.get(GW, {}).get("state") == "online", 10, what="birth")
        proc.send_signal(signal.SIGKILL)  # mid-flow: events in flight, others not yet sent
        proc.wait(10)
        # (c) the broker publishes the retained last will: {"state": "offline"}, no ts
        wait_for(lambda: receiver.presence.get(GW) == {"state": "offline"}, 10, what="the LWT")
        before_restart = len(receiver.events)
        proc = run_gateway(tmp_path, broker, 50)
        committed += read_committed(proc, 50)
        wait_for(lambda: receiver.seqs() >= set(committed), 30, what="every committed event")
    finally:
        proc.kill()
        proc.wait(10)
    assert before_restart < len(committed), "the kill came before everything was sent"
    assert receiver.undeclared_gaps() == []
    assert not receiver.invalid
    # at-least-once: whatever was in flight at the kill may arrive twice; the receiver drops those. In
    # flight: at most inflight_max (20) messages, a telemetry batch of up to MAX_READINGS rows each
    # (seen: 24 duplicates, 2-3 readings a batch at this rate)
    from gateway.record import batch
    assert receiver.duplicates <= 20 * batch.MAX_READINGS
    assert len(receiver.events) == len({e["id"] for e in receiver.events})
    retained = subscribe_retained(broker, f"city/v1/{GW}/status")
    assert json.loads(retained) == {"state": "offline"}


def subscribe_retained(broker, topic):
    got = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.on_message = lambda cl, u, m: got.append(m.payload)
    c.connect(broker.host, broker.port)
    c.subscribe(topic, qos=1)
    c.loop_start()
    try:
        wait_for(lambda: got, 5, what=f"retained message on {topic}")
    finally:
        c.disconnect()
        c.loop_stop()
    return got[0]


def test_every_payload_type_validates_against_the_schemas(tmp_path, broker):
    lines = []
    rx = Receiver(broker.host, broker.port, echo=lines.append).start()
    ob = Outbox(tmp_path / "o.db", GW, OutboxLimits(max_rows=30), evict_fraction=0.2)
    rec = Recorder(ob, TelemetryAggregator(period_s=0.05, deadband=0.05), health=Health(ob),
                   status_period_s=0.05).start()
    up = make_uplink(broker, ob).start()
    try:
        wait_for(lambda: rx.presence.get(GW, {}).get("state") == "online", 10, what="birth")
        from gateway.reading import Reading
        for v in (1.0, 1.01, 2.0, None):
            rec.reading(Reading("water-1", "level", v, "m", "good" if v else "fault", time.time(),
                                time.monotonic(), None if v else "timeout"))
        rec.submit("alarm", alarm(1))
        rec.submit("fault", {"sensor": "water-1", "point": "level", "state": "fault", "quality": "fault",
                             "reason": "timeout"})
        rec.submit("audit", {"action": "silence", "actor": "cli", "detail": {"output": "siren-1"}})
        rec.flush()
        up.stop()  # clean shutdown: offline with ts
        ob.add_many([Event("telemetry", telemetry(i)) for i in range(40)])  # evicts: a gap event
        up = make_uplink(broker, ob).start()
        wait_for(lambda: {e["type"] for e in rx.events} >= {"alarm", "fault", "telemetry", "status", "audit",
                                                            "gap"}, 10, what="one event of every type")
        wait_for(lambda: delivered_all(rx, ob), 10, what="everything")
    finally:
        up.stop()
        rec.stop()
        rx.stop()
    assert not rx.invalid, rx.invalid
    states = [(p["state"], "ts" in p) for gw, p in rx.presence_history]
    assert ("online", True) in states and ("offline", True) in states
    birth = next(p for _, p in rx.presence_history if p["state"] == "online")
    assert birth["firmware"] == "0.1.0-test" and birth["sensors"] == ["water-1", "smoke-1"]
    assert any("EVICTED" in line for line in lines) and any(" alarm " in line for line in lines)


def test_commands_reach_the_callback_and_replies_go_out(broker):
    commands, replies = [], []
    ob = Outbox(os.path.join(broker.dir, "o.db"), GW)
    up = make_uplink(broker, ob)
    up.on_command = lambda name, payload: (commands.append((name, payload)), up.reply({"ok": True, "cmd": name}))
    up.start()
    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.on_message = lambda cl, u, m: replies.append(json.loads(m.payload))
    c.connect(broker.host, broker.port)
    c.subscribe(f"city/v1/{GW}/reply", qos=1)
    c.loop_start()
    try:
        wait_for(lambda: up.status()["state"] == "online", 10, what="uplink online")
        c.publish(f"city/v1/{GW}/cmd/silence", b'{"output": "siren-1"}', qos=1)
        wait_for(lambda: replies, 10, what="the reply")
    finally:
        c.disconnect()
        c.loop_stop()
        up.stop()
    assert commands == [("silence", b'{"output": "siren-1"}')]
    assert replies == [{"ok": True, "cmd": "silence"}]


def test_broker_restart_mid_session_everything_arrives(tmp_path):
    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    rx = Receiver(broker.host, broker.port, session="platform-b").start()
    ob = Outbox(tmp_path / "o.db", GW)
    up = make_uplink(broker, ob).start()
    try:
        wait_for(lambda: up.status()["state"] == "online", 10, what="online")
        ob.add_many([Event("telemetry", telemetry(i)) for i in range(2000)])
        wait_for(lambda: up.status()["delivered"] > 100, 10, what="the flow to start")
        broker.stop()  # mid-flow: some rows in flight
        ob.add("alarm", alarm(1))  # recorded while the broker is away
        wait_for(lambda: up.status()["state"] != "online", 10, what="the loss to be noticed")
        assert ob.stats()["pending"] > 0
        broker.start()
        wait_for(lambda: delivered_all(rx, ob), 30, what="everything at the platform")
        wait_for(lambda: ob.stats()["pending"] == 0, 10, what="the outbox to drain")
        st = up.status()
    finally:
        up.stop()
        rx.stop()
        broker.close()
    assert st["connects"] == 2 and st["state"] == "online"
    assert rx.undeclared_gaps() == [] and not rx.invalid
    (a,) = rx.of_type("alarm")
    assert a["replay"] is True  # recorded while offline
