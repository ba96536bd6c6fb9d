"""The uplink: the gateway's MQTT connection to the city platform.

One thread owns everything MQTT: it connects (a fresh paho client per session), publishes from the
outbox through the Sender, reads PUBACKs, marks rows delivered, hands commands to a callback and
reconnects on the schedule of reconnect.py: while the broker is away a plain TCP probe every ~1 s
(jittered, not growing through the outage), the full MQTT connect once a probe connects; exponential
backoff (<= 60 s) only after the broker itself said no (credentials, TLS, server busy). Driving paho's
`loop()` from this thread, instead of `loop_start()`, means there is no second network thread to
supervise (long-outage reconnect bugs have been reported against it), no lock ordering between
threads, and a new client per session: paho re-sends its own in-memory in-flight messages on reconnect, but the outbox is the
truth and the Sender re-sends from it.

The caller never waits: start(), stop(), reply() and status() return at once (stop() waits for the
clean shutdown, bounded). Topics, with `root` = topic_root and `gw` = the gateway id:
    <root>/<gw>/status        retained: birth {"state": "online", ...}, LWT and clean shutdown "offline"
    <root>/<gw>/event/<type>  the events, QoS 1 (telemetry many readings to a message: record/batch.py)
    <root>/<gw>/cmd/<name>    subscribed: commands from the platform
    <root>/<gw>/reply         answers to commands
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

import gateway
from gateway.config.model import Uplink as UplinkConfig
from gateway.errors import OutboxError, UplinkError
from gateway.record import batch, envelope
from gateway.record.clock import SyncState
from gateway.record.outbox import Outbox, Pending
from gateway.sync.pacing import TokenBucket
from gateway.sync.reconnect import Redial
from gateway.sync.sender import NO_SUBSCRIBERS, Sender
from gateway.sync.tls import tls_context

log = logging.getLogger(__name__)

PROTOCOLS = {"5": mqtt.MQTTv5, "5.0": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311, "311": mqtt.MQTTv311}
CREDENTIALS_REFUSED = {0x86, 0x87}  # bad user name or password; not authorised (3.1.1 codes 4, 5)
# MQTT 5 CONNACK: server busy, quota exceeded, connection rate exceeded (3.1.1: 3 server unavailable,
# which paho maps to 0x88 and which a restarting broker may send too: a plain refusal then)
BROKER_BUSY = {0x89, 0x97, 0x9F}
OFFLINE_LWT = json.dumps({"state": "offline"}, separators=(",", ":"))
_PACKET_OVERHEAD = 512  # topic, fixed header and properties within the broker's Maximum Packet Size


def _uplink_error(kind: str, message: str) -> UplinkError:
    e = UplinkError(message)
    e.kind = kind  # the uplink state it leads to: unreachable, tls_error, refused, error
    return e


class Uplink:
    """The MQTT link to the platform: at-least-once delivery of the outbox, birth/LWT status,
    commands in, replies out."""

    def __init__(self, cfg: UplinkConfig, outbox: Outbox, gateway_id: str, birth_info: dict | None = None, *,
                 on_command=None, backoff_initial_s: float = 1.0, backoff_max_s: float = 60.0, probe_s: float = 1.0,
                 max_message_bytes: int = 256 * 1024, connack_timeout_s: float = 10.0,
                 housekeep_s: float = 30.0, shutdown_drain_s: float = 2.0, writer=None, record=None):
        if str(cfg.protocol) not in PROTOCOLS:
            raise UplinkError(f"[uplink] protocol {cfg.protocol!r}: expected \"5\" or \"3.1.1\"")
        self.cfg = cfg
        self.outbox = outbox
        self.gateway_id = gateway_id
        self.birth_info = dict(birth_info or {})
        self.on_command = on_command  # on_command(name, payload: bytes), called on the uplink thread
        # One writer owns the outbox: with `writer` (the Recorder) marks and housekeeping go through it,
        # fault events through `record(type, fields, ts)` (the daemon's: `gateway events` sees them).
        self.writer = writer
        self.record = record or (writer.submit if writer is not None else None)
        self._marked: queue.SimpleQueue = queue.SimpleQueue()  # seqs the writer has marked
        self.protocol = PROTOCOLS[str(cfg.protocol)]
        self.client_id = cfg.client_id or gateway_id
        self.base = f"{cfg.topic_root.rstrip('/')}/{gateway_id}"
        self.status_topic = f"{self.base}/status"
        self.reply_topic = f"{self.base}/reply"
        self.cmd_filter = f"{self.base}/cmd/#"
        self.address = f"{cfg.host}:{cfg.port}"
        # a backlog batch is paid for whole (gateway/sync/sender.py): the bucket saves up one batch
        self.sender = Sender(outbox, cfg.inflight_max, TokenBucket(cfg.replay_per_s, burst=max(
            1.0, min(cfg.replay_per_s, float(batch.MAX_READINGS)))), max_message_bytes)
        # probes while the broker is away; the backoff is for a broker that answered no
        self.redial = Redial(cfg.host, cfg.port, probe_s=probe_s, backoff_initial_s=backoff_initial_s,
                             backoff_max_s=min(backoff_max_s, 60.0), probe_timeout_s=min(2.0, connack_timeout_s))
        self._connack_timeout = connack_timeout_s
        self._housekeep_s = housekeep_s
        self._drain_s = shutdown_drain_s
        self._clock_synced = SyncState()
        self._replies: queue.SimpleQueue = queue.SimpleQueue()
        self._rebirth = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards the status snapshot only
        self._state = "stopped"
        self._last_error: str | None = None
        self._connected_at: float | None = None
        self._heartbeat = time.monotonic()
        self._snapshot: dict = {}
        self._snapshot_at = 0.0
        self.connects = 0
        self.attempts = 0
        self._connack = None
        self._offline_mid = None
        self._offline_acked = False

    # -- the caller's side ---------------------------------------------------------------------
    def start(self) -> "Uplink":
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown: let in-flight events be acked (bounded), publish the retained offline
        status, disconnect."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("uplink thread did not stop within %.0f s", timeout)
            self._thread = None

    def reply(self, payload) -> None:
        """Queue an answer for <root>/<gw>/reply: sent while online, else dropped (audit events keep the record)."""
        if not isinstance(payload, (bytes, str)):
            payload = json.dumps(payload, separators=(",", ":"))
        self._replies.put(payload)

    def rebirth(self) -> None:
        """Publish the retained birth again (the platform's `rebirth` command), from the uplink thread."""
        self._rebirth.set()

    def alive(self) -> bool:
        """The uplink thread runs and its loop turned within the last 30 s (for the watchdog)."""
        return (self._thread is not None and self._thread.is_alive()
                and time.monotonic() - self._heartbeat < 30.0)

    def event_topic(self, type_: str) -> str:
        return f"{self.base}/event/{type_}"

    def status(self) -> dict:
        """The uplink's health for `gateway status`: state, counts, outbox depth (a snapshot at most
        a second old: this never touches the disk)."""
        counts = self.sender.counts
        with self._lock:
            snapshot = dict(self._snapshot)
        return {
            "state": self._state, "broker": self.address, "tls": self.cfg.tls is not None,
            "protocol": "5" if self.protocol == mqtt.MQTTv5 else "3.1.1",
            "connected_since": envelope.iso_ms(self._connected_at) if self._connected_at else None,
            "last_error": self._last_error,
            "next_retry_in_s": None if self.redial.next_retry is None else
            round(max(0.0, self.redial.next_retry - time.monotonic()), 1),
            # attempts: every try the broker could see (full sessions and TCP probes)
            "connects": self.connects, "attempts": self.attempts + self.redial.probes, "probes": self.redial.probes,
            "inflight": len(self.sender.inflight),
            **{k: counts[k] for k in ("published", "messages", "delivered", "resent", "replayed", "poison",
                                      "refused", "no_subscriber")},
            "thread_alive": self._thread is not None and self._thread.is_alive(),
            "outbox": snapshot,
        }

    # -- the uplink thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            kind = "unreachable"  # a session that went online and then lost the link
            try:
                self._session()
            except UplinkError as e:
                kind = getattr(e, "kind", "error")
                self._failed(kind, str(e))
            except Exception as e:  # noqa: BLE001
                # supervision: whatever paho, the socket or a bug throws, this thread lives on and
                # retries; the traceback goes to the log
                log.exception("uplink session to %s failed unexpectedly", self.address)
                kind = "error"
                self._failed(kind, f"{type(e).__name__}: {e}")
            if self._stop.is_set():
                break
            self.redial.wait(kind, self._stop, self._tick)
        self._state = "stopped"
        self._refresh(force=True)

    def _failed(self, kind: str, message: str) -> None:
        self._state = kind
        # loud: a refused certificate or password needs a technician, not a silent retry loop; but a
        # failure repeated at every try of one outage (a balancer that accepts and closes) once
        level = logging.DEBUG if message == self._last_error else logging.ERROR
        self._last_error = message
        log.log(level, "uplink %s: %s (events stay in the outbox; retrying)", self.address, message)

    def _tick(self) -> None:
        self._heartbeat = time.monotonic()
        self._refresh()

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._snapshot_at < 1.0:
            return
        self._snapshot_at = now
        try:
            snapshot = self.outbox.stats()
        except OutboxError as e:
            snapshot = {"error": str(e)}
        with self._lock:
            self._snapshot = snapshot

    def _client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=self.protocol)
        client.will_set(self.status_topic, OFFLINE_LWT, qos=1, retain=True)
        if self.cfg.username:
            client.username_pw_set(self.cfg.username, self.cfg.password)
        if self.cfg.tls is not None:
            client.tls_set_context(tls_context(self.cfg.tls))
        client.max_inflight_messages_set(max(1, self.cfg.inflight_max))
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def _session(self) -> None:
        self.attempts += 1
        if self._last_error is None:
            # after a failure the state keeps naming it (tls_error, refused...) until online again
            self._state = "connecting"
        self._connack = None
        client = self._client()
        ours = False  # the session ended by an exception of our own code (a callback's), not the broker's doing
        try:
            self._connect(client)
            self._online(client)
        except UplinkError:
            raise
        except Exception:
            ours = True
            raise
        finally:
            for row, reason in self.sender.session_lost(strike=not ours):
                self._poison(row, reason)
            self._flush_acks()
            self._connected_at = None
            if client.is_connected():
                client.disconnect()

    def _connect(self, client: mqtt.Client) -> None:
        hint = "" if self.cfg.tls else " (a TLS-only port? then configure [uplink] tls)"
        try:
            if self.protocol == mqtt.MQTTv5:
                client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive_s, clean_start=True)
            else:
                client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive_s)
            deadline = time.monotonic() + self._connack_timeout
            while self._connack is None:
                rc = client.loop(0.05)
                if self._connack is not None:
                    break
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    raise _uplink_error("unreachable", f"broker {self.address} closed the connection before "
                                                       f"accepting it: {mqtt.error_string(rc)}{hint}")
                if time.monotonic() > deadline or self._stop.is_set():
                    raise _uplink_error("unreachable", f"no CONNACK from {self.address} within "
                                                       f"{self._connack_timeout:.0f} s{hint}")
        except ssl.SSLError as e:
            detail = getattr(e, "verify_message", None) or str(e)
            raise _uplink_error("tls_error", f"TLS with {self.address} failed: {e.reason}: {detail}") from e
        except OSError as e:
            raise _uplink_error("unreachable", f"cannot reach broker {self.address}: {e}") from e
        reason, _props = self._connack
        if reason.is_failure and reason.value in BROKER_BUSY:
            raise _uplink_error("busy", f"broker {self.address} is shedding load: {reason} (backing off)")
        if reason.is_failure:
            if reason.value in CREDENTIALS_REFUSED:
                raise _uplink_error("refused", f"broker {self.address} refused the credentials of "
                                               f"{self.cfg.username or 'anonymous'!r} ({reason}); check "
                                               f"[uplink] username/password or the client certificate")
            raise _uplink_error("refused", f"broker {self.address} refused the connection: {reason}")

    def _online(self, client: mqtt.Client) -> None:
        _reason, props = self._connack
        self.redial.online()
        self.connects += 1
        self._connected_at = time.time()
        self._last_error = None
        broker_max = getattr(props, "MaximumPacketSize", None) if props is not None else None
        receive_max = getattr(props, "ReceiveMaximum", None) if props is not None else None
        self.sender.window = max(1, min(self.cfg.inflight_max, receive_max or self.cfg.inflight_max))
        self.sender.start_session(self.outbox.next_seq, broker_max - _PACKET_OVERHEAD if broker_max else None)
        client.publish(self.status_topic, self._birth(), qos=1, retain=True)
        client.subscribe(self.cmd_filter, qos=1)
        self._state = "online"
        log.info("uplink online to %s as %s (backlog before seq %d)", self.address, self.client_id,
                 self.sender.live_from)
        last_housekeeping = time.monotonic()
        while not self._stop.is_set():
            self._heartbeat = time.monotonic()
            self._pump(client)
            rc = client.loop(0.05)
            self._flush_acks()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self._state = "offline"
                self._last_error = f"connection to {self.address} lost: {mqtt.error_string(rc)}"
                log.warning("uplink %s; %d in flight will be re-sent", self._last_error, len(self.sender.inflight))
                return
            if time.monotonic() - last_housekeeping > self._housekeep_s:
                last_housekeeping = time.monotonic()
                self._housekeep()
            self._refresh()
        self._shutdown(client)

    def _pump_replies(self, client: mqtt.Client) -> None:
        while not self._replies.empty():  # this thread is the only consumer
            client.publish(self.reply_topic, self._replies.get_nowait(), qos=1)

    def _pump(self, client: mqtt.Client) -> None:
        while not self._marked.empty():
            self.sender.marked(self._marked.get_nowait())
        if self._rebirth.is_set():
            self._rebirth.clear()
            client.publish(self.status_topic, self._birth(), qos=1, retain=True)
        self._pump_replies(client)
        for rows, replay in self.sender.next_messages():
            row = rows[0]
            if batch.batchable(row):
                payload = batch.build(rows, self.outbox.context, replay).encode()
            else:
                payload = (envelope.as_replay(row.body) if replay else row.body).encode()
            if self.sender.too_large(payload):
                if len(rows) > 1:
                    self.sender.unbatch(rows)
                    continue
                self._poison(row, f"{len(payload)} bytes is over the {self.sender.session_max_bytes}-byte limit")
                continue
            info = client.publish(self.event_topic(row.type), payload, qos=1)
            if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                # NO_CONN: paho queued it but the link is gone; loop() reports the loss next
                self.sender.sent(info.mid, rows, replay)
            elif info.rc == mqtt.MQTT_ERR_PAYLOAD_SIZE and len(rows) > 1:
                self.sender.unbatch(rows)
            elif info.rc == mqtt.MQTT_ERR_PAYLOAD_SIZE:
                self._poison(row, "over the MQTT payload limit")
            else:
                log.warning("publishing seq %d failed: %s", row.seq, mqtt.error_string(info.rc))
                break

    def _flush_acks(self) -> None:
        acked = self.sender.take_acked()
        if not acked:
            return
        if self.writer is not None:
            self.writer.delivered(acked, on_marked=self._marked.put)  # with the next group commit
            return
        try:
            self.outbox.mark_delivered(acked)
            self.sender.marked(acked)
        except OutboxError as e:
            # not marked = sent again later: a duplicate the platform drops by id, never a loss
            log.error("cannot mark %d events delivered: %s", len(acked), e)

    def _housekeep(self) -> None:
        if self.writer is not None:
            return  # the writer housekeeps on its own cadence
        try:
            self.outbox.housekeep()
        except OutboxError as e:
            log.error("outbox housekeeping: %s", e)

    def _poison(self, row: Pending, reason: str) -> None:
        self.sender.counts["poison"] += 1
        log.error("event seq %d (%s) will never be accepted by %s: %s; marked failed in the outbox",
                  row.seq, row.type, self.address, reason)
        fault = {"component": "uplink", "state": "fault", "reason": "message_refused", "detail": reason,
                 "failed_seq": row.seq, "failed_type": row.type}
        if self.writer is not None:
            self.writer.failed(row.seq, reason)
            self.record(envelope.FAULT, fault, time.time())
            return
        try:
            self.outbox.mark_failed(row.seq, reason)
            self.outbox.add(envelope.FAULT, fault)
        except OutboxError as e:
            log.error("recording the refused event seq %d: %s", row.seq, e)

    def _birth(self) -> str:
        birth = {"state": "online", "firmware": gateway.__version__, "config_hash": "", "sensors": []}
        birth.update(self.birth_info)
        birth.update({"ts": envelope.iso_ms(time.time()), "boot": self.outbox.boot,
                      "clock_synced": self._clock_synced()})
        return json.dumps(birth, separators=(",", ":"))

    def _shutdown(self, client: mqtt.Client) -> None:
        self._state = "stopping"
        self._pump_replies(client)  # a command's answer must not die with a reload
        deadline = time.monotonic() + self._drain_s
        while self.sender.inflight and time.monotonic() < deadline:
            if client.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
                return
            self._flush_acks()
        offline = {"state": "offline", "ts": envelope.iso_ms(time.time()), "reason": "shutdown"}
        self._offline_acked = False
        self._offline_mid = client.publish(self.status_topic, json.dumps(offline, separators=(",", ":")),
                                           qos=1, retain=True).mid
        deadline = time.monotonic() + self._drain_s
        while not self._offline_acked and time.monotonic() < deadline:
            if client.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
                break
        client.disconnect()
        log.info("uplink to %s closed", self.address)

    # -- paho callbacks (run inside client.loop() on the uplink thread) --------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self._connack = (reason_code, properties)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if reason_code is not None and reason_code.is_failure:
            log.debug("disconnected from %s: %s", self.address, reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        if mid == self._offline_mid:
            self._offline_acked = True
            return
        code = reason_code.value if reason_code is not None else 0
        # 0x10 "no matching subscribers" is a success code that delivered nothing: the Sender holds it
        failure = code if reason_code is not None and (reason_code.is_failure or code == NO_SUBSCRIBERS) else None
        for row, reason in self.sender.puback(mid, failure):
            self._poison(row, reason)

    def _on_message(self, client, userdata, message):
        prefix = self.base + "/cmd/"
        if not message.topic.startswith(prefix) or self.on_command is None:
            return
        name = message.topic[len(prefix):]
        try:
            self.on_command(name, message.payload)
        except Exception:  # the handler is the daemon's; its bug must not take the uplink down
            log.exception("command %r handler failed", name)
