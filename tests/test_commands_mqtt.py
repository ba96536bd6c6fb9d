"""End to end over a real mosquitto: `gateway-platform send` signs a command, the gateway's Uplink
hands it to CommandHandler.handle in front of a real Daemon, and the reply comes back on
<root>/<gw>/reply to the sender, which prints it.

    sender ──PUBLISH city/v1/<gw>/cmd/siren_test (QoS 1)──► broker ──► Uplink.on_command ─► handle()
    sender ◄──PUBLISH city/v1/<gw>/reply (QoS 1)────────── broker ◄── Uplink.reply ◄────────┘
"""

from __future__ import annotations

import json
import os

import pytest

from gateway.commands import CommandHandler
from gateway.config.model import Uplink as UplinkConfig
from gateway.platform.cli import main as platform_main
from gateway.platform.keys import keygen
from gateway.record import Outbox
from gateway.sync import Uplink
from mosquitto import Mosquitto, wait_for
from test_commands import GW, OFF, ON, SIREN_PIN, Site


@pytest.fixture
def wired(tmp_path):
    broker = Mosquitto(tmp_path / "broker").start()
    (tmp_path / "gw").mkdir()
    site = Site(tmp_path / "gw")
    outbox = Outbox(os.path.join(broker.dir, "o.db"), GW)
    cfg = UplinkConfig(host=broker.host, port=broker.port, replay_per_s=10_000)
    uplink = Uplink(cfg, outbox, GW, {"sensors": []}, backoff_initial_s=0.1, backoff_max_s=0.5)
    site.handler = CommandHandler.from_daemon(site.daemon, audit=site.audits.append, reply=uplink.reply)
    uplink.on_command = site.handler.handle
    uplink.start()
    wait_for(lambda: uplink.status()["state"] == "online", 10, what="uplink online")
    yield broker, site
    uplink.stop()
    site.stop()
    outbox.close()
    broker.close()


def send(broker, site, *words, key=None):
    return platform_main(["send", "--host", broker.host, "--port", str(broker.port), GW, *words,
                          "--key", key or str(site.root / "keys" / "platform.key")])


def test_send_sounds_the_siren_and_prints_the_reply(wired, capsys):
    broker, site = wired
    assert send(broker, site, "siren_test", "output=garage-siren", "seconds=1") == 0
    (line,) = capsys.readouterr().out.splitlines()
    reply = json.loads(line)
    assert (reply["ok"], reply["command"], reply["result"]) == (True, "siren_test",
                                                                {"output": "garage-siren", "seconds": 1})
    wait_for(lambda: site.pins.values(SIREN_PIN)[-1] == ON, 5, what="siren on")
    wait_for(lambda: site.pins.values(SIREN_PIN)[-1] == OFF, 5, what="siren off")
    assert [a["outcome"] for a in site.audits] == ["accepted"]


def test_send_with_an_unpinned_key_is_refused_and_exits_1(wired, capsys, tmp_path):
    broker, site = wired
    keygen(str(tmp_path / "intruder"))
    assert send(broker, site, "silence", key=str(tmp_path / "intruder.key")) == 1
    reply = json.loads(capsys.readouterr().out)
    assert (reply["ok"], reply["error"]) == (False, "bad_signature")
    assert site.audits[-1]["reason"] == "bad_signature"


def test_send_refuses_a_world_readable_signing_key(wired, capsys):
    broker, site = wired
    key = site.root / "keys" / "platform.key"
    key.chmod(0o644)
    assert send(broker, site, "status") == 2
    assert f"chmod 600 {key}" in capsys.readouterr().err
    assert site.audits == []
