"""Signing and sending commands, as the platform does: `gateway-platform send`.

    sign_command(key, "pd-zhangjiang-001", "silence", {})       -> the wire dict, `sig` included
    send_command("127.0.0.1", 1883, cmd, root="city/v1")         -> the replies, when the final one is in
    command_args(["output=garage-siren", "seconds=5"])           -> {"output": "garage-siren", "seconds": 5}
    command_args(["url=https://files.example/r.bundle", "bundle=r.bundle"])
                                                     -> {"url": ..., "sha256": <of r.bundle>, "size": <its bytes>}
"""

from __future__ import annotations

import json
import math
import os
import secrets
import ssl
import threading
import time
import uuid
from datetime import datetime, timezone

from gateway.commands.signing import MAX_VALIDITY_S, b64url, sign
from gateway.errors import CommandError, UplinkError


def utc_iso(ts: float) -> str:
    """2025-06-01T08:00:00.123Z: the form the command schema accepts."""
    ms = round(ts * 1000)  # not strftime's %f: 0.907 s is 0.906999... as a float, and issue times must grow
    return datetime.fromtimestamp(ms // 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


_last_issued: dict[bytes, float] = {}  # per signing key, in this process
_issue_lock = threading.Lock()


def issue_time(key, now: float | None = None, after: float | None = None) -> float:
    """When a command signed by `key` is issued: now (to the millisecond, the wire's precision), but
    always after the last one this process issued with that key and after `after` (the last one
    another process issued: IssueFile). A gateway whose nonce file was lost accepts only commands
    issued after the newest it has seen from the key, so the platform's issue times must only grow,
    even if its clock steps back."""
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    now = time.time() if now is None else now
    with _issue_lock:
        ms = math.floor(now * 1000)  # whole milliseconds: what utc_iso writes and the gateway reads back
        for last in (_last_issued.get(raw), after):
            if last is not None:
                ms = max(ms, round(last * 1000) + 1)
        _last_issued[raw] = ms / 1000
    return ms / 1000


class IssueFile:
    """The last issue time of a signing key, in a file beside it (PREFIX.key.issued), so that two
    `gateway-platform send` runs a millisecond apart, or across a clock step, still issue in order."""

    def __init__(self, key_path: str):
        self.path = key_path + ".issued"

    def last(self) -> float | None:
        try:
            with open(self.path, encoding="ascii") as f:
                value = float(f.read().strip())
        except (OSError, ValueError):
            return None
        return value if math.isfinite(value) else None

    def save(self, issued: float) -> None:
        from gateway.commands.atomic import write_atomic

        write_atomic(self.path, f"{issued:.3f}\n".encode(), mode=0o600)


def sign_command(key, gateway: str, name: str, args: dict | None = None, ttl_s: float = 60,
                 *, now: float | None = None, command_id: str | None = None, nonce: str | None = None,
                 after: float | None = None) -> dict:
    """A signed command for `gateway`, valid from now for ttl_s seconds (at most 300). Without `now`,
    issued at issue_time(key, after=after): later than any earlier command from this key."""
    if not 0 < ttl_s <= MAX_VALIDITY_S:
        raise CommandError("bad_validity", f"ttl_s must be > 0 and at most {MAX_VALIDITY_S:g} s")
    now = issue_time(key, after=after) if now is None else now
    cmd = {"v": 1, "id": command_id or str(uuid.uuid4()), "gateway": gateway, "name": name,
           "args": dict(args or {}), "issued_at": utc_iso(now), "expires_at": utc_iso(now + ttl_s),
           "nonce": nonce or b64url(secrets.token_bytes(16))}
    cmd["sig"] = sign(key, cmd)
    return cmd


def bundle_args(path: str) -> dict:
    """The `sha256` and `size` of a release bundle file, as the `update` command carries them: of the
    whole file, byte for byte as the download server serves it."""
    import hashlib

    h, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
                size += len(block)
    except OSError as e:
        raise CommandError("bad_args", f"bundle: cannot read {path}: {e.strerror}") from None
    return {"sha256": h.hexdigest(), "size": size}


def command_args(pairs: list[str]) -> dict:
    """NAME=VALUE words from the command line: an all-digit VALUE is an integer, @FILE is the text of
    FILE (config_push toml=@gateway.toml), bundle=FILE is the `sha256` and `size` of FILE (update),
    anything else a string."""
    args = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CommandError("bad_args", f"{pair!r}: arguments are NAME=VALUE (e.g. seconds=5, toml=@FILE)")
        if name == "bundle":
            args.update(bundle_args(value))
        elif value.startswith("@"):
            try:
                with open(value[1:], encoding="utf-8") as f:
                    args[name] = f.read()
            except OSError as e:
                raise CommandError("bad_args", f"{name}: cannot read {value[1:]}: {e.strerror}") from None
        elif value.lstrip("-").isdigit():
            args[name] = int(value)
        else:
            args[name] = value
    return args


def send_command(host: str, port: int, command: dict, *, root: str = "city/v1", timeout: float = 10.0,
                 ca: str | None = None, cert: str | None = None, key: str | None = None,
                 username: str | None = None, password: str | None = None, on_reply=None) -> list[dict]:
    """Publish `command` on <root>/<gateway>/cmd/<name> (QoS 1) and collect the replies with its id
    from <root>/<gateway>/reply until the final one (config_push answers "applying" first, then
    "applied" or "rolled_back"). Raises UplinkError when the broker or the reply does not come."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    base = f"{root.rstrip('/')}/{command['gateway']}"
    replies: list[dict] = []
    subscribed, done = threading.Event(), threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            client.subscribe(f"{base}/reply", qos=1)

    def on_message(client, userdata, message):
        try:
            reply = json.loads(message.payload)
        except ValueError:
            return  # not ours to judge: other senders share the reply topic
        if isinstance(reply, dict) and reply.get("id") == command["id"]:
            replies.append(reply)
            if on_reply is not None:
                on_reply(reply)
            if not _more_to_come(reply):
                done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"platform-send-{os.getpid()}-{secrets.token_hex(3)}",
                         protocol=mqtt.MQTTv5)
    if username:
        client.username_pw_set(username, password)
    if ca or cert:
        ctx = ssl.create_default_context(cafile=ca)
        if cert:
            ctx.load_cert_chain(cert, key)
        client.tls_set_context(ctx)
    client.on_connect = on_connect
    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    try:
        client.connect(host, port, 30)
    except (OSError, ssl.SSLError) as e:
        raise UplinkError(f"cannot reach the broker {host}:{port}: {e}") from e
    client.loop_start()
    try:
        if not subscribed.wait(timeout):
            raise UplinkError(f"no subscription to {base}/reply on {host}:{port} within {timeout:g} s")
        client.publish(f"{base}/cmd/{command['name']}", json.dumps(command, ensure_ascii=False), qos=1)
        deadline, extended, heard = time.monotonic() + timeout, False, 0
        while not done.wait(0.1):
            if replies and len(replies) > heard and _state(replies[0]) in UPDATE_MORE_TO_COME:
                # an update downloads, then installs: each reply buys the stall_s it names (else the
                # first one's) before we give up
                heard = len(replies)
                stall = replies[-1].get("result", {}).get("stall_s", replies[0]["result"].get("stall_s", 900))
                deadline = time.monotonic() + float(stall) + timeout
            elif not extended and replies and _state(replies[0]) == "applying":
                # a pushed config is being watched on the gateway: its verdict comes within watch_s
                deadline = time.monotonic() + float(replies[0]["result"].get("watch_s", 60)) + timeout
                extended = True
            if time.monotonic() >= deadline:
                got = "only the first reply" if replies else "no reply"
                raise UplinkError(f"{got} from {command['gateway']} within the time allowed (is it online?)")
    finally:
        client.disconnect()
        client.loop_stop()
    return replies


# gateway/update/remote.py MORE_TO_COME: an update's replies before its outcome
UPDATE_MORE_TO_COME = ("downloading", "downloaded", "installing")


def _state(reply: dict):
    result = reply.get("result")
    return result.get("state") if isinstance(result, dict) else None


def _more_to_come(reply: dict) -> bool:
    return reply.get("ok") is True and _state(reply) in ("applying", *UPDATE_MORE_TO_COME)
