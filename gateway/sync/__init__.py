"""sync: the MQTT uplink that delivers the outbox to the city platform (at least once, in priority
order, paced replay) and receives its commands."""

from gateway.sync.pacing import Backoff, TokenBucket
from gateway.sync.uplink import Uplink

__all__ = ["Backoff", "TokenBucket", "Uplink"]
