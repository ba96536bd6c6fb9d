"""The platform side: `[uplink]` (MQTT), `[outbox]` and `[commands]`. Files named
here (TLS material, platform keys) must exist now: finding out at the first connect,
hours later in the field, is too late."""

from __future__ import annotations

from pathlib import Path

from gateway.config.model import Commands, Outbox, Tls, Uplink

from .paths import resolve
from .schema import KEYS, MQTT_PROTOCOLS, RANGES
from .tables import Table, is_number, table_at


def build_uplink(top: Table, base: Path) -> Uplink | None:
    t = table_at(top, "uplink")
    if t is None:
        return None  # offline: events are kept in the outbox
    t.check_keys(KEYS["uplink"])
    host = t.text("host", required=True)
    topic_root = t.text("topic_root", "city/v1")
    if topic_root is not None:
        if "+" in topic_root or "#" in topic_root:
            t.problem("topic_root", f"must not contain the MQTT wildcards '+' or '#' (got \"{topic_root}\")")
        elif not topic_root.strip("/") or topic_root != topic_root.strip("/"):
            t.problem("topic_root", f"must not be empty or start or end with '/' (got \"{topic_root}\")")
    if is_number(t.data.get("protocol")):
        # TOML `protocol = 5` is a number; the MQTT versions are names
        t.problem("protocol", f'must be a string: "5" or "3.1.1" (got {t.data["protocol"]})')
        protocol = "5"
    else:
        protocol = t.text("protocol", "5", choices=MQTT_PROTOCOLS)
    username = t.text("username")
    password = t.text("password")
    if password is not None and username is None:
        t.problem("password", "needs username")
    return Uplink(host=host, port=t.integer("port", 1883, ge=1, le=65535), topic_root=topic_root,
                  client_id=t.text("client_id"), protocol=protocol,
                  keepalive_s=t.integer("keepalive_s", 30, ge=5, le=65535),
                  username=username, password=password, tls=_tls(t, base),
                  replay_per_s=float(t.number("replay_per_s", 200.0, within=RANGES["uplink"]["replay_per_s"])),
                  inflight_max=t.integer("inflight_max", 20, ge=1, le=65535))


def _tls(t: Table, base: Path) -> Tls | None:
    sub = t.sub("tls")
    if sub is None:
        return None
    sub.check_keys(KEYS["uplink.tls"])
    files = {}
    for key in ("ca", "cert", "key"):
        value = sub.text(key)
        if value is None:
            continue
        files[key] = resolve(base, value)
        if not Path(files[key]).is_file():
            sub.problem(key, f"file not found: {files[key]}")
        elif key == "key" and Path(files[key]).stat().st_mode & 0o077:
            # A client key others can read is a key others can use: refuse it, say how to close it.
            mode = Path(files[key]).stat().st_mode & 0o777
            sub.problem(key, f"private key {files[key]} is readable or writable by other users "
                             f"(mode {mode:04o}): chmod 600 {files[key]}")
    if ("cert" in files) != ("key" in files):
        missing = "key" if "cert" in files else "cert"
        sub.problem(missing, "is required: a client certificate needs both cert and key")
    return Tls(**files)


def build_outbox(top: Table) -> Outbox:
    t = table_at(top, "outbox")
    if t is None:
        return Outbox()
    t.check_keys(KEYS["outbox"])
    r = RANGES["outbox"]
    return Outbox(max_rows=t.integer("max_rows", 1_000_000, gt=0),
                  max_mb=float(t.number("max_mb", 512.0, within=r["max_mb"])),
                  telemetry_period_s=float(t.number("telemetry_period_s", 60.0, within=r["telemetry_period_s"])),
                  deadband=float(t.number("deadband", 0.05, within=r["deadband"])),
                  status_period_s=float(t.number("status_period_s", 60.0, within=r["status_period_s"])),
                  commit_s=float(t.number("commit_s", 30.0, within=r["commit_s"])))


def build_commands(top: Table, base: Path) -> Commands | None:
    t = table_at(top, "commands")
    if t is None:
        return None
    t.check_keys(KEYS["commands"])
    keys = []
    for i, value in enumerate(t.strings("platform_keys")):
        path = resolve(base, value)
        if not Path(path).is_file():
            t.problem("platform_keys", f"file not found: {path}", i)
        keys.append(path)
    return Commands(platform_keys=tuple(keys))
