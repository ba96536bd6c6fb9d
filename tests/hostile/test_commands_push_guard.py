"""A signed config push cannot disarm the gateway or orphan it (issue 12, item 3).

Each case was applied before the fix while a red alarm was active: the siren went off (no red
pattern), or was silenced by the clock at once (max_on_s = 0.001), or no reading could ever count
again (debounce_s = inf); and a push could replace the platform keys or repoint the uplink, so that
no later command could put it right. The stand-in daemon here reports the active alarm; the real
reload is run_daemon's (tests/test_commands_push.py has the happy path)."""

from __future__ import annotations

import json
import time

import pytest

from drivers.gpio.sim import SimGpio
from gateway.commands import CommandHandler, load_public_keys
from gateway.commands.config_push import ConfigPush
from gateway.config import load_config
from gateway.errors import CommandError
from gateway.platform.keys import keygen, load_private_key
from gateway.platform.sign import sign_command
from gateway.reading import Reading
from gateway.service.daemon import Daemon
from test_commands_push import ReloadingDaemon
from test_commands import COMMANDS_TABLE, CONFIG, GW, OFF, ON, SIREN_PIN, Site, wait_for

UPLINK = '\n[uplink]\nhost = "127.0.0.1"\nport = 1\n'
GOOD = CONFIG + COMMANDS_TABLE + UPLINK
RED = {"id": "garage-b2-water.level#1", "rule": "garage-b2-water.level", "level": "red", "value": 45.0,
       "state": "active"}


@pytest.fixture
def site(tmp_path):
    (tmp_path / "keys").mkdir()
    keygen(str(tmp_path / "keys" / "platform"))
    keygen(str(tmp_path / "keys" / "next"))
    path = tmp_path / "gateway.toml"
    path.write_text(GOOD)
    return tmp_path, path


def push_during_red(path, text, **kw):
    daemon = ReloadingDaemon(str(path), [RED])
    push = ConfigPush(daemon, healthy=lambda h: True, report=lambda f: None, watch_s=1.0, poll_s=0.02,
                      contacted=lambda h: True)
    with pytest.raises(CommandError) as e:
        push.start(text, "cmd-red", **kw)
    assert path.read_text() == GOOD and daemon.reloads == [], "nothing written or applied"
    return e.value


def test_dropping_the_red_pattern_during_red_is_refused(site):
    """Refused as unsafe here, or already as invalid by the loader's coherence check (issue 12 item 2:
    an output without a pattern for a level its rule raises)."""
    _, path = site
    e = push_during_red(path, GOOD.replace('pattern = { orange = "pulse", red = "steady" }',
                                           'pattern = { orange = "pulse" }'))
    assert e.reason in ("config_unsafe", "config_invalid") and "no pattern for red" in e.message, e.message


@pytest.mark.parametrize("text, words", [
    (GOOD.replace("max_on_s = 600", "max_on_s = 5"), "max_on_s would shrink from 600 to 5 s"),
    (GOOD.replace("pin = 17", "pin = 27"), "would move from pin 17"),
    (GOOD.replace("red = 40 }", "red = 60 }"), "above.red = 60 (hysteresis 2) would clear it at the current value 45"),
    (GOOD.replace(", red = 40", ""), "no longer raises red"),
    (GOOD.replace('sound = ["garage-siren"]', 'sound = ["garage-siren"]\n\n[outputs.strobe]\npin = 22\n'
                                              'pattern = { red = "steady" }')
     .replace('sound = ["garage-siren"]', 'sound = ["strobe"]', 1), "no longer be in rule garage-b2-water.level"),
])
def test_a_push_that_would_unsound_the_active_red_alarm_is_refused(site, text, words):
    _, path = site
    e = push_during_red(path, text)
    assert e.reason == "config_unsafe" and words in e.message, e.message
    assert "active alarm garage-b2-water.level#1" in e.message


@pytest.mark.parametrize("text", [
    GOOD.replace("max_on_s = 600", "max_on_s = 0.001"),
    GOOD.replace("hysteresis = 2", "hysteresis = 2\ndebounce_s = inf"),
    GOOD.replace("red = 40 }", "red = nan }"),
])
def test_absurd_values_are_refused_while_red_is_active(site, text):
    """Refused as unsafe here, or as invalid once the loader ranges them (issue 12 item 2)."""
    _, path = site
    e = push_during_red(path, text)
    assert e.reason in ("config_unsafe", "config_invalid"), e.message


def test_the_same_push_is_fine_once_nothing_is_active(site):
    _, path = site
    daemon = ReloadingDaemon(str(path))
    push = ConfigPush(daemon, healthy=lambda h: True, report=lambda f: None, watch_s=1.0, poll_s=0.02)
    push.start(GOOD.replace('pattern = { orange = "pulse", red = "steady" }', 'pattern = { red = "pulse" }'), "c")
    assert push.wait(5.0) and len(daemon.reloads) == 1


# -- access: keys and uplink -----------------------------------------------------------------------
NEW_KEYS = GOOD.replace("./keys/platform.pub", "./keys/next.pub")
NEW_BROKER = GOOD.replace('host = "127.0.0.1"', 'host = "broker.elsewhere.example"')


@pytest.mark.parametrize("text, section", [(NEW_KEYS, "commands"), (NEW_BROKER, "uplink")])
def test_changing_keys_or_broker_needs_the_signed_flag(site, text, section):
    _, path = site
    daemon = ReloadingDaemon(str(path))
    push = ConfigPush(daemon, healthy=lambda h: True, report=lambda f: None, contacted=lambda h: True)
    with pytest.raises(CommandError) as e:
        push.start(text, "cmd-k")
    assert e.value.reason == "access_change" and f"--changes-access {section}" in e.value.message
    assert path.read_text() == GOOD and daemon.reloads == []


def test_the_same_keys_under_another_file_name_are_not_a_change(site):
    root, path = site
    (root / "keys" / "copy.pub").write_bytes((root / "keys" / "platform.pub").read_bytes())
    daemon = ReloadingDaemon(str(path))
    push = ConfigPush(daemon, healthy=lambda h: True, report=lambda f: None, watch_s=1.0, poll_s=0.02)
    push.start(GOOD.replace("./keys/platform.pub", "./keys/copy.pub"), "c")
    assert push.wait(5.0) and len(daemon.reloads) == 1


def handler_for(path, **kw):
    daemon = ReloadingDaemon(str(path))
    replies, audits = [], []
    handler = CommandHandler.from_daemon(daemon, audit=audits.append, reply=replies.append,
                                         healthy=lambda h: daemon.cfg.text_hash == h, **kw)
    return handler, daemon, replies


def test_new_keys_are_kept_only_if_the_platform_signs_with_them_in_time(site):
    root, path = site
    handler, daemon, replies = handler_for(path, watch_s=5.0)
    old_key = load_private_key(str(root / "keys" / "platform.key"))
    new_key = load_private_key(str(root / "keys" / "next.key"))
    cmd = sign_command(old_key, GW, "config_push", {"toml": NEW_KEYS, "changes_access": ["commands"]})
    first = handler.handle("config_push", json.dumps(cmd).encode())
    assert first["ok"] and first["result"]["awaiting"] == "contact", first
    handler.keys = load_public_keys(daemon.cfg.commands.platform_keys)  # what run_daemon's reload does
    time.sleep(0.2)
    assert handler.push._watch.is_alive(), "healthy is not enough: it waits for the platform"
    ok = handler.handle("status", json.dumps(sign_command(new_key, GW, "status")).encode())
    assert ok["ok"]
    assert handler.push.wait(5.0)
    wait_for(lambda: len(replies) == 3, what="the verdict")
    assert replies[-1]["result"]["outcome"] == "applied" and path.read_text() == NEW_KEYS


def test_new_broker_never_heard_from_is_rolled_back(site):
    root, path = site
    handler, daemon, replies = handler_for(path, watch_s=0.4)
    key = load_private_key(str(root / "keys" / "platform.key"))
    cmd = sign_command(key, GW, "config_push", {"toml": NEW_BROKER, "changes_access": ["uplink"]})
    assert handler.handle("config_push", json.dumps(cmd).encode())["ok"]
    assert handler.push.wait(5.0)
    wait_for(lambda: len(replies) == 2, what="the verdict")
    assert replies[-1]["error"] == "rolled_back" and "did not reach the gateway through the new uplink" \
        in replies[-1]["message"]
    assert path.read_text() == GOOD and daemon.cfg.uplink.host == "127.0.0.1"


# -- max_on_s is a silence by the clock of one run -------------------------------------------------
def test_an_alarm_silenced_by_max_on_sounds_again_under_the_next_config(tmp_path):
    """Before: the max_on_s silence was saved with the alarm, so the siren stayed off after the
    config with the sane max_on_s came back (a rolled-back push, a reload)."""
    (tmp_path / "keys").mkdir()
    keygen(str(tmp_path / "keys" / "platform"))
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.replace("max_on_s = 600", "max_on_s = 1"))
    pins = SimGpio()
    d = Daemon(load_config(str(path)), gpio=pins).start()
    try:
        d.safety.submit(Reading("garage-b2-water", "level", 45.0, "cm", "good", time.time(), time.monotonic()))
        wait_for(lambda: pins.values(SIREN_PIN)[-1:] == [ON], what="siren on")
        wait_for(lambda: pins.values(SIREN_PIN)[-1] == OFF, what="max_on_s silence")
        wait_for(lambda: d.state_file.load() and d.state_file.load()["alarms"][0]["silenced"], what="state saved")
    finally:
        d.stop()
    path.write_text(CONFIG)
    pins = SimGpio()
    d = Daemon(load_config(str(path)), gpio=pins).start()
    try:
        wait_for(lambda: pins.values(SIREN_PIN)[-1:] == [ON], what="siren on again under max_on_s = 600")
        (alarm,) = d.safety.status()["alarms"]
        assert alarm["level"] == "red" and not alarm["silenced"]
    finally:
        d.stop()


def test_a_real_red_alarm_keeps_its_siren_through_a_refused_push(tmp_path):
    """The same, against a running Daemon: the alarm's level and value come from the safety loop."""
    site = Site(tmp_path)
    try:
        handler = site.new_handler(healthy=lambda h: True)
        site.raise_alarm()
        text = (CONFIG + COMMANDS_TABLE).replace('red = "steady" }', '}').replace('pulse",', 'pulse"')
        reply, _ = site.send("config_push", {"toml": text}, handler=handler)
        assert reply["ok"] is False and reply["error"] in ("config_unsafe", "config_invalid"), reply
        assert "no pattern for red" in reply["message"]
        assert site.pins.values(SIREN_PIN)[-1] == ON
        assert (tmp_path / "gateway.toml").read_text() == CONFIG + COMMANDS_TABLE
    finally:
        site.stop()


def test_send_puts_the_flag_in_the_signed_command(site, monkeypatch, capsys):
    from gateway.commands.signing import canonical_bytes
    from gateway.platform import cli as platform_cli

    root, path = site
    sent = []
    monkeypatch.setattr("gateway.platform.sign.send_command",
                        lambda host, port, cmd, **kw: sent.append(cmd) or [{"id": cmd["id"], "ok": True}])
    key = str(root / "keys" / "platform.key")
    assert platform_cli.main(["send", GW, "config_push", f"toml=@{path}", "--key", key,
                              "--changes-access", "uplink,commands"]) == 0
    assert sent[0]["args"]["changes_access"] == ["commands", "uplink"]
    assert b'"changes_access"' in canonical_bytes(sent[0]), "covered by the signature"
    assert platform_cli.main(["send", GW, "status", "--key", key, "--changes-access", "uplink"]) == 2
    assert "config_push only" in capsys.readouterr().err


def test_the_published_flag_names_what_the_guard_compares():
    from gateway.commands.push_guard import ACCESS_SECTIONS
    from gateway.commands.schemas import ARGS

    assert tuple(ARGS["config_push"]["properties"]["changes_access"]["items"]["enum"]) == ACCESS_SECTIONS
