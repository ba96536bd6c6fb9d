"""The reference platform receiver: what the city side must do with the gateways' stream.

    receiver = Receiver("127.0.0.1", 1883, db="platform.sqlite", share="platform").start()
    receiver = Receiver(host, port, db="postgresql://postgres@db/city", share="platform",
                        session="gateway-platform-platform-1")   # one of N, killable and restartable
    ...
    receiver.events              # unique events, in arrival order (keep_events=False: not kept)
    receiver.duplicates          # events received again (same (gateway, seq)): at-least-once at work
    receiver.undeclared_gaps()   # [(gateway, from_seq, to_seq)] missing and not declared by a gap event
    receiver.presence["gw-1"]    # the last retained status: {"state": "online", ...} or offline
    receiver.dropped_qos0        # QoS 0 messages dropped while `inbox_max` messages waited for the store

Subscriptions: `<root>/+/event/+` (as `$share/<group>/...` when `share` is given, so several
receivers split the stream) and `<root>/+/status` (never shared: shared subscriptions do not get
retained messages). QoS 1. With `session`, the receiver keeps a persistent MQTT 5 session under that
client id (clean_start=False, a session expiry interval), so the broker queues events for it while
it is away.

Acknowledgement: paho-mqtt 2.x with `manual_ack=True` sends no PUBACK by itself; the receiver's
writer thread commits a batch of messages in one store transaction and only then calls
`client.ack(mid, qos)` for each. A receiver killed with -9 has acknowledged nothing it had not
committed: the broker re-sends the rest to the same session when it comes back (de-duplicated by
(gateway, seq)). Acks are only sent on the connection the message came in on: after a reconnect the
broker re-sends whatever was not acknowledged, and the store drops it as a duplicate.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
from typing import NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.errors import UplinkError
from gateway.record import batch as telemetry_batch
from gateway.platform.schemas import EVENT_TYPES, Contract
from gateway.platform.stores import Batch, Store, StoreError, open_store

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
    if not telemetry_batch.is_batch(payload):
        return [payload]
    readings = payload["readings"]
    if isinstance(readings, list) and len(readings) > telemetry_batch.MAX_READINGS:
        # before the schema: jsonschema checks every reading even when maxItems already failed
        # (20,000 readings: ~1.9 s on paho's network thread) and quotes the whole array in the error
        raise ValueError(f"readings: {len(readings)} in one batch (at most {telemetry_batch.MAX_READINGS})")
    errors = contract.errors("telemetry-batch", payload)
    if not errors and type_ != payload["type"]:
        errors = [f"payload type {payload['type']!r} on the {type_} topic"]
    if not errors and payload["gw"] != gw:
        errors = [f"gw {payload['gw']!r} is not gateway {gw!r}"]
    if errors:
        raise ValueError(_joined(errors))
    return telemetry_batch.expand(payload)


def _joined(errors: list[str], limit: int = 2000) -> str:
    """The schema errors as one line, cut at `limit` characters: jsonschema quotes the offending
    value, and a hostile message's value can be a megabyte (the raw body is kept beside it anyway)."""
    text = "; ".join(errors)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class Delivery(NamedTuple):
    """One MQTT message as the writer sees it: what it decoded to, and how to acknowledge it."""
    mid: int
    qos: int
    generation: int  # the connection it came in on
    received: float
    batch: Batch


class Receiver:
    """A platform consumer: subscribe, validate, de-duplicate, detect gaps, store, then acknowledge."""

    def __init__(self, host: str, port: int, *, root: str = "city/v1", db: str | None = ":memory:",
                 store: Store | None = None, share: str | None = None, session: str | None = None,
                 client_id: str | None = None, session_expiry_s: int = 3600, receive_maximum: int = 1000,
                 batch_max: int = 500, linger_s: float = 0.05, keep_events: bool = True,
                 inbox_max: int = 10_000,
                 ca: str | None = None, cert: str | None = None, key: str | None = None,
                 username: str | None = None, password: str | None = None,
                 schemas: str | None = None, echo=None):
        self.host, self.port, self.root = host, port, root.rstrip("/")
        self.share = share
        self.session = session
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.batch_max = batch_max
        self.linger_s = linger_s  # how long a batch waits for company once its first message is in
        # QoS 1 messages in flight are bounded by Receive Maximum; QoS 0 ones are not (the broker does
        # not wait for an ack): past `inbox_max` messages not yet committed, a QoS 0 one is dropped
        self.inbox_max = inbox_max
        self.dropped_qos0 = 0
        self._dropped_logged = 0.0
        self.keep_events = keep_events
        self.contract = Contract(schemas)
        self.store = store if store is not None else open_store(db)
        self.echo = echo  # callable(str) for the live view, or None
        self.events: list[dict] = []
        self.invalid: list[tuple[str, str]] = []
        self.presence: dict[str, dict] = {}
        self.presence_history: list[tuple[str, dict]] = []
        self.committed = 0  # new events committed by this receiver
        self.invalid_count = 0
        self.store_errors = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._connected_error: str | None = None
        self._generation = 0
        self._inbox: queue.SimpleQueue[Delivery | None] = queue.SimpleQueue()
        self._pending = 0  # deliveries taken in, not yet committed
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=session or client_id or "",
                                  protocol=mqtt.MQTTv5, manual_ack=True)
        if username:
            self.client.username_pw_set(username, password)
        if ca or cert:
            ctx = ssl.create_default_context(cafile=ca)
            if cert:
                ctx.load_cert_chain(cert, key)
            self.client.tls_set_context(ctx)
        # back soon after the broker: mosquitto 2.0.11 forgets shared subscriptions across its own
        # restart, and events published before the group re-subscribes are dropped (0x10)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> "Receiver":
        props = Properties(PacketTypes.CONNECT)
        # how many unacknowledged messages the broker may have in flight to us: what a batch can hold
        props.ReceiveMaximum = self.receive_maximum
        if self.session:
            props.SessionExpiryInterval = self.session_expiry_s
        self._writer = threading.Thread(target=self._write_loop, name="platform-writer", daemon=True)
        self._writer.start()
        try:
            self.client.connect(self.host, self.port, 30, clean_start=not self.session, properties=props)
        except (OSError, ssl.SSLError) as e:
            self._stop_writer(0)
            raise UplinkError(f"platform receiver cannot reach {self.host}:{self.port}: {e}") from e
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise UplinkError(f"platform receiver: no subscription on {self.host}:{self.port} within "
                              f"{timeout} s ({self._connected_error or 'no CONNACK'})")
        return self

    def stop(self, drain_s: float = 5.0) -> None:
        """Commit and acknowledge what came in (bounded by `drain_s`), then disconnect."""
        deadline = time.monotonic() + drain_s
        while self._pending and time.monotonic() < deadline and self._writer and self._writer.is_alive():
            time.sleep(0.01)
        self.client.disconnect()
        self.client.loop_stop()
        self._stop_writer(max(0.0, deadline - time.monotonic()) + 1)

    def _stop_writer(self, timeout: float) -> None:
        self._stopping.set()
        self._inbox.put(None)
        if self._writer is not None:
            self._writer.join(timeout)

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
        self._generation += 1
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
        if msg.qos == 0 and self._pending >= self.inbox_max:
            self._drop(msg.topic)
            return
        # paho 2.x re-raises an exception from on_message and its network thread dies: every gateway's
        # stream would stop for one hostile message. Whatever decode raises makes the message invalid.
        try:
            batch = self.decode(msg.topic, msg.payload)
        except Exception as e:  # noqa: BLE001 - RecursionError, OverflowError, a bug: the message's, not the stream's
            log.warning("platform receiver: cannot decode a message on %s", msg.topic, exc_info=True)
            batch = Batch(invalid=[(msg.topic, _joined([f"cannot decode: {type(e).__name__}: {e}"]), msg.payload)])
        with self._lock:
            self._pending += 1
        self._inbox.put(Delivery(msg.mid, msg.qos, self._generation, time.time(), batch))

    def _drop(self, topic: str) -> None:
        """A QoS 0 message while the writer is `inbox_max` behind: dropped, counted, logged (at most
        every 10 s: a flood must not also flood the log)."""
        self.dropped_qos0 += 1
        now = time.monotonic()
        if now - self._dropped_logged >= 10 or self.dropped_qos0 == 1:
            self._dropped_logged = now
            log.warning("platform receiver: %d messages waiting for the store (inbox_max %d): QoS 0 message on "
                        "%s dropped (%d dropped so far)", self._pending, self.inbox_max, topic, self.dropped_qos0)

    # -- decoding: one MQTT message -> what to store -------------------------------------------
    def decode(self, topic: str, payload: bytes) -> Batch:
        """Validate one message; a Batch of the events, presence or rejection it carries."""
        parts = topic[len(self.root) + 1:].split("/") if topic.startswith(self.root + "/") else []
        try:
            data = json.loads(payload)
        except (ValueError, RecursionError) as e:  # RecursionError: e.g. 100 kB of '['
            return Batch(invalid=[(topic, f"not JSON: {type(e).__name__}: {e}", payload)])
        if len(parts) == 2 and parts[1] == "status":
            errors = self.contract.errors("presence", data)
            if errors:
                return Batch(invalid=[(topic, _joined(errors), payload)])
            return Batch(presence=[(parts[0], data)])
        if len(parts) == 3 and parts[1] == "event" and parts[2] in EVENT_TYPES:
            gw, type_ = parts[0], parts[2]
            try:
                events = decode_events(self.contract, gw, type_, data)
            except ValueError as e:
                return Batch(invalid=[(topic, str(e), payload)])
            for event in events:  # a batch's readings are checked as the single events they stand for
                errors = self.contract.errors(type_, event)
                if not errors and event.get("type") != type_:
                    errors = [f"payload type {event.get('type')!r} on the {type_} topic"]
                if not errors and event["id"].rpartition("/")[0] != gw:
                    errors = [f"id {event['id']!r} is not from gateway {gw!r}"]
                if errors:
                    return Batch(invalid=[(topic, _joined(errors), payload)])
            return Batch(events=events)
        return Batch(invalid=[(topic, "unexpected topic", payload)])

    # -- the writer: batch, commit, then acknowledge --------------------------------------------
    def _write_loop(self) -> None:
        while True:
            first = self._inbox.get()
            if first is None:
                return
            deliveries = [first]
            n = len(first.batch.events)
            # one transaction per message costs ~3 round trips and a commit each: at a few hundred
            # messages/s, waiting `linger_s` for company divides that CPU by the batch size
            until = time.monotonic() + self.linger_s
            while n < self.batch_max:
                try:
                    d = self._inbox.get(timeout=max(0.0, until - time.monotonic()))
                except queue.Empty:
                    break
                if d is None:
                    self._inbox.put(None)
                    break
                deliveries.append(d)
                n += len(d.batch.events)
            merged = Batch()
            for d in deliveries:
                merged.events += d.batch.events
                merged.received += [d.received] * len(d.batch.events)
                merged.presence += d.batch.presence
                merged.invalid += d.batch.invalid
            new = self._commit(merged)
            if new is None:
                return  # stopping with a store that does not answer: the broker keeps them unacked
            for d in deliveries:
                if d.qos and d.generation == self._generation:
                    self.client.ack(d.mid, d.qos)
            try:
                self._committed(merged, new)
            except Exception:  # noqa: BLE001 - an echo callback's failure is not the stream's
                log.exception("platform receiver: after the commit")
            with self._lock:
                self._pending -= len(deliveries)

    def _commit(self, batch: Batch) -> list[bool] | None:
        delay = 0.1
        while True:
            try:
                return self.store.write(batch)
            except Exception as e:  # noqa: BLE001 - StoreError, or a bug: the writer must not die
                self.store_errors += 1
                log.error("platform receiver: %s (retrying in %.1f s; nothing acknowledged)", e, delay,
                          exc_info=not isinstance(e, StoreError))
                if self._stopping.wait(delay):
                    return None
                delay = min(delay * 2, 5.0)

    def _committed(self, batch: Batch, new: list[bool]) -> None:
        fresh = [e for e, is_new in zip(batch.events, new) if is_new]
        with self._lock:
            self.committed += len(fresh)
            self.invalid_count += len(batch.invalid)
            for gw, payload in batch.presence:
                self.presence[gw] = payload
            if self.keep_events:  # a long-running receiver keeps them in its store only
                self.events += fresh
                self.presence_history += batch.presence
                self.invalid += [(topic, error) for topic, error, _ in batch.invalid]
        for topic, error, _ in batch.invalid:
            log.warning("invalid payload on %s: %s", topic, error)
        if self.echo:
            for gw, payload in batch.presence:
                self.echo(f"{payload.get('ts', '-')} {gw} is {payload['state'].upper()}"
                          f"{' (last will)' if 'ts' not in payload else ''}")
            for e in fresh:
                self.echo(describe(e["id"].rpartition("/")[0], e))
            for topic, error, _ in batch.invalid:
                self.echo(f"{time.strftime('%H:%M:%S')} INVALID {topic}: {error}")
