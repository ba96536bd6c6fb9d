"""A flood of forged commands has a budget (issue 12, item 5).

Before: 2,000 forged commands in 0.03 s each became an audit event (never evicted, never rate-limited)
and a reply; with the outbox bounded at max_rows = 3000, 1,440 buffered telemetry events were evicted
to make room for them. Now one audit event per reason per minute carries the count, at most a few
replies per reason go out, and no rejection audit is written while the outbox lacks room for it."""

from __future__ import annotations

import json
import time

from drivers.gpio.sim import SimGpio
from gateway.commands import CommandHandler
from gateway.commands.rejections import REPLIES_PER_WINDOW, RejectionBudget, outbox_room
from gateway.config import load_config
from gateway.platform.keys import keygen, load_private_key
from gateway.platform.sign import sign_command
from gateway.service.daemon import Daemon
from test_commands import COMMANDS_TABLE, CONFIG, GW, Site

FLOOD = 2_000


def forged(key, n):
    """`n` commands as an attacker makes them: a real command's shape with a signature of its own."""
    good = sign_command(key, GW, "silence", {})
    out = []
    for i in range(n):
        cmd = dict(good, id=f"forged-{i}", sig="A" * 86)  # unsigned by any pinned key
        out.append(json.dumps(cmd).encode())
    return out


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_one_audit_per_reason_per_minute_with_the_count():
    clock, audits = Clock(), []
    budget = RejectionBudget(audits.append, clock=clock, wall=clock)
    answered = [budget.rejected(reason, {"command": "silence", "detail": f"#{i}"})
                for i in range(FLOOD) for reason in ("bad_signature", "unsigned")]
    assert [(a["detail"], a["count"]) for a in audits] == [("#0", 1), ("#0", 1)], "the first, at once"
    assert sum(answered) == 2 * REPLIES_PER_WINDOW
    clock.t += 60
    budget.flush()
    assert [(a["reason"] if "reason" in a else None, a["count"]) for a in audits[2:]] == [(None, FLOOD - 1)] * 2
    assert "1999 more commands rejected as" in audits[2]["detail"] and audits[2]["window_s"] == 60
    clock.t += 60
    budget.flush()
    assert len(audits) == 4, "a quiet minute writes nothing"
    budget.rejected("unsigned", {"detail": "later"})
    assert audits[-1]["count"] == 1, "after a quiet minute the next refusal is audited at once again"
    budget.close()


def test_no_room_in_the_outbox_carries_the_count():
    clock, audits, room = Clock(), [], [False]
    budget = RejectionBudget(audits.append, room=lambda: room[0], clock=clock, wall=clock)
    for _ in range(500):
        budget.rejected("unsigned", {})
    clock.t += 60
    budget.flush()
    assert audits == []
    room[0] = True
    for _ in range(5):
        budget.rejected("unsigned", {})
    clock.t += 60
    budget.flush()
    assert [a["count"] for a in audits] == [505], "a count is never lost, only coarser"
    budget.close()


class BoundedSite(Site):
    """The test_commands site with its outbox bounded at 3,000 rows (a small card, a long outage)."""

    def __init__(self, root):
        (root / "keys").mkdir(exist_ok=True)
        keygen(str(root / "keys" / "platform"))
        (root / "gateway.toml").write_text(CONFIG + COMMANDS_TABLE + "\n[outbox]\nmax_rows = 3000\n")
        self.root, self.key = root, load_private_key(str(root / "keys" / "platform.key"))
        self.pins = SimGpio()
        self.daemon = Daemon(load_config(str(root / "gateway.toml")), gpio=self.pins).start()
        self.replies = []
        d = self.daemon
        self.handler = CommandHandler.from_daemon(d, audit=lambda f: d._record("audit", f, time.time()),
                                                  reply=self.replies.append, room=lambda: outbox_room(d.outbox))


def test_a_flood_evicts_no_telemetry_from_a_full_outbox(tmp_path):
    site = BoundedSite(tmp_path)
    d = site.daemon
    try:
        d.outbox.add_many([("telemetry", {"sensor": "garage-b2-water", "point": "level", "value": float(i),
                                          "unit": "cm", "quality": "good"}, time.time()) for i in range(2_800)])
        started = time.monotonic()
        for payload in forged(site.key, FLOOD):
            site.handler.handle("silence", payload)
        spent = time.monotonic() - started
        site.handler.close()  # writes the pending summary now instead of in a minute
        assert d.recorder.flush(10)
        stats = d.outbox.stats()
        assert stats["evicted"] == 0, f"the flood evicted {stats['evicted']} telemetry events"
        assert stats["depth"]["telemetry"] >= 2_800
        assert stats["pending"] <= 2_800 + 10, stats
        assert len(site.replies) <= REPLIES_PER_WINDOW
        assert site.handler.rejections.counts == {"bad_signature": FLOOD}
        audits = [e for e in d.events.snapshot()[0] if e["type"] == "audit"]
        assert [a["count"] for a in audits] == [1, FLOOD - 1]
        print(f"{FLOOD} forged commands refused in {spent:.2f} s")
    finally:
        site.daemon.stop()


UPLINK_SITE = '''
[uplink]
host = "127.0.0.1"
port = {port}
'''


def test_a_flood_through_the_broker_gets_ten_replies_and_the_alarm_goes_out(tmp_path):
    """Through mosquitto and the real Uplink, wired as `gateway run` wires it. Before: every forged
    command got a reply, queued on the uplink ahead of the next alarm event."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from gateway.reading import Reading
    from gateway.service.process import CurrentDaemon, _command_handler
    from mosquitto import Mosquitto, wait_for

    broker = Mosquitto(tmp_path / "broker").start()
    (tmp_path / "keys").mkdir()
    keygen(str(tmp_path / "keys" / "platform"))
    (tmp_path / "gateway.toml").write_text(CONFIG + COMMANDS_TABLE + UPLINK_SITE.format(port=broker.port))
    d = Daemon(load_config(str(tmp_path / "gateway.toml")), gpio=SimGpio())
    handler = _command_handler(CurrentDaemon(d))
    d.on_command = handler.handle
    replies, alarms = [], []
    platform = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="platform")
    platform.on_message = lambda c, u, m: (alarms if m.topic.endswith("/alarm") else replies).append(
        json.loads(m.payload))
    platform.connect(broker.host, broker.port)
    platform.subscribe([(f"city/v1/{GW}/reply", 1), (f"city/v1/{GW}/event/alarm", 1)])
    platform.loop_start()
    attacker = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="attacker")
    attacker.max_inflight_messages_set(1000)
    attacker.connect(broker.host, broker.port)
    attacker.loop_start()
    try:
        d.start()
        wait_for(lambda: d.uplink.status()["state"] == "online", 10, what="uplink online")
        for payload in forged(load_private_key(str(tmp_path / "keys" / "platform.key")), FLOOD):
            attacker.publish(f"city/v1/{GW}/cmd/silence", payload, qos=1)
        wait_for(lambda: sum(handler.rejections.counts.values()) >= FLOOD // 10, 30, what="the flood arriving")
        d.safety.submit(Reading("garage-b2-water", "level", 45.0, "cm", "good", time.time(), time.monotonic()))
        wait_for(lambda: alarms, 30, what="the alarm at the platform")
        wait_for(lambda: sum(handler.rejections.counts.values()) >= FLOOD, 60, what="every forged command handled")
        # Replies leave in order on one topic: once this last one is in, every flood reply is too.
        d.uplink.reply({"id": "marker", "ok": True, "message": "after the flood"})
        wait_for(lambda: any(r["id"] == "marker" for r in replies), 30, what="the marker reply")
        assert len(replies) == REPLIES_PER_WINDOW + 1, f"{len(replies) - 1} replies to {FLOOD} forged commands"
        assert alarms[0]["level"] == "red"
    finally:
        attacker.disconnect()
        attacker.loop_stop()
        platform.disconnect()
        platform.loop_stop()
        handler.close()
        d.stop()
        broker.close()
