"""The sender: which outbox rows go out next, and what a PUBACK (or its absence) means for them.

Order within one MQTT session:
0. *live alarms*, always first: never behind suspects, held messages or the replay pace.
1. *suspects*, one at a time: single-event messages that were in flight when the previous session
   died (a batch in flight is fetched and batched again; one lost twice in flight is taken apart).
   A message the broker kills the connection over (mosquitto 2.0 drops a client that sends a PUBLISH
   over `message_size_limit`) would otherwise wedge the queue forever; sent alone, it either gets its
   PUBACK or proves itself guilty. Lost twice while alone in flight = poison: marked failed, and a
   `fault` event says so. Suspects of an outbox file that was since replaced are dropped (the
   lost-file gap event declares them).
2. then, merged by priority (alarm > fault > audit/status > telemetry): *live* rows (recorded since
   this session connected, sent at once) and *backlog* rows (recorded before; `"replay": true`,
   paced by a token bucket, except alarms which are never held back). Within one priority live goes
   before backlog, so a live alarm overtakes any backlog.
Telemetry goes many readings to a message (a batch, gateway/record/batch.py); alarms, faults, audit,
status and gaps one per message. At most `window` messages are in flight; rows are marked delivered
only on a successful PUBACK of their message. A PUBACK 0x10 "No matching subscribers" is not one
(the broker had nobody to give the message to: it is gone): its rows are held and sent again after
NOSUB_FIRST_S, doubling to NOSUB_MAX_S while nobody takes them (a platform whose shared subscription
a broker restart dropped, until its receivers subscribe again); other rows keep going meanwhile,
and past NOSUB_HELD_MAX held rows nothing new is sent until they are taken.
"""

from __future__ import annotations

import collections
import logging
import time

from gateway.record import batch, compact, envelope
from gateway.record.outbox import Outbox, Pending
from gateway.sync.pacing import TokenBucket

log = logging.getLogger(__name__)

ALARM_PRIORITY = envelope.PRIORITY[envelope.ALARM]
# PUBACK reason codes (MQTT 5) that will never change on a retry
POISON_REASONS = {0x90: "topic_name_invalid", 0x95: "message_too_large", 0x99: "payload_format_invalid"}
STRIKES_TO_POISON = 2
NO_SUBSCRIBERS = 0x10  # PUBACK reason code (MQTT 5.0 §3.4.2.1): accepted, and nobody to deliver it to
NOSUB_FIRST_S, NOSUB_MAX_S = 1.0, 30.0
NOSUB_HELD_MAX = 2_000  # rows held for a subscriber: past this, nothing new is sent (memory stays bounded)
_BACKLOG_CHUNK = 500
# Past this many sent-but-not-yet-marked rows the oldest are forgotten: at worst one is sent again,
# a duplicate the platform drops by id. Normally the marks keep it near the window.
SENT_MAX = 50_000
_BATCH_HEAD = 400  # a batch's envelope, topic and fixed header, within the session's message size


class Sender:
    """Publishing state of the uplink: one per Uplink, reset at each session."""

    def __init__(self, outbox: Outbox, window: int, bucket: TokenBucket, max_bytes: int, clock=time.monotonic):
        self.outbox = outbox
        self._clock = clock
        self._nosub_delay = self._nosub_hold = NOSUB_FIRST_S  # the next hold period's length; this one's
        self._nosub_grow_at = 0.0  # when the current hold period ends
        self.window = max(1, window)
        self.bucket = bucket
        self.max_bytes = max_bytes
        self.inflight: dict[int, list[Pending]] = {}  # mid -> the rows of that message
        self.acked: list[int] = []  # PUBACKed, not yet marked in the outbox
        self.suspects: dict[int, Pending] = {}
        self.strikes: collections.Counter = collections.Counter()
        # published at least once, never acked: a resend is a duplicate (a dict: ordered, trimmed oldest first)
        self._unacked_ever: dict[int, None] = {}
        self.counts = collections.Counter()  # published, delivered, resent, replayed, poison, refused
        self.session_max_bytes = max_bytes
        self._file_id = getattr(outbox, "outbox_id", None)
        self._new_session(0)

    def _new_session(self, live_from: int) -> None:
        self.live_from = live_from
        # sent in this session and not yet marked delivered in the outbox (which would stop the live and
        # backlog queries returning them): in flight, or acked with its mark waiting for the group commit
        self._sent: dict[int, None] = {}
        self._live: collections.deque = collections.deque()
        self._live_version = -1
        self._live_exhausted = False
        self._backlog: collections.deque = collections.deque()
        self._backlog_after = (-1, 0)
        self._backlog_done = False
        self._isolate = collections.deque(sorted(self.suspects.values(), key=lambda p: (p.priority, p.seq)))
        # (due, rows, replay) of messages nobody was subscribed to: sent again when due
        self._held: collections.deque = collections.deque()
        self._held_rows = 0

    def start_session(self, live_from: int, broker_max_bytes: int | None) -> None:
        self.session_max_bytes = min(self.max_bytes, broker_max_bytes or self.max_bytes)
        file_id = getattr(self.outbox, "outbox_id", None)
        if file_id != self._file_id:
            # the outbox file was replaced (corrupt, deleted): the old file's suspects are not in the new
            # one (its lost-file gap event declares them); a packed one would not even build there
            self.suspects.clear()
            self.strikes.clear()
            self._file_id = file_id
        self._new_session(live_from)

    def session_lost(self, strike: bool = True) -> list[tuple[Pending, str]]:
        """The connection dropped: in-flight rows stay pending and become suspects (sent again one
        per message). Returns rows that are now poison (the caller marks them failed).
        `strike` False: the session ended by a bug of ours, not by the broker: no row is to blame."""
        poison = []
        alone = strike and len(self.inflight) == 1 and len(next(iter(self.inflight.values()))) == 1
        for rows in self.inflight.values():
            for row in rows:
                if len(rows) > 1:
                    # a batch is fetched and batched again (not sent a reading per message: 20 batches in
                    # flight would be 2,000 round trips before the next alarm); one lost twice in flight
                    # is taken apart, so a message the broker kills the link over still shows itself
                    if strike:
                        self.strikes[row.seq] += 1
                    if self.strikes[row.seq] >= STRIKES_TO_POISON:
                        self.strikes[row.seq] = 0
                        self.suspects[row.seq] = row
                    continue
                self.suspects[row.seq] = row
                if alone:
                    self.strikes[row.seq] += 1
                    if self.strikes[row.seq] >= STRIKES_TO_POISON:
                        poison.append((row, "broker closed the connection each time this message was sent"))
                        self.suspects.pop(row.seq)
        self.inflight.clear()
        return poison

    # -- choosing ------------------------------------------------------------------------------
    def next_messages(self) -> list[tuple[list[Pending], bool]]:
        """Messages to publish now, as (rows, replay), within the window and the replay pace. Packed
        telemetry rows go many to a message (a batch, gateway/record/batch.py: up to MAX_READINGS of one
        context, all live or all backlog); every other row is a message of its own."""
        room = self.window - len(self.inflight)
        if room <= 0:
            return []
        # live alarms first, whatever waits: suspects proving themselves one at a time, messages held
        # for a subscriber, the replay pace
        self._refill_live()
        out = []
        while self._live and len(out) < room and self._live[0].priority == ALARM_PRIORITY:
            rows = self._pop(self._live, 1)
            if rows:
                out.append((rows, rows[0].seq < self.live_from))
        if self._isolate:
            if self.inflight or out:
                return out
            row = self._isolate.popleft()
            return [([row], True)]
        now = self._clock()
        while self._held and self._held[0][0] <= now and len(out) < room:
            _, rows, replay = self._held.popleft()
            self._held_rows -= len(rows)
            out.append((rows, replay))
        if self._held_rows >= NOSUB_HELD_MAX:
            return out
        self._refill_live()
        while len(out) < room:
            live = self._live[0] if self._live else None
            back = self._next_backlog()
            take = 1
            if back is not None and back.priority != ALARM_PRIORITY and (
                    live is None or back.priority < live.priority):
                # a backlog batch is paid for whole: the bucket (burst >= MAX_READINGS) refills until it can
                take = min(self._run_length(self._backlog), max(1, int(self.bucket.burst)))
                if not self.bucket.take(take):
                    back = None  # no token: the backlog waits, live rows still go
            if live is not None and (back is None or live.priority <= back.priority):
                rows = self._pop(self._live, self._run_length(self._live))
                out.append((rows, rows[0].seq < self.live_from))
            elif back is not None:
                out.append((self._pop(self._backlog, take), True))
            else:
                break
        return out

    def _run_length(self, rows: collections.deque) -> int:
        """How many rows from the head of `rows` go in one message: 1, or a run of packed telemetry
        rows of the head's context, up to MAX_READINGS and the session's message size."""
        head = rows[0]
        if not batch.batchable(head):
            return 1
        ctx, room = compact.ctx_of(head.body), self.session_max_bytes - _BATCH_HEAD
        n = 0
        for row in rows:
            if row.seq in self._sent:
                continue
            room -= batch.reading_bytes(row)
            if n and (n >= batch.MAX_READINGS or room < 0 or not batch.batchable(row)
                      or compact.ctx_of(row.body) != ctx):
                break
            n += 1
        return n

    def _pop(self, rows: collections.deque, n: int) -> list[Pending]:
        out = []
        while rows and len(out) < n:
            row = rows.popleft()
            if row.seq not in self._sent:
                out.append(row)
        return out

    def _refill_live(self) -> None:
        if self._live_version == self.outbox.version and (self._live or self._live_exhausted):
            return
        self._live_version = self.outbox.version
        limit = self.window * 4 + batch.MAX_READINGS + len(self._sent)
        rows = self.outbox.live(self.live_from, limit)
        self._live_exhausted = len(rows) < limit
        self._live = collections.deque(r for r in rows if r.seq not in self._sent)

    def _next_backlog(self) -> Pending | None:
        while True:
            while self._backlog and self._backlog[0].seq in self._sent:
                self._backlog.popleft()
            if self._backlog:
                return self._backlog[0]
            if self._backlog_done:
                return None
            rows = self.outbox.backlog(self.live_from, self._backlog_after, _BACKLOG_CHUNK)
            if len(rows) < _BACKLOG_CHUNK:
                self._backlog_done = True
            if rows:
                self._backlog_after = (rows[-1].priority, rows[-1].seq)
            self._backlog.extend(rows)
            if not rows:
                return None

    @property
    def backlog_left(self) -> bool:
        return bool(self._isolate) or bool(self._backlog) or not self._backlog_done

    # -- bookkeeping ---------------------------------------------------------------------------
    def too_large(self, payload: bytes) -> bool:
        return len(payload) > self.session_max_bytes

    def sent(self, mid: int, rows: list[Pending] | Pending, replay: bool) -> None:
        rows = [rows] if isinstance(rows, Pending) else list(rows)
        self.inflight[mid] = rows
        self.counts["messages"] += 1
        for row in rows:
            self._sent[row.seq] = None
            if len(self._sent) > SENT_MAX:
                del self._sent[next(iter(self._sent))]
            self.counts["published"] += 1
            if replay:
                self.counts["replayed"] += 1
            if row.seq in self._unacked_ever:
                self.counts["resent"] += 1
            self._unacked_ever[row.seq] = None
            if len(self._unacked_ever) > SENT_MAX:
                del self._unacked_ever[next(iter(self._unacked_ever))]

    def unbatch(self, rows: list[Pending]) -> None:
        """Rows of a batch that could not go (too large, refused): sent again one per message, where a
        message the broker will never take shows itself as the one row it is."""
        for row in rows:
            self._sent.pop(row.seq, None)
        self._isolate.extend(sorted(rows, key=lambda p: (p.priority, p.seq)))

    def puback(self, mid: int, failure_code: int | None) -> list[tuple[Pending, str]]:
        """A PUBACK arrived. Returns [(row, reason)] of rows that turned out to be poison."""
        rows = self.inflight.pop(mid, None)
        if rows is None:
            return []  # birth/offline/reply, or a PUBACK from a session we already gave up on
        for row in rows:
            self.suspects.pop(row.seq, None)
            self.strikes.pop(row.seq, None)
        if failure_code is None:
            for row in rows:
                self.acked.append(row.seq)
                self._unacked_ever.pop(row.seq, None)
            self.counts["delivered"] += len(rows)
            self._nosub_delay = NOSUB_FIRST_S
            return []
        if failure_code == NO_SUBSCRIBERS:
            self.counts["no_subscriber"] += len(rows)
            now = self._clock()
            if now >= self._nosub_grow_at:
                # a new hold period: the messages refused within it are one refusal (a burst), held alike
                self._nosub_hold = self._nosub_delay
                self._nosub_grow_at = now + self._nosub_hold
                self._nosub_delay = min(NOSUB_MAX_S, self._nosub_delay * 2)
                log.warning("broker had no subscriber for event seq %d%s (%s): held, sent again in %.0f s",
                            rows[0].seq, f"..{rows[-1].seq}" if len(rows) > 1 else "", rows[0].type,
                            self._nosub_hold)
            self._held.append((now + self._nosub_hold, rows, True))
            self._held_rows += len(rows)
            return []
        if failure_code in POISON_REASONS:
            if len(rows) > 1:
                self.unbatch(rows)  # which reading is it? each alone proves itself
                return []
            self._unacked_ever.pop(rows[0].seq, None)
            return [(rows[0], f"broker refused it: {POISON_REASONS[failure_code]} (reason code 0x{failure_code:02x})")]
        # quota exceeded, not authorised, unspecified: may pass later, try again next session
        self.counts["refused"] += len(rows)
        log.warning("broker refused event seq %d%s (%s) with reason code 0x%02x; retrying next session",
                    rows[0].seq, f"..{rows[-1].seq}" if len(rows) > 1 else "", rows[0].type, failure_code)
        return []

    def take_acked(self) -> list[int]:
        acked, self.acked = self.acked, []
        return acked

    def marked(self, seqs) -> None:
        """These seqs are marked delivered (or failed) in the outbox: its queries no longer return
        them, so the session need not remember them."""
        for seq in seqs:
            self._sent.pop(seq, None)
