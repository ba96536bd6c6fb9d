"""What a flood of refused commands may cost the gateway: a few audit events and a few replies.

Anyone who may publish on <root>/<gw>/cmd/# can send thousands of unsigned or forged commands a
second. Each used to become an audit event (never evicted, so the outbox pushed telemetry out to keep
them) and a reply (queued ahead of the next alarm on the uplink). Now, per reason word:

    audit    the first refusal at once (an honest mistake is seen at once), then one summary per
             WINDOW_S with the count, the time span and the last one's detail
    reply    at most REPLIES_PER_WINDOW per WINDOW_S; the rest are counted, not answered
    outbox   an audit event is written only while the outbox has room for it: its audit/status
             share under OUTBOX_SHARE of max_rows and pending rows under (1 - OUTBOX_SHARE) of it,
             so it never makes the outbox evict telemetry; otherwise the count carries on to the
             next summary (a count is never lost, only coarser)

The reasons are a fixed set of words (docs/commands.md), so the state is bounded too."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger("gateway.commands")
WINDOW_S = 60.0
REPLIES_PER_WINDOW = 10
OUTBOX_SHARE = 0.05


def outbox_room(outbox, share: float = OUTBOX_SHARE) -> bool:
    """True while one more audit event cannot make `outbox` evict telemetry and rejection audits stay
    within `share` of it. No outbox (its disk failed): the daemon keeps a bounded buffer; room."""
    if outbox is None:
        return True
    try:
        st = outbox.stats()
    except Exception:  # noqa: BLE001 - an outbox in trouble has no room; the count waits
        return False
    limit = outbox.max_rows
    return (st["depth"].get("audit_status", 0) < share * limit and st["pending"] < (1 - share) * limit
            and st["mb"] < (1 - share) * outbox.limits.max_mb)


@dataclass
class _Window:
    start_mono: float
    start_ts: float
    count: int = 0  # refusals not yet in an audit event
    replies: int = 0  # replies sent in this window
    last: dict = field(default_factory=dict)  # the last refusal's audit fields


class RejectionBudget:
    """Per reason word, decides whether a refusal is audited now, summarised later, and answered.
    `audit(fields)` records an audit event; `room()` says whether the outbox may take one."""

    def __init__(self, audit: Callable[[dict], None], *, room: Callable[[], bool] = lambda: True,
                 window_s: float = WINDOW_S, replies: int = REPLIES_PER_WINDOW,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        self.audit = audit
        self.room = room
        self.window_s = window_s
        self.replies = replies
        self.clock = clock
        self.wall = wall
        self.counts: dict[str, int] = {}  # every refusal ever, per reason (status, bench)
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._closed = False

    def rejected(self, reason: str, fields: dict) -> bool:
        """One refusal with its audit `fields`. Returns whether to reply to it."""
        now, emit = self.clock(), None
        with self._lock:
            self.counts[reason] = self.counts.get(reason, 0) + 1
            w = self._windows.get(reason)
            if w is not None and now - w.start_mono >= self.window_s:
                emit = self._close(reason, w, now)
                w = self._windows.get(reason)
            if w is None:  # quiet until now: this one is audited at once
                w = self._windows[reason] = _Window(now, self.wall(), replies=1)
                if emit is None and self.room():
                    emit = [dict(fields, count=1)]
                else:  # a summary just went, or no room: this one waits for the next
                    w.count, w.last = 1, fields
                log.warning("command on cmd/%s rejected: %s: %s", fields.get("command"), reason, fields.get("detail"))
                answer = True
            else:
                w.count += 1
                w.last = fields
                w.replies += 1
                answer = w.replies <= self.replies
            self._arm(now)
        self._emit(emit)
        return answer

    def flush(self, final: bool = False) -> None:
        """Write the summaries that are due (all of them when `final`: the handler is closing)."""
        now, emit = self.clock(), []
        with self._lock:
            if self._timer is threading.current_thread():
                self._timer = None  # this is the timer firing: the next one may be armed
            for reason, w in list(self._windows.items()):
                if final or now - w.start_mono >= self.window_s:
                    emit += self._close(reason, w, now, final) or []
            if not final:
                self._arm(now)
        self._emit(emit)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
        self.flush(final=True)

    # -- inside the lock ------------------------------------------------------------------------
    def _close(self, reason: str, w: _Window, now: float, final: bool = False) -> list[dict] | None:
        """End `w`: its summary (if it counted any and there is room), and the next window."""
        if not w.count:
            del self._windows[reason]  # a quiet minute: the next refusal is audited at once again
            return None
        if not final and not self.room():
            log.warning("outbox has no room for the summary of %d commands rejected as %s; the count carries on",
                        w.count, reason)
            w.start_mono, w.replies = now, 0  # keep counting; try again a window later
            return None
        since = w.start_ts
        summary = dict(w.last, count=w.count, window_s=round(now - w.start_mono, 3), since=_iso(since),
                       until=_iso(self.wall()), command_id=None,
                       detail=f"{w.count} more commands rejected as {reason} since {_iso(since)}; the last: "
                              f"{w.last.get('detail', '')}"[:500])
        log.warning("%d more commands rejected as %s in %.0f s", w.count, reason, now - w.start_mono)
        self._windows[reason] = _Window(now, self.wall())
        return [summary]

    def _arm(self, now: float) -> None:
        """One timer for the earliest window that has something to summarise."""
        if self._closed:
            return
        due = [w.start_mono + self.window_s for w in self._windows.values() if w.count]
        if not due or (self._timer is not None and self._timer.is_alive()):
            return
        self._timer = threading.Timer(max(0.0, min(due) - now), self.flush)
        self._timer.daemon = True
        self._timer.name = "command-rejections"
        self._timer.start()

    def _emit(self, events) -> None:
        for fields in events or ():
            try:
                self.audit(fields)
            except Exception as e:  # noqa: BLE001 - the outbox logs its own trouble; the count is in the log
                log.error("audit event for rejected commands not recorded: %s", e)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
