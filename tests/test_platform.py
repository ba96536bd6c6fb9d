"""The reference platform receiver and the written contract: schemas, gap arithmetic, de-duplication,
shared subscriptions, the `gateway-platform` command, the AsyncAPI document's references."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.platform import Contract, Receiver
from gateway.platform.store import Store
from mosquitto import Mosquitto, wait_for

ROOT = Path(__file__).resolve().parents[1]
GW = "gw-p"


def envelope(seq, type_="telemetry", gw=GW, **fields):
    base = {"v": 1, "id": f"{gw}/{seq}", "seq": seq, "ts": "2025-06-01T08:00:00.000Z", "clock_synced": True,
            "boot": "b", "type": type_, "replay": False}
    if type_ == "telemetry":
        base |= {"sensor": "w", "point": "p", "unit": "m", "quality": "good", "reason": "period",
                 "period_s": 60.0, "count": 1, "min": 1, "max": 1, "mean": 1, "last": 1}
    return base | fields


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.close()


def publisher(broker):
    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def publish(c, event, topic=None):
    c.publish(topic or f"city/v1/{event['id'].rpartition('/')[0]}/event/{event['type']}",
              json.dumps(event), qos=1).wait_for_publish(5)


# -- contract -------------------------------------------------------------------------------------
def test_schemas_are_valid_draft_2020_12_and_catch_bad_payloads():
    c = Contract()
    assert c.errors("telemetry", envelope(1)) == []
    assert c.errors("telemetry", envelope(1, value=3)) == []  # unknown fields are allowed
    assert any("seq" in e for e in c.errors("telemetry", {k: v for k, v in envelope(1).items() if k != "seq"}))
    assert c.errors("gap", envelope(5, "gap", from_seq=1, to_seq=4, count=4, reason="evicted")) == []
    assert c.errors("alarm", envelope(2, "alarm", sensor="w", point="p", transition="raised", level="purple",
                                      state="active"))
    assert c.errors("fault", envelope(3, "fault", state="fault", reason="timeout")), "needs sensor/bus/component"
    assert c.errors("presence", {"state": "offline"}) == []
    assert c.errors("presence", {"state": "online"}), "a birth without firmware etc."


def test_asyncapi_references_every_schema_and_only_existing_ones():
    text = (ROOT / "docs" / "asyncapi.yaml").read_text()
    assert text.startswith("asyncapi: 3.0.0")
    refs = set(re.findall(r"\.\./gateway/contract/([a-z-]+\.json)", text))
    files = {p.name for p in (ROOT / "gateway" / "contract").glob("*.json")}
    assert refs <= files
    for ref in re.findall(r"'(\.\./gateway/contract/[a-z-]+\.json)'", text):  # relative to docs/, as written
        assert (ROOT / "docs" / ref).resolve().is_file(), ref
    assert files - refs <= {"envelope.json", "presence.json"}  # reached through the others
    for channel in ("/status'", "/event/{type}'", "/cmd/{name}'", "/reply'"):
        assert channel in text


# -- gap arithmetic -------------------------------------------------------------------------------
def test_store_tells_lost_from_evicted_and_counts_duplicates(tmp_path):
    store = Store(str(tmp_path / "p.db"))
    for seq in (1, 2, 3, 7, 8, 12, 20):
        assert store.add_event(envelope(seq))
    assert not store.add_event(envelope(3))
    store.add_event(envelope(21, "gap", from_seq=4, to_seq=6, count=3, reason="evicted"))
    store.add_event(envelope(22, "fault", component="uplink", state="fault", reason="message_refused",
                             failed_seq=15))
    assert store.missing(GW) == [(4, 6), (9, 11), (13, 19)]
    assert store.undeclared(GW) == [(9, 11), (13, 14), (16, 19)]
    assert store.duplicates() == 1


# -- the receiver over a real broker ---------------------------------------------------------------
def test_receiver_validates_dedups_and_finds_undeclared_gaps(broker):
    lines = []
    rx = Receiver(broker.host, broker.port, echo=lines.append).start()
    c = publisher(broker)
    try:
        for seq in (1, 2, 2, 4):
            publish(c, envelope(seq))
        publish(c, envelope(5, "alarm", sensor="w", point="p", transition="raised", level="red", state="active"))
        publish(c, envelope(6, level="??"), topic=f"city/v1/{GW}/event/alarm")  # wrong topic for its type
        publish(c, {"state": "online", "firmware": "x", "config_hash": "", "sensors": [],
                    "ts": "2025-06-01T08:00:00.000Z"}, topic=f"city/v1/{GW}/status")
        wait_for(lambda: len(rx.events) == 4 and rx.invalid and rx.presence, 5, what="the messages")
    finally:
        c.disconnect()
        c.loop_stop()
        rx.stop()
    assert rx.duplicates == 1
    assert rx.undeclared_gaps() == [(GW, 3, 3)]
    assert len(rx.invalid) == 1 and "alarm" in rx.invalid[0][0]
    assert any(" alarm " in line and "level=red" in line for line in lines)
    assert any("is ONLINE" in line for line in lines)


def test_shared_subscription_splits_the_stream_between_receivers(broker):
    a = Receiver(broker.host, broker.port, share="platform").start()
    b = Receiver(broker.host, broker.port, share="platform").start()
    c = publisher(broker)
    try:
        for seq in range(1, 41):
            publish(c, envelope(seq))
        wait_for(lambda: len(a.events) + len(b.events) == 40, 10, what="all events across both")
    finally:
        c.disconnect()
        c.loop_stop()
        a.stop()
        b.stop()
    assert a.events and b.events, "both members of the group got a share"
    assert a.seqs().isdisjoint(b.seqs())


def test_gateway_platform_receive_command_prints_a_live_view_and_stores(tmp_path, broker):
    db = tmp_path / "platform.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "gateway.platform.cli", "receive", "--host", broker.host,
                             "--port", str(broker.port), "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    c = publisher(broker)
    try:
        assert "receiving" in proc.stdout.readline()
        for seq in (1, 2, 4):
            publish(c, envelope(seq))
        lines = [proc.stdout.readline() for _ in range(3)]
        assert all(f"{GW} #" in line and "telemetry" in line for line in lines), lines
    finally:
        c.disconnect()
        c.loop_stop()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "UNDECLARED gaps [(3, 3)]" in out
    report = subprocess.run([sys.executable, "-m", "gateway.platform.cli", "report", "--db", str(db)],
                            capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert report.returncode == 1 and "3 events" in report.stdout  # 1: there are undeclared gaps


def test_receiver_reports_an_unreachable_broker():
    from gateway.errors import UplinkError
    from mosquitto import free_port
    with pytest.raises(UplinkError, match="cannot reach"):
        Receiver("127.0.0.1", free_port()).start(timeout=2)


def test_console_script_is_installed():
    # beside the interpreter running the tests: the venv that `make test` installed the package into
    script = os.path.join(os.path.dirname(sys.executable), "gateway-platform")
    out = subprocess.run([script, "--help"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and "receive" in out.stdout
