"""What the city-protocol uplinks (GB/T 26875.3, SL 651) share: one thread that owns one TCP
connection to one centre, reconnects on the schedule of reconnect.py (a centre that is not there is
tried again every ~1 s, jittered, however long it has been away; backoff only after an unexpected
error), reads the socket in short slices so it
can answer the centre while it waits for a confirmation, and keeps a status snapshot the caller reads
without touching the disk or the network.

Subclasses implement `_on_connect()`, `_on_frame(item)` (a decoded frame or a codec error) and
`_step(now)` (send what is due, check timeouts). Anything they raise ends the session, never the
thread: the events stay in the outbox and are sent again after the reconnect.
"""

from __future__ import annotations

import abc
import logging
import socket
import threading
import time
from datetime import datetime

from gateway.errors import GatewayError, OutboxError
from gateway.record import envelope
from gateway.sync.pacing import TokenBucket
from gateway.sync.reconnect import Redial

log = logging.getLogger(__name__)
_SLICE_S = 0.05
IGNORED_STRIKES = 3  # a live centre that never confirms one event this often: it will not take it


def epoch_of(iso: str | None) -> float | None:
    """An envelope's `ts` (ISO 8601, Z) as seconds since the epoch, or None."""
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class LinkError(GatewayError):
    """The session with the centre ends (no confirmation, the centre closed, a send failed)."""

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind


class CentreLink(abc.ABC):
    """One TCP connection to one centre, on its own thread. `record(type, fields)` stores an event
    (the daemon's recorder); `cursor` is this uplink's DeliveryCursor."""

    name = "centre"

    def __init__(self, host: str, port: int, cursor, *, record=None, connect_timeout_s: float = 5.0,
                 backoff_initial_s: float = 1.0, backoff_max_s: float = 60.0, answers_per_s: float = 20.0,
                 retry_s: float = 1.0):
        self.host, self.port = host, port
        self.address = f"{host}:{port}"
        self.cursor = cursor
        self.outbox = cursor.outbox
        self._record_event = record
        self._connect_timeout = connect_timeout_s
        # the session's own connect is a plain TCP connect: it is the probe
        self.redial = Redial(host, port, probe_s=retry_s, backoff_initial_s=backoff_initial_s,
                             backoff_max_s=min(backoff_max_s, 60.0), probe=False)
        # a centre that floods us with requests gets at most this many answers a second
        self.answer_bucket = TokenBucket(answers_per_s, burst=max(1.0, answers_per_s))
        self.sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.state = "stopped"
        self.last_error: str | None = None
        self._logged_error: str | None = None
        self.connected_at: float | None = None
        self.heartbeat = time.monotonic()
        self.counts: dict[str, int] = {}
        self._snapshot: dict = {}
        self._snapshot_at = 0.0
        self._outage_declared = False
        self._strikes: dict[int, int] = {}  # seq -> times a live centre left it unconfirmed

    # -- the caller's side ---------------------------------------------------------------------
    def start(self):
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"uplink-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("%s uplink thread did not stop within %.0f s", self.name, timeout)
            self._thread = None
        self.cursor.detach()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and time.monotonic() - self.heartbeat < 30.0

    def status(self) -> dict:
        """For `gateway status` and the status event: counts now, pending rows at most 5 s old."""
        with self._lock:
            snapshot = dict(self._snapshot)
            counts = dict(self.counts)
        return {"state": self.state, "centre": self.address,
                "connected_since": envelope.iso_ms(self.connected_at) if self.connected_at else None,
                "last_error": self.last_error,
                "next_retry_in_s": None if self.redial.next_retry is None else
                round(max(0.0, self.redial.next_retry - time.monotonic()), 1),
                **counts, "thread_alive": self._thread is not None and self._thread.is_alive(),
                **snapshot}

    # -- helpers for subclasses ----------------------------------------------------------------
    def count(self, key: str, n: int = 1) -> None:
        with self._lock:  # status() copies the dict from another thread
            self.counts[key] = self.counts.get(key, 0) + n

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise LinkError(f"sending to {self.address} failed: {e}", "offline") from e
        self.count("frames_out")

    def record(self, type_: str, fields: dict) -> None:
        if self._record_event is not None:
            try:
                self._record_event(type_, fields)
            except Exception:  # the daemon's callback: its bug must not end the session
                log.exception("%s: recording a %s event failed", self.name, type_)

    def declare_outage(self, reason: str, detail: str) -> None:
        """Once per outage: a fault event saying this centre is not confirming (MQTT carries it)."""
        if self._outage_declared:
            return
        self._outage_declared = True
        self.record(envelope.FAULT, {"component": self.name, "state": "fault", "reason": reason,
                                     "detail": detail, "centre": self.address, "pending": self.cursor.pending()})

    def ignored(self, row, probe: str, sends: int) -> None:
        """The centre confirmed a `probe` but left `row` unconfirmed `sends` times. The third time it
        is marked failed for this centre and declared, so it cannot wedge the events behind it."""
        n = self._strikes[row.seq] = self._strikes.get(row.seq, 0) + 1
        if n < IGNORED_STRIKES:
            log.warning("%s centre %s is alive but did not confirm event seq %d (%d of %d): sending it again",
                        self.name, self.address, row.seq, n, IGNORED_STRIKES)
            return
        self._strikes.pop(row.seq, None)
        self.cursor.failed(row.seq, f"ignored by a live centre {n} times")
        self.count("failed")
        log.error("%s centre %s never confirms event seq %d (%s) though it confirms %s: marked failed for "
                  "this centre", self.name, self.address, row.seq, row.type, probe)
        self.record(envelope.FAULT, {"component": self.name, "state": "fault", "reason": "ignored",
                                     "detail": f"unconfirmed {n} x {sends} sends while {probe} were confirmed",
                                     "centre": self.address, "failed_seq": row.seq, "failed_type": row.type})

    def confirmed_row(self, row) -> None:
        self._strikes.pop(row.seq, None)
        self.cursor.delivered(row.seq)

    def declare_recovered(self) -> None:
        if self._outage_declared:
            self._outage_declared = False
            self.record(envelope.FAULT, {"component": self.name, "state": "recovered", "reason": "confirmed",
                                         "centre": self.address})

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            kind = "offline"
            try:
                self._session()
            except LinkError as e:
                kind = e.kind
                self._failed(e.kind, str(e))
            except OSError as e:
                kind = "unreachable"
                self._failed(kind, f"cannot reach {self.address}: {e}")
            except Exception as e:  # noqa: BLE001 - supervision: whatever happens, retry later
                log.exception("%s session with %s failed unexpectedly", self.name, self.address)
                kind = "error"
                self._failed(kind, f"{type(e).__name__}: {e}")
            finally:
                self._close()
            if self._stop.is_set():
                break
            self.redial.wait(kind, self._stop, self._waiting)
        self.state = "stopped"

    def _waiting(self) -> None:
        self.heartbeat = time.monotonic()
        self._refresh()

    def _failed(self, kind: str, message: str) -> None:
        self.state = kind
        # retried every ~1 s while the centre is away: the same error is logged once per outage
        level = logging.DEBUG if message == self._logged_error else logging.ERROR
        self._logged_error = message
        self.last_error = message
        log.log(level, "%s uplink %s: %s (events stay in the outbox; retrying)", self.name, self.address, message)

    def _close(self) -> None:
        self.connected_at = None
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def _session(self) -> None:
        if self.last_error is None:
            self.state = "connecting"
        self.count("attempts")
        self.sock = socket.create_connection((self.host, self.port), timeout=self._connect_timeout)
        self.sock.settimeout(_SLICE_S)
        self.connected_at = time.time()
        self.redial.online()
        self._logged_error = None
        self.count("connects")
        self.state = "online"
        log.info("%s uplink connected to %s", self.name, self.address)
        self.cursor.start_session()
        self._on_connect()
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            self._read()
            self._step(time.monotonic())
            self._refresh()
        self._on_stop()

    def _read(self) -> None:
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return
        except OSError as e:
            raise LinkError(f"connection to {self.address} lost: {e}", "offline") from e
        if not data:
            raise LinkError(f"{self.address} closed the connection", "offline")
        self.count("bytes_in", len(data))
        for item in self.reader.feed(data):
            self._on_frame(item)

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._snapshot_at < 5.0:
            return  # counting pending rows scans the backlog (~90 ms at 100k rows): not every second
        self._snapshot_at = now
        try:
            snapshot = {"pending": self.cursor.pending(), "cursor": self.cursor.stats()}
            self.cursor.maybe_advance()
        except OutboxError as e:
            snapshot = {"outbox_error": str(e)}
        with self._lock:
            self._snapshot = snapshot

    # -- for subclasses ------------------------------------------------------------------------
    reader = None  # a FrameReader with feed(bytes) -> [frame or error]

    def _on_connect(self) -> None:
        pass

    def _on_stop(self) -> None:
        pass

    @abc.abstractmethod
    def _on_frame(self, item) -> None:
        """A decoded frame from the centre, or the codec's error for bytes that were not one."""

    @abc.abstractmethod
    def _step(self, now: float) -> None:
        """Send what is due, check the confirmation timeout; raise LinkError to end the session."""
