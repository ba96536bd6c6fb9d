"""`gateway-platform fleet-sim` with a small fleet against a real mosquitto (its own, behind the
counting proxy) and the reference receiver: the broker restarted mid-run, and still every
(gateway, seq) the fleet made arrives; the gateways come back spread, not in one burst."""

from __future__ import annotations

import json
import subprocess
import sys

N = 20


def test_a_fleet_survives_a_broker_restart_with_every_event_and_spread_reconnects(tmp_path):
    out = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "-m", "gateway.platform.cli", "fleet-sim", "--gateways", str(N),
                        "--sensors", "10", "--rate", "1", "--period", "2", "--status-s", "5",
                        "--alarm-every", "10", "--duration", "25", "--outage-at", "8", "--outage-s", "8",
                        "--receiver", "--drain-s", "60", "--json", str(out), "--data-dir", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    platform, outage = rep["platform"], rep["outage"]
    # every (gateway, seq) made before the end reached the receiver: no loss through the restart
    assert rep["events_made"] > N * 20, rep["events_made"]
    assert platform["missing"] == 0 and platform["undeclared_gaps"] == 0, platform
    assert platform["invalid"] == 0
    # each gateway replayed the alarm it made while the broker was away
    assert outage["gateways_without_replay_ack"] == 0, outage
    assert outage["first_replay_ack_s"]["n"] == N
    assert outage["first_replay_ack_s"]["max"] < 10.0, outage  # ~1 s unloaded; the margin is for load
    # the broker saw each gateway come back with one probe and one MQTT connect, not all at once
    after = outage["attempts_after_return"]
    assert after["mqtt"] >= N, after
    assert after["max_mqtt_per_100ms"] <= 0.6 * N, after
    assert outage["refused_probes"] > 0  # while away the gateways probed (refused SYNs)
