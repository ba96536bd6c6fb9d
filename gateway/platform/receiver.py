"""The reference platform receiver: what the city side must do with the gateways' stream.

    receiver = Receiver("127.0.0.1", 1883, db="platform.sqlite", share="platform").start()
    ...
    receiver.events              # unique events, in arrival order
    receiver.duplicates          # events received again (same id): at-least-once at work
    receiver.undeclared_gaps()   # [(gateway, from_seq, to_seq)] missing and not declared by a gap event
    receiver.presence["gw-1"]    # the last retained status: {"state": "online", ...} or offline

Subscriptions: `<root>/+/event/+` (as `$share/<group>/...` when `share` is given, so several
receivers split the stream) and `<root>/+/status` (never shared: shared subscriptions do not get
retained messages). QoS 1. With `session`, the receiver keeps a persistent MQTT 5 session under that
client id, so the broker queues events for it while it is away.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.errors import UplinkError
from gateway.record import batch
from gateway.platform.schemas import EVENT_TYPES, Contract
from gateway.platform.store import Store

log = logging.getLogger(__name__)


def describe(gw: str, event: dict) -> str:
    """One live-view line per event."""
    t = event.get("type")
    if t == "alarm":
        what = (f"{event.get('sensor')}.{event.get('point')} {event.get('transition')} "
                f"level={event.get('level')} value={event.get('value')} {event.get('unit', '')}".rstrip())
    elif t == "fault":
        what = f"{event.get('sensor') or event.get('bus') or event.get('component')} {event.get('state')} {event.get('reason')}"
    elif t == "telemetry":
        what = (f"{event.get('sensor')}.{event.get('point')} last={event.get('last')} mean={event.get('mean')} "
                f"n={event.get('count')} {event.get('quality')}")
    elif t == "gap":
        what = f"EVICTED seq {event.get('from_seq')}..{event.get('to_seq')} ({event.get('count')} telemetry)"
    elif t == "status":
        what = f"uptime={event.get('uptime_s')}s outbox={event.get('outbox', {}).get('pending')}"
    else:
        what = f"{event.get('action')} by {event.get('actor')}"
    flags = (" [replay]" if event.get("replay") else "") + ("" if event.get("clock_synced") else " [clock?]")
    return f"{event.get('ts')} {gw} #{event.get('seq'):<7} {t:<9} {what}{flags}"


def decode_events(contract: Contract, gw: str, type_: str, payload) -> list[dict]:
    """The single events one message on `<root>/<gw>/event/<type>` carries: itself (contract 1's form,
    validated by the caller), or the readings of a telemetry batch (envelope version 2,
    gateway/contract/telemetry-batch.json) as single telemetry events. ValueError: a batch that is not
    valid or not from `gw` (the whole message is invalid, none of its readings is taken)."""
    if not batch.is_batch(payload):
        return [payload]
    errors = contract.errors("telemetry-batch", payload)
    if not errors and type_ != payload["type"]:
        errors = [f"payload type {payload['type']!r} on the {type_} topic"]
    if not errors and payload["gw"] != gw:
        errors = [f"gw {payload['gw']!r} is not gateway {gw!r}"]
    if errors:
        raise ValueError("; ".join(errors))
    return batch.expand(payload)


class Receiver:
    """A platform consumer: subscribe, validate, de-duplicate, detect gaps, store."""

    def __init__(self, host: str, port: int, *, root: str = "city/v1", db: str = ":memory:",
                 share: str | None = None, session: str | None = None, client_id: str | None = None,
                 ca: str | None = None, cert: str | None = None, key: str | None = None,
                 username: str | None = None, password: str | None = None,
                 schemas: str | None = None, echo=None):
        self.host, self.port, self.root = host, port, root.rstrip("/")
        self.share = share
        self.session = session
        self.contract = Contract(schemas)
        self.store = Store(db)
        self.echo = echo  # callable(str) for the live view, or None
        self.events: list[dict] = []
        self.invalid: list[tuple[str, str]] = []
        self.presence: dict[str, dict] = {}
        self.presence_history: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._connected_error: str | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=session or client_id or "",
                                  protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        if ca or cert:
            ctx = ssl.create_default_context(cafile=ca)
            if cert:
                ctx.load_cert_chain(cert, key)
            self.client.tls_set_context(ctx)
        self.client.reconnect_delay_set(0.1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> "Receiver":
        props = None
        if self.session:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        try:
            self.client.connect(self.host, self.port, 30, clean_start=not self.session, properties=props)
        except (OSError, ssl.SSLError) as e:
            raise UplinkError(f"platform receiver cannot reach {self.host}:{self.port}: {e}") from e
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise UplinkError(f"platform receiver: no subscription on {self.host}:{self.port} within "
                              f"{timeout} s ({self._connected_error or 'no CONNACK'})")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def close(self) -> None:
        self.stop()
        self.store.close()

    # -- queries -------------------------------------------------------------------------------
    @property
    def duplicates(self) -> int:
        return self.store.duplicates()

    def undeclared_gaps(self, gateway: str | None = None) -> list[tuple[str, int, int]]:
        gws = [gateway] if gateway else self.store.gateways()
        return [(gw, lo, hi) for gw in gws for lo, hi in self.store.undeclared(gw)]

    def declared_gaps(self, gateway: str) -> list[tuple[int, int]]:
        return self.store.declared(gateway)

    def of_type(self, type_: str) -> list[dict]:
        with self._lock:
            return [e for e in self.events if e["type"] == type_]

    def seqs(self, gateway: str | None = None) -> set[int]:
        with self._lock:
            return {e["seq"] for e in self.events if gateway is None or e["id"].rpartition("/")[0] == gateway}

    # -- paho callbacks (network thread) -------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self._connected_error = str(reason_code)
            log.error("platform receiver refused by %s:%s: %s", self.host, self.port, reason_code)
            return
        events = f"{self.root}/+/event/+"
        if self.share:
            events = f"$share/{self.share}/{events}"
        client.subscribe([(events, 1), (f"{self.root}/+/status", 1)])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        bad = [rc for rc in reason_codes if rc.is_failure]
        if bad:
            self._connected_error = f"subscription refused: {bad}"
            log.error("platform receiver: %s", self._connected_error)
            return
        self._subscribed.set()

    def _on_message(self, client, userdata, msg):
        parts = msg.topic[len(self.root) + 1:].split("/") if msg.topic.startswith(self.root + "/") else []
        try:
            payload = json.loads(msg.payload)
        except ValueError as e:
            self._invalid(msg, f"not JSON: {e}")
            return
        if len(parts) == 2 and parts[1] == "status":
            self._on_presence(msg, parts[0], payload)
        elif len(parts) == 3 and parts[1] == "event" and parts[2] in EVENT_TYPES:
            try:
                events = decode_events(self.contract, parts[0], parts[2], payload)
            except ValueError as e:
                self._invalid(msg, str(e))
                return
            for event in events:
                self._on_event(msg, parts[0], parts[2], event)
        else:
            self._invalid(msg, "unexpected topic")

    def _on_presence(self, msg, gw: str, payload) -> None:
        errors = self.contract.errors("presence", payload)
        if errors:
            self._invalid(msg, "; ".join(errors))
            return
        with self._lock:
            self.presence[gw] = payload
            self.presence_history.append((gw, payload))
        self.store.set_presence(gw, payload)
        if self.echo:
            self.echo(f"{payload.get('ts', '-')} {gw} is {payload['state'].upper()}"
                      f"{' (last will)' if 'ts' not in payload else ''}")

    def _on_event(self, msg, gw: str, type_: str, event) -> None:
        errors = self.contract.errors(type_, event)
        if not errors and event.get("type") != type_:
            errors = [f"payload type {event.get('type')!r} on the {type_} topic"]
        if not errors and event["id"].rpartition("/")[0] != gw:
            errors = [f"id {event['id']!r} is not from gateway {gw!r}"]
        if errors:
            self._invalid(msg, "; ".join(errors))
            return
        if not self.store.add_event(event):
            return  # a duplicate: counted by the store, ignored here
        with self._lock:
            self.events.append(event)
        if self.echo:
            self.echo(describe(gw, event))

    def _invalid(self, msg, error: str) -> None:
        log.warning("invalid payload on %s: %s", msg.topic, error)
        with self._lock:
            self.invalid.append((msg.topic, error))
        self.store.add_invalid(msg.topic, error, msg.payload)
        if self.echo:
            self.echo(f"{time.strftime('%H:%M:%S')} INVALID {msg.topic}: {error}")
