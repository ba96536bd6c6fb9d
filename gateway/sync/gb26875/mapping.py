"""Our events -> GB/T 26875.3 application data units (the table in docs/gb26875.md).

A sensor's kind comes from its profile's name (smoke, hydrant/pressure, water level); its component
address is zone `zone` (config) and position = its 1-based place in the config file's [[sensors]].
`unit_of(row)` returns (data unit, None) or (None, why it is not carried).
"""

from __future__ import annotations

import json

from gateway.record import envelope
from gateway.sync.centre_link import epoch_of
from gateway.sync.gb26875 import codec, datatypes as dt

SMOKE, PRESSURE, LEVEL = "smoke", "pressure", "level"
_ACTIVE = {"active", "silenced", "acknowledged"}
_TO_KPA = {"MPa": 1000.0, "kPa": 1.0, "Pa": 0.001, "bar": 100.0}
_TO_M = {"m": 1.0, "cm": 0.01, "mm": 0.001}
DEVICE_COMPONENTS = {"outbox", "power"}  # gateway components whose faults are the device's own state


def kind_of(profile_name: str) -> str | None:
    p = profile_name.lower()
    if "smoke" in p:
        return SMOKE
    if "hydrant" in p or "pressure" in p:
        return PRESSURE
    if "level" in p or "ultrasonic" in p or "a02yyuw" in p:
        return LEVEL
    return None


class Gb26875Mapping:
    def __init__(self, sensors: dict[str, str], *, zone: int = 1, system_address: int = 1, own: str = "gb26875"):
        """`sensors`: name -> profile name, in config order."""
        self.own = own
        self.device_bits = dt.DEV_RUNNING  # the device state last reported (answers a read of type 81)
        self.components: dict[str, tuple[str, dt.Component]] = {}
        for i, (name, profile) in enumerate(sensors.items(), start=1):
            kind = kind_of(profile)
            if kind is None:
                continue
            system = {SMOKE: dt.FIRE_ALARM_SYSTEM, PRESSURE: dt.HYDRANT_SYSTEM}.get(kind, dt.SYSTEM_GENERAL)
            ctype = dt.SMOKE_DETECTOR if kind == SMOKE else dt.COMPONENT_GENERAL
            self.components[name] = (kind, dt.Component(system, system_address, ctype, zone, i, name))

    def unit_of(self, type_: str, body: str) -> tuple[bytes | None, str | None]:
        try:
            event = json.loads(body)
        except ValueError:
            return None, "not JSON"
        label = codec.time_label(epoch_of(event.get("ts")))
        if type_ == envelope.ALARM:
            return self._alarm(event, label)
        if type_ == envelope.FAULT:
            return self._fault(event, label)
        if type_ == envelope.TELEMETRY:
            return self._telemetry(event, label)
        return None, f"{type_} events are not carried"

    def _sensor(self, event: dict):
        return self.components.get(event.get("sensor"))

    def _alarm(self, e: dict, label) -> tuple[bytes | None, str | None]:
        found = self._sensor(e)
        if found is None:
            return None, "sensor has no GB/T 26875.3 component"
        kind, comp = found
        active = e.get("state") in _ACTIVE
        if kind == SMOKE:
            return dt.component_state(comp, dt.RUNNING | (dt.FIRE if active else 0), label), None
        if kind == PRESSURE:
            # a hydrant main out of its pressure band is supervisory (监管), not a fire
            return dt.component_state(comp, dt.RUNNING | (dt.SUPERVISE if active else 0), label), None
        return None, "water-level alarms go to the flood office (SL 651)"

    def _fault(self, e: dict, label) -> tuple[bytes | None, str | None]:
        faulty = e.get("state") == "fault"
        if "sensor" in e:
            found = self._sensor(e)
            if found is None:
                return None, "sensor has no GB/T 26875.3 component"
            return dt.component_state(found[1], dt.RUNNING | (dt.FAULT if faulty else 0), label), None
        component = e.get("component")
        if component == self.own:
            return None, "this uplink's own fault (carried by MQTT)"
        if component not in DEVICE_COMPONENTS:
            return None, f"{component} faults are not the device's state"
        bit = {"mains": dt.DEV_MAINS_FAULT, "backup": dt.DEV_BACKUP_FAULT}.get(str(e.get("reason", "")), dt.DEV_FAULT)
        self.device_bits = (self.device_bits | bit) if faulty else (self.device_bits & ~bit)
        return dt.device_state(self.device_bits, label), None

    def _telemetry(self, e: dict, label) -> tuple[bytes | None, str | None]:
        found = self._sensor(e)
        value = e.get("last")
        if found is None or value is None or e.get("quality") != "good":
            return None, "no good value of a GB/T 26875.3 component"
        kind, comp = found
        unit_ = e.get("unit", "")
        if kind == PRESSURE and unit_ in _TO_KPA:
            return dt.analog(comp, dt.KPA, value * _TO_KPA[unit_], label), None
        if kind == LEVEL and unit_ in _TO_M:
            return dt.analog(comp, dt.HEIGHT, value * _TO_M[unit_], label), None
        return None, f"no analog type for {kind} in {unit_!r}"

