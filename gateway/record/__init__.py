"""record: the durable outbox of events (SQLite), the writer thread that feeds it from the safety
loop, the telemetry aggregation and the clock facts every event carries."""

from gateway.record.clock import boot_id, clock_synced
from gateway.record.envelope import TYPES
from gateway.record.health import Health
from gateway.record.outbox import Event, Outbox, Pending
from gateway.record.recorder import Recorder
from gateway.record.telemetry import TelemetryAggregator

__all__ = ["Event", "Health", "Outbox", "Pending", "Recorder", "TelemetryAggregator", "TYPES", "boot_id",
           "clock_synced"]
