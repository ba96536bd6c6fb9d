"""`[gb26875]` (the fire remote-monitoring centre, GB/T 26875.3-2011) and `[sl651]` (the flood
office, SL 651-2014): the city's own protocols beside MQTT. Keys, defaults and ranges are in
config/README.md; the protocol facts behind them in docs/gb26875.md and docs/sl651.md."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .schema import KEYS
from .tables import Table, table_at

_HEX12 = re.compile(r"^[0-9A-Fa-f]{12}$")
_DIGITS10 = re.compile(r"^[0-9]{10}$")
_HEX4 = re.compile(r"^[0-9A-Fa-f]{4}$")
_HEX2 = re.compile(r"^[0-9A-Fa-f]{2}$")


@dataclass(frozen=True)
class Gb26875:
    host: str
    port: int
    source: str  # this device's address: 12 hex digits, most significant first
    destination: str  # the centre's address
    confirm_timeout_s: float = 10.0  # GB/T 26875.3 §6.5: "should not exceed 10 s"
    resends: int = 3  # §6.5: "3 times"
    heartbeat_s: float = 30.0
    replay_per_s: float = 20.0
    zone: int = 1  # 区号 of every component address; 位号 = the sensor's place in [[sensors]]
    system_address: int = 1


@dataclass(frozen=True)
class Sl651:
    host: str
    port: int
    station: str  # 10 digits (5 bytes BCD)
    centre: int  # 1..255
    password: str  # 4 hex digits (2 bytes)
    confirm_timeout_s: float = 10.0
    resends: int = 2  # SL 651-2014 §6.3.1.2 b: at most 2 resends in M2
    keepalive_s: int = 40  # §6.6.4.2: 1..255 s, 40 recommended
    timed_report_s: float = 300.0  # 0: no timed reports (function 32)
    hourly: bool = True  # function 34 at the top of each hour
    station_type: str = "48"  # Appendix A code as hex; 48 = "H", river (河道)
    sensor: str | None = None  # the water-level sensor reported as element 39; None: the first one
    replay_per_s: float = 5.0


def build_gb26875(top: Table) -> Gb26875 | None:
    t = table_at(top, "gb26875")
    if t is None:
        return None
    t.check_keys(KEYS["gb26875"])
    addresses = {}
    for key in ("source", "destination"):
        value = t.text(key, required=True)
        if value is not None and not _HEX12.match(value):
            t.problem(key, f'must be 12 hex digits, most significant first, e.g. "000000000001" (got "{value}")')
            value = None
        addresses[key] = value
    return Gb26875(host=t.text("host", required=True), port=t.integer("port", None, required=True, ge=1, le=65535),
                   source=addresses["source"], destination=addresses["destination"],
                   confirm_timeout_s=float(t.number("confirm_timeout_s", 10.0, ge=0.1, le=60)),
                   resends=t.integer("resends", 3, ge=0, le=10),
                   heartbeat_s=_heartbeat(t),
                   replay_per_s=float(t.number("replay_per_s", 20.0, gt=0, le=1000)),
                   zone=t.integer("zone", 1, ge=0, le=65535),
                   system_address=t.integer("system_address", 1, ge=0, le=255))


def _heartbeat(t: Table) -> float:
    value = float(t.number("heartbeat_s", 30.0, ge=0, le=3600))
    if 0 < value < 1:
        t.problem("heartbeat_s", f"must be 0 (off) or between 1 and 3600 (got {value:g})")
        return 30.0
    return value


def build_sl651(top: Table, sensor_names) -> Sl651 | None:
    t = table_at(top, "sl651")
    if t is None:
        return None
    t.check_keys(KEYS["sl651"])
    station = t.text("station", required=True)
    if station is not None and not _DIGITS10.match(station):
        t.problem("station", f'must be 10 decimal digits (5 bytes BCD), e.g. "0012345678" (got "{station}")')
    password = t.text("password", required=True)
    if password is not None and not _HEX4.match(password):
        t.problem("password", f'must be 4 hex digits (2 bytes), e.g. "1234" (got "{password}")')
    station_type = t.text("station_type", "48")
    if station_type is not None and not _HEX2.match(station_type):
        t.problem("station_type", f'must be 2 hex digits (SL 651-2014 Appendix A), e.g. "48" (got "{station_type}")')
    sensor = t.text("sensor")
    if sensor is not None and sensor not in sensor_names:
        t.problem("sensor", f'no [[sensors]] named "{sensor}"')
    timed = float(t.number("timed_report_s", 300.0, ge=0, le=86400))
    if 0 < timed < 60:
        t.problem("timed_report_s", f"must be 0 (off) or between 60 and 86400 (got {timed:g})")
    return Sl651(host=t.text("host", required=True), port=t.integer("port", None, required=True, ge=1, le=65535),
                 station=station, centre=t.integer("centre", None, required=True, ge=1, le=255), password=password,
                 confirm_timeout_s=float(t.number("confirm_timeout_s", 10.0, ge=0.1, le=60)),
                 resends=t.integer("resends", 2, ge=0, le=10),
                 keepalive_s=t.integer("keepalive_s", 40, ge=1, le=255),
                 timed_report_s=timed, hourly=t.flag("hourly", True),
                 station_type=station_type or "48", sensor=sensor,
                 replay_per_s=float(t.number("replay_per_s", 5.0, gt=0, le=1000)))
