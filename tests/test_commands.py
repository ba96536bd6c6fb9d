"""Signed commands from the platform through CommandHandler into a real Daemon (sim GPIO): the
accept path moves the siren relay, and every reject path leaves it alone, replies with its reason and
is audited. Replays are refused across a restart (a fresh NonceCache on the same data_dir)."""

from __future__ import annotations

import json
import os
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.gpio.sim import SimGpio
from gateway.commands import CommandHandler, load_public_keys
from gateway.commands.nonces import FILE_NAME, NonceCache
from gateway.commands.signing import b64url, canonical_bytes, sign
from gateway.config import load_config
from gateway.service.daemon import Daemon
from gateway.platform.keys import keygen, load_private_key
from gateway.platform.sign import sign_command
from gateway.reading import Reading

GW = "pd-zhangjiang-001"
SIREN_PIN = 17
OFF, ON = 1, 0  # active-low relay board

CONFIG = '''\
[gateway]
id = "pd-zhangjiang-001"
data_dir = "./var"
control_socket = "./var/control.sock"

[buses.pumproom]
type = "tcp"
host = "127.0.0.1"
port = 1                      # nothing listens: the point is fed by hand, the bus just faults

[[sensors]]
name = "garage-b2-water"
bus = "pumproom"
unit = 1
profile = "water-level-rs485"
poll_s = 1.0

[gpio]
backend = "sim"

[outputs.garage-siren]
pin = 17
active_low = true
pattern = { orange = "pulse", red = "steady" }
max_on_s = 600

[[rules]]
sensor = "garage-b2-water"
point = "level"
above = { blue = 5, yellow = 15, orange = 25, red = 40 }
hysteresis = 2
sound = ["garage-siren"]
'''
COMMANDS_TABLE = '\n[commands]\nplatform_keys = ["./keys/platform.pub"]\n'


def wait_for(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Site:
    """A gateway as the uplink would see it: a running Daemon, the CommandHandler in front of it,
    and what went to the reply topic and the audit log."""

    def __init__(self, root, commands=True):
        self.root = root
        (root / "keys").mkdir(exist_ok=True)
        if not (root / "keys" / "platform.key").exists():
            keygen(str(root / "keys" / "platform"))
        self.key = load_private_key(str(root / "keys" / "platform.key"))
        (root / "gateway.toml").write_text(CONFIG + (COMMANDS_TABLE if commands else ""))
        self.cfg = load_config(str(root / "gateway.toml"))
        self.pins = SimGpio()
        self.daemon = Daemon(self.cfg, gpio=self.pins).start()
        self.replies, self.audits, self.births = [], [], []
        self.handler = self.new_handler()

    def new_handler(self, **kw):
        return CommandHandler.from_daemon(self.daemon, audit=self.audits.append, reply=self.replies.append,
                                          rebirth=lambda: self.births.append(1), **kw)

    def send(self, name, args=None, *, key=None, topic=None, handler=None, **kw):
        cmd = sign_command(key or self.key, kw.pop("gateway", GW), name, args or {}, **kw)
        return (handler or self.handler).handle(topic or name, json.dumps(cmd).encode()), cmd

    def raise_alarm(self):
        self.daemon.safety.submit(Reading("garage-b2-water", "level", 45.0, "cm", "good", time.time(),
                                          time.monotonic()))
        wait_for(lambda: self.daemon.safety.status()["alarms"], what="alarm raised")
        wait_for(lambda: self.pins.values(SIREN_PIN)[-1] == ON, what="siren on")
        return self.daemon.safety.status()["alarms"][0]["id"]

    def stop(self):
        self.handler.close()
        self.daemon.stop()


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.stop()


def assert_rejected(site, reply, reason):
    assert reply["ok"] is False
    assert reply["error"] == reason, reply
    assert reply["message"]
    audit = site.audits[-1]
    assert (audit["outcome"], audit["reason"], audit["by"]) == ("rejected", reason, "platform")
    assert audit["action"] == "remote_command"  # the audit event schema requires it


# -- accepted -----------------------------------------------------------------------------------
def test_signed_siren_test_sounds_the_siren_and_is_audited(site):
    reply, cmd = site.send("siren_test", {"output": "garage-siren", "seconds": 1})
    assert reply == {"id": cmd["id"], "command": "siren_test", "ok": True,
                     "message": "garage-siren sounding for 1 s", "result": {"output": "garage-siren", "seconds": 1}}
    assert site.replies == [reply]
    wait_for(lambda: site.pins.values(SIREN_PIN)[-1] == ON, what="siren on")
    wait_for(lambda: site.pins.values(SIREN_PIN)[-1] == OFF, what="siren off after the test")
    assert site.audits == [{"action": "remote_command", "actor": "platform", "result": "accepted",
                            "command": "siren_test", "command_id": cmd["id"], "outcome": "accepted",
                            "reason": None, "by": "platform", "detail": reply["message"], "key": 0, "ok": True}]


def test_remote_silence_then_ack_go_through_the_safety_loop(site):
    alarm = site.raise_alarm()
    reply, _ = site.send("silence")
    assert reply["ok"] and reply["result"] == {"silenced": [alarm]}
    wait_for(lambda: site.pins.values(SIREN_PIN)[-1] == OFF, what="siren silenced")
    (active,) = site.daemon.safety.status()["alarms"]
    assert (active["silenced_by"], active["state"]) == ("platform", "silenced")  # still active, siren off
    reply, _ = site.send("ack", {"alarm": alarm})
    assert reply["ok"] and reply["result"] == {"acknowledged": [alarm]}


def test_status_config_get_and_rebirth(site):
    reply, _ = site.send("status")
    assert reply["ok"] and reply["result"]["gateway"] == GW and "alarms" in reply["result"]
    json.dumps(reply)  # the uplink serialises it
    reply, _ = site.send("config_get")
    raw = (site.root / "gateway.toml").read_bytes()
    assert reply["result"]["toml"] == raw.decode()
    assert reply["result"]["sha256"] == reply["result"]["running_sha256"] == site.cfg.text_hash
    reply, _ = site.send("rebirth")
    assert reply["ok"] and site.births == [1]


def test_a_failing_command_is_an_error_reply_not_a_traceback(site):
    reply, cmd = site.send("siren_test", {"output": "stair-sounder", "seconds": 5})
    assert (reply["ok"], reply["error"]) == (False, "failed")
    assert "no output 'stair-sounder'" in reply["message"] and "garage-siren" in reply["message"]
    assert site.audits[-1]["outcome"] == "accepted" and site.audits[-1]["ok"] is False
    reply, _ = site.send("ack", {"alarm": "garage-b2-water.level#99"})
    assert reply["error"] == "failed" and "garage-b2-water.level#99" in reply["message"]


def test_config_push_is_refused_without_a_health_probe(site):
    reply, _ = site.send("config_push", {"toml": CONFIG})
    assert reply["error"] == "unavailable"
    assert (site.root / "gateway.toml").read_text() == CONFIG + COMMANDS_TABLE


def test_a_second_pinned_key_is_accepted_for_rotation(site, tmp_path):
    keygen(str(tmp_path / "keys" / "next"))
    site.handler.keys = load_public_keys([str(tmp_path / "keys" / "platform.pub"), str(tmp_path / "keys" / "next.pub")])
    reply, _ = site.send("status", key=load_private_key(str(tmp_path / "keys" / "next.key")))
    assert reply["ok"] and site.audits[-1]["key"] == 1


# -- rejected -----------------------------------------------------------------------------------
def test_unsigned(site):
    cmd = sign_command(site.key, GW, "silence", {})
    del cmd["sig"]
    site.raise_alarm()
    reply = site.handler.handle("silence", json.dumps(cmd).encode())
    assert_rejected(site, reply, "unsigned")
    assert reply["id"] == cmd["id"]
    assert site.pins.values(SIREN_PIN)[-1] == ON, "an unsigned silence must not silence"


def test_forged_by_an_unpinned_key(site):
    site.raise_alarm()
    reply, _ = site.send("silence", key=Ed25519PrivateKey.generate())
    assert_rejected(site, reply, "bad_signature")
    assert site.pins.values(SIREN_PIN)[-1] == ON


def test_tampered_after_signing(site):
    cmd = sign_command(site.key, GW, "siren_test", {"output": "garage-siren", "seconds": 1})
    cmd["args"]["seconds"] = 60
    reply = site.handler.handle("siren_test", json.dumps(cmd).encode())
    assert_rejected(site, reply, "bad_signature")
    assert site.pins.values(SIREN_PIN) == [OFF]


@pytest.mark.parametrize("kw, reason", [
    # "now" as an offset from when the test runs, not from collection: with the suite at ~18 minutes,
    # collection time + 600 s was already in the past when this ran (CI: the command was accepted)
    ({"now": -120, "ttl_s": 60}, "expired"),
    ({"now": 600}, "not_yet_valid"),
    ({"gateway": "pd-lujiazui-007"}, "wrong_gateway"),
    ({"topic": "status"}, "name_mismatch"),
    ({"topic": "reboot"}, "unknown_command"),
])
def test_refused_signed_commands(site, kw, reason):
    site.raise_alarm()
    if "now" in kw:
        kw = {**kw, "now": time.time() + kw["now"]}
    reply, cmd = site.send("silence", **kw)
    assert_rejected(site, reply, reason)
    assert reply["id"] == cmd["id"]
    assert site.pins.values(SIREN_PIN)[-1] == ON


def test_validity_longer_than_five_minutes(site):
    cmd = sign_command(site.key, GW, "silence", {})
    cmd["expires_at"] = "2099-01-01T00:00:00Z"  # re-signed: the platform itself asked for too much
    cmd["sig"] = sign(site.key, cmd)
    assert_rejected(site, site.handler.handle("silence", json.dumps(cmd).encode()), "bad_validity")


@pytest.mark.parametrize("args", [
    {"output": "garage-siren", "seconds": 0},
    {"output": "garage-siren", "seconds": 5, "shell": "rm -rf /"},
    {"output": "garage-siren"},
    {"output": 17, "seconds": 5},
    {"output": "garage-siren", "seconds": 5.0},  # a float: no canonical spelling across languages
])
def test_schema_violations(site, args):
    reply, _ = site.send("siren_test", args)
    assert_rejected(site, reply, "schema")
    assert site.pins.values(SIREN_PIN) == [OFF]


@pytest.mark.parametrize("payload, reason", [
    (b"", "not_json"),
    (b"\xff\xfe{}", "not_json"),
    (b'{"a": 1, "a": 2}', "not_json"),
    (b'{"v": NaN}', "not_json"),
    (b"[1, 2]", "not_object"),
    (b"{" + b" " * (64 * 1024) + b"}", "too_large"),
])
def test_malformed_payloads(site, payload, reason):
    reply = site.handler.handle("silence", payload)
    assert_rejected(site, reply, reason)
    assert reply["id"] is None


def test_a_short_nonce_is_refused(site):
    reply, _ = site.send("status", nonce=b64url(os.urandom(8)))
    assert_rejected(site, reply, "schema")
    assert "nonce" in reply["message"]


def test_no_commands_table_accepts_nothing(tmp_path):
    s = Site(tmp_path, commands=False)
    try:
        reply, _ = s.send("status")
        assert_rejected(s, reply, "disabled")
        assert "[commands]" in reply["message"]
    finally:
        s.stop()


# -- replay -------------------------------------------------------------------------------------
def test_replayed_in_the_same_run_and_across_a_restart(site):
    cmd = sign_command(site.key, GW, "status", {})
    payload = json.dumps(cmd).encode()
    assert site.handler.handle("status", payload)["ok"]
    assert_rejected(site, site.handler.handle("status", payload), "replayed")
    restarted = site.new_handler()  # a fresh NonceCache reading the same data_dir
    assert_rejected(site, restarted.handle("status", payload), "replayed")
    assert restarted.handle("status", json.dumps(sign_command(site.key, GW, "status", {})).encode())["ok"]


def test_nonces_are_dropped_after_expiry(tmp_path):
    now = [1_000_000.0]
    cache = NonceCache(str(tmp_path), clock=lambda: now[0])
    cache.remember("a" * 22, now[0] + 60)
    assert cache.seen("a" * 22)
    now[0] += 60 + 61  # past expiry and the clock-step margin
    cache.remember("b" * 22, now[0] + 60)
    saved = json.loads((tmp_path / FILE_NAME).read_text())
    assert list(saved) == ["b" * 22]
    assert oct(os.stat(tmp_path / FILE_NAME).st_mode & 0o777) == "0o600"


def test_an_unreadable_nonce_cache_refuses_what_it_might_have_held(site):
    payload = json.dumps(sign_command(site.key, GW, "status", {})).encode()
    assert site.handler.handle("status", payload)["ok"]
    (site.root / "var" / FILE_NAME).write_text("{not json")
    now = [time.time()]
    restarted = site.new_handler(clock=lambda: now[0])
    assert_rejected(site, restarted.handle("status", payload), "replayed")
    assert "lost" in site.replies[-1]["message"]
    fresh = json.dumps(sign_command(site.key, GW, "status", {}, now=now[0])).encode()
    assert_rejected(site, restarted.handle("status", fresh), "replayed")  # could still be an old one
    now[0] += 31  # past anything the lost cache can have accepted (issued at most 30 s ahead)
    later = sign_command(site.key, GW, "status", {}, now=now[0])
    assert restarted.handle("status", json.dumps(later).encode())["ok"]


def test_canonical_form_ignores_the_wire_formatting(site):
    cmd = sign_command(site.key, GW, "status", {})
    pretty = json.dumps(dict(reversed(list(cmd.items()))), indent=4, ensure_ascii=True).encode()
    assert site.handler.handle("status", pretty)["ok"]
    assert canonical_bytes(cmd) == canonical_bytes(json.loads(pretty))
