"""Who is on the other end of a control connection, and how many connections each may hold.

The kernel says who connected (SO_PEERCRED: the pid, uid and gid of the process that called
connect()); what a client writes in its request is only a claim. Alarm events and logs name the
user the kernel reports, so a member of the socket's group cannot attribute a silence to "platform".

Slots: `max_clients` ordinary ones, of which one uid may hold at most `per_peer`, so one account
cannot crowd out the others; and beyond them one reserved slot per uid, for a single `silence` or
`ack` with a short deadline, so a technician's silence gets through while the ordinary slots are
all taken (socket(7), unix(7): SO_PEERCRED)."""

from __future__ import annotations

import pwd
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass

GENERAL, RESERVED = "general", "reserved"
_UCRED = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int

    def label(self) -> str:
        """cli:alice[4242] - what goes into `by` of alarm and audit events."""
        return f"cli:{user_name(self.uid)}[{self.pid}]"


UNKNOWN = Peer(pid=0, uid=-1, gid=-1)


def peer_of(conn: socket.socket) -> Peer:
    """The connecting process, from the kernel. UNKNOWN where SO_PEERCRED does not exist."""
    try:
        pid, uid, gid = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    except (AttributeError, OSError, struct.error):
        return UNKNOWN
    return Peer(pid, uid, gid)


def user_name(uid: int) -> str:
    """The account name, or uid<N> for a uid without one (a container's). May ask NSS: call it from the
    client's thread, never from the accept loop."""
    if uid < 0:
        return "unknown"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


class Slots:
    """Admission: which kind of slot a new connection from `peer` gets, if any."""

    def __init__(self, max_clients: int, per_peer: int, max_reserved: int = 64):
        self.max_clients = max_clients
        self.per_peer = per_peer
        self.max_reserved = max_reserved  # a bound on threads, even if every uid on the box connects
        self._general: Counter = Counter()
        self._reserved: Counter = Counter()
        self._lock = threading.Lock()

    def take(self, peer: Peer) -> str | None:
        with self._lock:
            if sum(self._general.values()) < self.max_clients and self._general[peer.uid] < self.per_peer:
                self._general[peer.uid] += 1
                return GENERAL
            if self._reserved[peer.uid] < 1 and sum(self._reserved.values()) < self.max_reserved:
                self._reserved[peer.uid] += 1
                return RESERVED
            return None

    def give_back(self, kind: str, peer: Peer) -> None:
        with self._lock:
            book = self._general if kind == GENERAL else self._reserved
            book[peer.uid] -= 1
            if book[peer.uid] <= 0:
                del book[peer.uid]
