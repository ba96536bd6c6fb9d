"""platform: the reference receiver of the city side (not needed on the Pi). It subscribes to the
gateways' topics, validates every payload against the published JSON Schemas, drops duplicates by
(gateway, seq), tells undeclared seq gaps (losses) from declared `gap` events (evictions) and stores
events in SQLite (embedded) or PostgreSQL (gateway/platform/stores/). The integration tests use it
as the platform."""

from gateway.platform.receiver import Receiver
from gateway.platform.schemas import Contract

__all__ = ["Contract", "Receiver"]
