"""config_push on real files: checked like `gateway check`, written atomically with <config>.previous
kept, applied through request_reload, and rolled back when the gateway does not come back healthy.

The daemon here is a stand-in that records reloads and reports the active alarms it is told to:
a real reload restarts the whole Daemon, which is run_daemon's business, not this module's."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from gateway.commands import CommandHandler
from gateway.commands.config_push import ConfigPush
from gateway.config import load_config
from gateway.errors import CommandError
from gateway.platform.keys import keygen, load_private_key
from gateway.platform.sign import sign_command
from test_commands import COMMANDS_TABLE, CONFIG, GW, wait_for

GOOD = CONFIG + COMMANDS_TABLE
NEW = GOOD.replace("poll_s = 1.0", "poll_s = 2.0")
ACTIVE = {"id": "garage-b2-water.level#1", "rule": "garage-b2-water.level", "state": "active"}


class ReloadingDaemon:
    """What ConfigPush needs of a Daemon: the running config, the safety status, request_reload."""

    def __init__(self, path, alarms=()):
        self.cfg = load_config(path)
        self.alarms = list(alarms)
        self.reloads = []
        self.safety = self

    def status(self):
        return {"alarms": self.alarms, "outputs": {}}

    def request_reload(self, cfg):
        self.reloads.append(cfg)
        self.cfg = cfg


@pytest.fixture
def site(tmp_path):
    (tmp_path / "keys").mkdir()
    keygen(str(tmp_path / "keys" / "platform"))
    path = tmp_path / "gateway.toml"
    path.write_text(GOOD)
    return tmp_path, path


def make_push(path, healthy, alarms=(), watch_s=5.0):
    daemon = ReloadingDaemon(str(path), alarms)
    outcomes = []
    return ConfigPush(daemon, healthy=healthy, report=outcomes.append, watch_s=watch_s, poll_s=0.02), daemon, outcomes


def test_applied_when_the_gateway_comes_back_healthy(site):
    root, path = site
    push, daemon, outcomes = make_push(path, healthy=lambda h: daemon.cfg.text_hash == h)
    result = push.start(NEW, "cmd-1")
    assert push.wait(5.0)
    assert path.read_text() == NEW
    assert (root / "gateway.toml.previous").read_text() == GOOD
    assert [c.text_hash for c in daemon.reloads] == [hashlib.sha256(NEW.encode()).hexdigest()] == [result["sha256"]]
    assert daemon.reloads[0].path == str(path)  # the real path, not the temp file it was checked as
    assert daemon.reloads[0].sensors["garage-b2-water"].poll_s == 2.0
    assert [o["outcome"] for o in outcomes] == ["applied"]
    assert not list(root.glob(".gateway.toml*")), "no temp file left behind"


def test_rolled_back_when_the_uplink_never_returns(site):
    root, path = site
    path.chmod(0o640)
    push, daemon, outcomes = make_push(path, healthy=lambda h: False, watch_s=0.3)
    started = time.monotonic()
    push.start(NEW, "cmd-2")
    assert push.wait(5.0)
    assert time.monotonic() - started >= 0.3
    assert path.read_text() == GOOD
    assert (root / "gateway.toml.rejected").read_text() == NEW
    assert oct(path.stat().st_mode & 0o777) == "0o640", "the rollback keeps the file's permissions"
    assert [c.text_hash for c in daemon.reloads] == [hashlib.sha256(NEW.encode()).hexdigest(),
                                                     hashlib.sha256(GOOD.encode()).hexdigest()]
    (verdict,) = outcomes
    assert verdict["outcome"] == "rolled_back" and "not healthy within 0.3 s" in verdict["message"]


def test_a_probe_that_raises_counts_as_unhealthy(site):
    _, path = site

    def broken(h):
        raise AttributeError("'NoneType' object has no attribute 'status'")  # a daemon mid-reload

    push, _, outcomes = make_push(path, healthy=broken, watch_s=0.2)
    push.start(NEW, "cmd-3")
    assert push.wait(5.0)
    assert outcomes[0]["outcome"] == "rolled_back" and path.read_text() == GOOD


def test_an_invalid_config_is_refused_with_the_check_messages(site):
    root, path = site
    push, daemon, _ = make_push(path, healthy=lambda h: True)
    with pytest.raises(CommandError) as e:
        push.start(GOOD.replace("poll_s = 1.0", "poll_s = 1.0\npol_s = 3"), "cmd-4")
    assert e.value.reason == "config_invalid"
    assert "pushed config:" in e.value.message and "pol_s" in e.value.message and "did you mean" in e.value.message
    assert path.read_text() == GOOD and daemon.reloads == []
    assert not (root / "gateway.toml.previous").exists()
    assert not list(root.glob(".gateway.toml*"))


@pytest.mark.parametrize("text, words", [
    (GOOD.replace('sound = ["garage-siren"]', "sound = []"), "active alarm garage-b2-water.level#1"),
    (GOOD.replace('id = "pd-zhangjiang-001"', 'id = "pd-lujiazui-007"'), "[gateway] id"),
    (CONFIG, "removes [commands]"),
])
def test_unsafe_configs_are_refused(site, text, words):
    _, path = site
    push, daemon, _ = make_push(path, healthy=lambda h: True, alarms=[ACTIVE])
    with pytest.raises(CommandError) as e:
        push.start(text, "cmd-5")
    assert e.value.reason == "config_unsafe" and words in e.value.message
    assert path.read_text() == GOOD and daemon.reloads == []


def test_removing_a_siren_no_active_alarm_needs_is_fine(site):
    _, path = site
    push, daemon, _ = make_push(path, healthy=lambda h: True)
    push.start(GOOD.replace('sound = ["garage-siren"]', "sound = []"), "cmd-6")
    assert push.wait(5.0) and len(daemon.reloads) == 1


def test_replaces_guards_against_a_lost_update(site):
    _, path = site
    push, daemon, _ = make_push(path, healthy=lambda h: True)
    with pytest.raises(CommandError) as e:
        push.start(NEW, "cmd-7", replaces="0" * 64)
    assert e.value.reason == "conflict"
    push.start(NEW, "cmd-8", replaces=hashlib.sha256(GOOD.encode()).hexdigest())
    assert push.wait(5.0) and path.read_text() == NEW


def test_one_push_at_a_time(site):
    _, path = site
    push, _, _ = make_push(path, healthy=lambda h: False, watch_s=5.0)
    push.start(NEW, "cmd-9")
    try:
        with pytest.raises(CommandError) as e:
            push.start(GOOD, "cmd-10")
        assert e.value.reason == "busy"
    finally:
        push.stop()
        assert push.wait(5.0)


def test_signed_push_through_the_handler_replies_twice_and_audits(site):
    root, path = site
    daemon = ReloadingDaemon(str(path))
    replies, audits = [], []
    handler = CommandHandler.from_daemon(daemon, audit=audits.append, reply=replies.append,
                                         healthy=lambda h: False, watch_s=0.3)
    key = load_private_key(str(root / "keys" / "platform.key"))
    cmd = sign_command(key, GW, "config_push", {"toml": NEW})
    first = handler.handle("config_push", json.dumps(cmd).encode())
    assert first["ok"] and first["result"]["state"] == "applying"
    assert handler.push.wait(5.0)
    wait_for(lambda: len(replies) == 2, what="the verdict reply")
    verdict = replies[1]
    assert (verdict["id"], verdict["ok"], verdict["error"]) == (cmd["id"], False, "rolled_back")
    assert [a["outcome"] for a in audits] == ["accepted", "rolled_back"]
    assert path.read_text() == GOOD
