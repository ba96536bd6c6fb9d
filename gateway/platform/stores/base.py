"""The store interface both engines implement, and the seq arithmetic they share."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from gateway.errors import GatewayError

# Schema versions, the same numbers on every engine (each engine's file holds its SQL):
#   1  the first receiver's layout: events keyed by `id` (gateway/seq), gaps, presence, invalid, counters
#   2  events unique by (gateway, seq); events.stored (when the receiver wrote the row)
SCHEMA_VERSION = 2


class StoreError(GatewayError):
    """The platform store cannot be opened, migrated or written (the receiver retries a write)."""


@dataclass
class Batch:
    """What one or more MQTT messages carried, stored in one transaction."""
    events: list[dict] = field(default_factory=list)
    presence: list[tuple[str, dict]] = field(default_factory=list)      # (gateway, payload)
    invalid: list[tuple[str, str, bytes]] = field(default_factory=list)  # (topic, error, body)
    received: list[float] = field(default_factory=list)  # per event, when it arrived (else: now)

    def received_at(self, i: int, now: float) -> float:
        return self.received[i] if i < len(self.received) else now

    def __bool__(self) -> bool:
        return bool(self.events or self.presence or self.invalid)


def gateway_of(event: dict) -> str:
    return event["id"].rpartition("/")[0]


def gap_rows(event: dict) -> list[tuple[str, int, int, int | None, str]]:
    """The declared-gap rows an event brings: a `gap` event, or a fault naming the seq the broker
    refused for good (too large): declared, not lost."""
    gw = gateway_of(event)
    if event["type"] == "gap":
        return [(gw, event["from_seq"], event["to_seq"], event.get("count"), event["id"])]
    if event["type"] == "fault" and isinstance(event.get("failed_seq"), int):
        return [(gw, event["failed_seq"], event["failed_seq"], 1, event["id"])]
    return []


def body(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class Store:
    """One interface over the engines. Thread-safe: the receiver's writer thread writes, a test or
    the CLI reads."""

    url: str = ""

    # -- writing -------------------------------------------------------------------------------
    def write(self, batch: Batch) -> list[bool]:
        """Store a batch in one transaction; per event, True when it was new (False: a duplicate,
        counted). Raises StoreError when nothing was committed (the batch may be written again)."""
        raise NotImplementedError

    def add_event(self, event: dict) -> bool:
        """Store one event; False when its (gateway, seq) was already there (a duplicate)."""
        return self.write(Batch(events=[event]))[0]

    def set_presence(self, gateway: str, payload: dict) -> None:
        self.write(Batch(presence=[(gateway, payload)]))

    def add_invalid(self, topic: str, error: str, body: bytes) -> None:
        self.write(Batch(invalid=[(topic, error, body)]))

    # -- reading -------------------------------------------------------------------------------
    def gateways(self) -> list[str]:
        raise NotImplementedError

    def counts(self, gateway: str) -> tuple[int, int | None, int | None]:
        """(events, lowest seq, highest seq) stored for `gateway`."""
        raise NotImplementedError

    def missing(self, gateway: str) -> list[tuple[int, int]]:
        """Seq ranges (inclusive) absent between the lowest and highest seq seen from `gateway`."""
        raise NotImplementedError

    def declared(self, gateway: str) -> list[tuple[int, int]]:
        raise NotImplementedError

    def duplicates(self) -> int:
        raise NotImplementedError

    def presence(self, gateway: str) -> dict | None:
        raise NotImplementedError

    def invalid_count(self) -> int:
        raise NotImplementedError

    def schema_version(self) -> int:
        raise NotImplementedError

    def undeclared(self, gateway: str) -> list[tuple[int, int]]:
        """Missing ranges minus declared gap ranges: events that were lost, not evicted."""
        declared = self.declared(gateway)
        out = []
        for lo, hi in self.missing(gateway):
            pieces = [(lo, hi)]
            for dlo, dhi in declared:
                nxt = []
                for a, b in pieces:
                    if dhi < a or dlo > b:
                        nxt.append((a, b))
                        continue
                    if a < dlo:
                        nxt.append((a, dlo - 1))
                    if b > dhi:
                        nxt.append((dhi + 1, b))
                pieces = nxt
            out += pieces
        return out

    def close(self) -> None:
        raise NotImplementedError
