"""Generated command payloads through CommandHandler.handle() in front of a real Daemon: bad JSON,
wrong types, huge strings, odd unicode (unpaired surrogates included), deep nesting, mutated and
re-signed envelopes. Whatever arrives, handle() returns a reply that the reply schema accepts and
the uplink can serialise, every refusal carries a reason and a message, and there is one audit event
per accepted command; refusals are counted and audited within the flood budget (rejections.py).

FUZZ_EXAMPLES sets the number of examples per test (default 200; `make fuzz` runs 10,000)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.commands.schemas import COMMANDS
from gateway.commands.signing import CommandRejected, b64url, sign, verify
from gateway.platform.schemas import Contract
from gateway.platform.sign import sign_command
from test_commands import GW, Site

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
SOURCE = "".join(p.read_text() for p in Path(__file__).resolve().parents[1].joinpath("gateway", "commands").glob("*.py"))
REASONS = set(re.findall(r'Command(?:Rejected|Error)\("([a-z_]+)"', SOURCE)) | {
    "failed", "internal", "rolled_back", "rollback_failed"}
REPLY_KEYS = {"id", "command", "ok", "error", "message", "result"}
CONTRACT = Contract()

# every character, unpaired surrogates included: json.dumps turns those into \ud800 escapes
odd_text = st.text(st.characters(codec=None, categories=None), max_size=40)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | odd_text
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(odd_text, inner, max_size=4), max_leaves=12)
field_names = st.sampled_from(["v", "id", "gateway", "name", "args", "issued_at", "expires_at", "nonce", "sig",
                               "extra"])
topics = st.sampled_from(COMMANDS) | odd_text


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("fuzz"))
    yield s
    s.stop()


def check(site, topic, payload):
    before, refused = len(site.audits), sum(site.handler.rejections.counts.values())
    reply = site.handler.handle(topic, payload)
    assert set(reply) <= REPLY_KEYS and isinstance(reply["ok"], bool), reply
    assert isinstance(reply["message"], str) and reply["message"], reply
    if not reply["ok"]:
        assert reply["error"] in REASONS, reply
    body = json.dumps(reply, ensure_ascii=False).encode("utf-8")  # what the uplink publishes
    assert CONTRACT.errors("cmd-reply", json.loads(body)) == []
    if reply["ok"] or reply["error"] not in site.handler.rejections.counts:
        assert len(site.audits) == before + 1, "an accepted command is audited, each one"
    else:  # a refusal is counted; audited at once or in its reason's summary (the flood budget)
        assert sum(site.handler.rejections.counts.values()) == refused + 1
        assert len(site.audits) <= before + 1
        if len(site.audits) == before:
            return reply
    audit = site.audits[-1]
    assert audit["outcome"] in ("accepted", "rejected")
    assert audit["outcome"] == "accepted" or audit["reason"] in REASONS
    json.dumps(audit, ensure_ascii=False).encode("utf-8")  # what the outbox stores
    return reply


@FUZZ
@given(topic=topics, payload=st.binary(max_size=2048))
def test_random_bytes(site, topic, payload):
    assert not check(site, topic, payload)["ok"]


@FUZZ
@given(topic=topics, value=json_values)
def test_random_json(site, topic, value):
    assert not check(site, topic, json.dumps(value).encode())["ok"]


@FUZZ
@given(topic=topics, depth=st.integers(1, 40_000), kind=st.sampled_from(["[", '{"a":']))
def test_deep_nesting(site, topic, depth, kind):
    closer = "]" if kind == "[" else "}"
    payload = (kind * depth + "1" + closer * depth).encode()
    reply = check(site, topic, payload)
    assert reply["error"] in ("not_json", "not_object", "too_large", "unsigned")


@FUZZ
@given(field=field_names, value=json_values | st.integers(0, 70_000).map(lambda n: "x" * n), resign=st.booleans(),
       nonce=st.binary(min_size=16, max_size=24), topic=topics)
def test_mutated_envelopes(site, field, value, resign, nonce, topic):
    cmd = sign_command(site.key, GW, "status", {}, nonce=b64url(nonce))
    changed = json.dumps(cmd.get(field)) != json.dumps(value)
    cmd[field] = value
    if resign and field != "sig":
        try:
            cmd["sig"] = sign(site.key, cmd)
        except (TypeError, ValueError, UnicodeEncodeError):
            pass  # not signable (a surrogate, a float NaN): sent with the old signature
    reply = check(site, topic, json.dumps(cmd).encode())
    if changed and field in ("extra", "v", "args") or topic != "status":
        assert not reply["ok"], "an extra member, another version, args for a no-args command, another topic"


@FUZZ
@given(name=st.sampled_from(COMMANDS),
       args=st.dictionaries(st.sampled_from(["alarm", "output", "seconds", "toml", "replaces"]) | odd_text,
                            json_values | st.sampled_from(["garage-siren", "all", "garage-b2-water.level#1"])
                            | st.integers(-5, 70), max_size=3),
       nonce=st.binary(min_size=16, max_size=24))
def test_signed_commands_with_generated_args(site, name, args, nonce):
    try:
        cmd = sign_command(site.key, GW, name, args, nonce=b64url(nonce))
    except (ValueError, UnicodeEncodeError):
        return  # unsignable (NaN, a surrogate): covered by the unsigned tests above
    check(site, name, json.dumps(cmd).encode())


@FUZZ
@given(payload=st.binary(max_size=512) | json_values.map(lambda v: json.dumps(v).encode()), topic=topics)
def test_verify_raises_only_command_rejected(site, payload, topic):
    try:
        verify(payload, topic, GW, site.handler.keys, 1.7e9, site.handler.nonces)
    except CommandRejected as e:
        assert e.reason in REASONS and e.message
    else:
        pytest.fail("a random payload was accepted")

