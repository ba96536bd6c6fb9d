"""The broker is stopped for 2 minutes (soak: 10) while alarms and telemetry keep coming, then started
again. Everything made during the outage is delivered after it returns; of those events, every alarm
reaches the platform before any telemetry; no undeclared seq gap.

The platform keeps a persistent session on a broker with persistence (the conftest fixtures), so what
the gateway publishes in the seconds before the receiver has re-subscribed is queued for it."""

from __future__ import annotations

import threading
import time

import pytest

from drivers.sim.modbus_device import SimBus
from faultkit import GW, missing_seqs, outbox_max_seq, ranges, report, ts_of, write_config
from gateway.config import load_config
from tests.daemonkit import garage_toml
from tests.mosquitto import wait_for


def outage(tmp_path, broker, rx, gateways, outage_s: float):
    stop = threading.Event()
    try:
        with SimBus.tcp("127.0.0.1", 0) as sim:
            body = garage_toml(sim.port, poll_s=0.2, above={"yellow": 15, "red": 40}, hysteresis=2, hydrant=True)
            path = write_config(tmp_path, body, broker_port=broker.port,
                                outbox="telemetry_period_s = 1\nstatus_period_s = 10")
            cfg = load_config(path)
            sim.add_device(1, cfg.sensors["garage-b2-water"].profile, {"level": 2.0})
            sim.add_device(2, cfg.sensors["hydrant-3"].profile, {"pressure": 0.3})

            def flood():  # yellow for 3 s in every 6: an alarm raised and cleared every cycle
                high = False
                while not stop.wait(3.0):
                    high = not high
                    sim.set_value(1, "level", 20.0 if high else 2.0)

            producer = threading.Thread(target=flood, daemon=True)
            producer.start()
            gw = gateways(path, tmp_path / "daemon.log")
            gw.wait_up(30)
            wait_for(lambda: rx.presence.get(GW, {}).get("state") == "online", 30, what="birth at the platform")
            wait_for(lambda: rx.of_type("alarm") and rx.of_type("telemetry"), 30, what="events flowing")

            broker.stop()
            wait_for(lambda: (gw.status() or {}).get("uplink", {}).get("state") not in (None, "online"), 30,
                     what="the gateway to notice the broker is gone")
            # From here nothing new can be in flight: what is made now waits in the outbox.
            off_at = time.time()
            time.sleep(outage_s)  # the planned outage
            on_at = time.time()
            backlog_max = outbox_max_seq(gw)
            st = gw.status()
            broker.start()
            wait_for(lambda: not missing_seqs(rx, GW, backlog_max), 180,
                     what=f"the outage backlog (seq <= {backlog_max}) at the platform")
            delivered_s = time.time() - on_at
            stop.set()
            producer.join(5)
            final_max = outbox_max_seq(gw)
            wait_for(lambda: not missing_seqs(rx, GW, final_max), 60, what=f"every seq up to {final_max}")
            assert gw.stop() == 0, gw.log_tail()
        made_offline = [e for e in rx.events if off_at < ts_of(e) < on_at and e["type"] in ("alarm", "telemetry")]
        alarms = [i for i, e in enumerate(made_offline) if e["type"] == "alarm"]
        tele = [i for i, e in enumerate(made_offline) if e["type"] == "telemetry"]
        report(f"broker outage {outage_s:.0f} s: {len(alarms)} alarms and {len(tele)} telemetry made offline "
               f"(outbox depth at restart {st['outbox']['depth']}), backlog delivered {delivered_s:.1f} s after "
               f"the broker returned, duplicates {rx.duplicates}, max seq {final_max}")
        assert len(alarms) >= outage_s / 6 and len(tele) >= outage_s, (len(alarms), len(tele))
        assert max(alarms) < min(tele), \
            f"telemetry overtook an alarm: {[(e['seq'], e['type']) for e in made_offline[:max(alarms) + 1]]}"
        assert all(e["replay"] for e in made_offline)  # sent from the backlog, and flagged so
        assert missing_seqs(rx, GW, final_max) == [], ranges(missing_seqs(rx, GW, final_max))
        assert rx.undeclared_gaps(GW) == [] and rx.declared_gaps(GW) == []
        assert rx.invalid == [], rx.invalid[:3]
    finally:
        stop.set()


def test_broker_outage_2_minutes_everything_delivered_alarms_first(tmp_path, broker, receiver, gateways):
    outage(tmp_path, broker, receiver, gateways, 120)


@pytest.mark.soak
def test_broker_outage_10_minutes(tmp_path, broker, receiver, gateways):
    outage(tmp_path, broker, receiver, gateways, 600)
