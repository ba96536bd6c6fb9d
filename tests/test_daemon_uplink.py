"""The whole flow as the platform sees it: simulated sensors -> `gateway run` (a process) ->
a real mosquitto the test starts -> `gateway-platform`'s Receiver, validating every payload
against the contract's schemas."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime

import pytest

from drivers.sim.modbus_device import SimBus
from gateway.config import load_config
from gateway.platform import Receiver
from tests.daemonkit import run_daemon, stop_daemon, write_config
from tests.mosquitto import Mosquitto, wait_for

GW = "uplink-gw"


def _config(tmp_path, sim_port: int, broker_port: int) -> str:
    return write_config(tmp_path, GW, sim_port, above={"yellow": 15, "red": 40}, hydrant=True, extra=f"""
        [uplink]
        host = "127.0.0.1"
        port = {broker_port}
        topic_root = "city/v1"
        client_id = "{GW}"
        replay_per_s = 500

        [outbox]
        telemetry_period_s = 1
        status_period_s = 1
    """)


@pytest.fixture
def field(tmp_path):
    # persistence + the receiver's persistent session: the subscription outlives a broker restart.
    # Without it an event the gateway publishes after the restart but before the receiver has
    # re-subscribed has no subscriber: mosquitto acks it (the gateway rightly marks it delivered) and
    # drops it, and the test waits forever (seen: the replayed alarm PUBLISHed 0.3 s before the
    # receiver's SUBSCRIBE, in about 1 run of 4 once the gateway came back within 1 s).
    with Mosquitto(tmp_path / "broker", persistence=True) as broker, SimBus.tcp("127.0.0.1", 0) as sim:
        path = _config(tmp_path, sim.port, broker.port)
        cfg = load_config(path)
        sim.add_device(1, cfg.sensors["garage-b2-water"].profile, {"level": 2.0})
        sim.add_device(2, cfg.sensors["hydrant-3"].profile, {"pressure": 0.3})
        rx = Receiver("127.0.0.1", broker.port, session="platform-uplink-test").start()
        try:
            yield broker, sim, path, rx
        finally:
            rx.close()


def test_alarm_fault_telemetry_and_status_reach_the_platform_and_validate(field):
    broker, sim, path, rx = field
    proc = run_daemon(path)
    try:
        wait_for(lambda: rx.presence.get(GW, {}).get("state") == "online", 20, what="birth")
        sim.set_value(1, "level", 45.0)
        wait_for(lambda: any(e.get("transition") == "raised" and e["level"] == "red" for e in rx.of_type("alarm")),
                 20, what="red alarm at the platform")
        sim.behave(2, "dead")
        wait_for(lambda: any(e.get("sensor") == "hydrant-3" and e.get("state") == "fault" for e in rx.of_type("fault")),
                 20, what="hydrant fault at the platform")
        wait_for(lambda: rx.of_type("telemetry") and rx.of_type("status"), 20, what="telemetry and status")
        r = subprocess.run([sys.executable, "-m", "gateway.cli", "status", "-c", path, "--json"],
                           capture_output=True, text=True, timeout=20)
        st = json.loads(r.stdout)
        assert st["uplink"]["state"] == "online", st["uplink"]
    finally:
        out = stop_daemon(proc)
    wait_for(lambda: rx.presence.get(GW, {}).get("state") == "offline", 10, what="offline on clean stop")
    assert rx.invalid == [], rx.invalid  # every payload matched the schemas
    assert rx.undeclared_gaps(GW) == []
    birth = [p for g, p in rx.presence_history if g == GW and p.get("state") == "online"][0]
    assert birth["config_hash"] == load_config(path).text_hash
    assert "Traceback" not in out


def test_broker_outage_events_are_kept_and_delivered_alarms_first(field):
    broker, sim, path, rx = field
    proc = run_daemon(path)
    try:
        wait_for(lambda: rx.presence.get(GW, {}).get("state") == "online", 20, what="birth")
        broker.stop()
        down_at = time.time()
        sim.set_value(1, "level", 20.0)  # yellow while the uplink is down
        state = None

        def status():
            nonlocal state
            r = subprocess.run([sys.executable, "-m", "gateway.cli", "status", "-c", path, "--json"],
                               capture_output=True, text=True, timeout=20)
            state = json.loads(r.stdout)
            return state["outbox"]["depth"]["alarm"] >= 1 and state["uplink"]["state"] != "online"

        wait_for(status, 20, what="the alarm waiting in the outbox")
        n_before = len(rx.events)
        broker.start()
        # the gateway is back within ~1 s of the broker (probes, not a grown backoff: issue 14 item 5) and
        # the receiver within its own 2 s; 20 s is load margin on a shared machine
        wait_for(lambda: any(e.get("transition") == "raised" and e["level"] == "yellow" for e in rx.of_type("alarm")),
                 20, what="alarm delivered after the outage")
        # Of the events made while the broker was away, the alarm comes first (messages that were
        # in flight at the disconnect are re-sent before them, one by one).
        made_offline = [e for e in rx.events[n_before:] if e["type"] in ("alarm", "telemetry")
                        and datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp() > down_at]
        new = made_offline
        assert new and new[0]["type"] == "alarm", [(e["seq"], e["type"]) for e in new[:5]]
        assert new[0]["replay"] is True  # sent from the backlog
    finally:
        stop_daemon(proc)
    assert rx.undeclared_gaps(GW) == []
    assert rx.invalid == []
