"""GB/T 26875.3-2011 §8.2/§8.3 application data units: type byte, object count, objects (each with a
6-byte time label where the type has one). Only the types this gateway sends or answers are here;
docs/gb26875.md lists them with their sources and what is left out.

Up (device -> centre):  1 system state, 2 component state, 3 component analog value,
                        21 device (transmission device) state, 24 device operation, 28 device time
Down (centre -> device): 81 read device state, 88 read device time, 89 initialise device,
                        90 sync device clock, 91 duty check (查岗)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SYSTEM_STATE, COMPONENT_STATE, ANALOG, DEVICE_STATE, DEVICE_OPERATION, DEVICE_TIME = 1, 2, 3, 21, 24, 28
READ_DEVICE_STATE, READ_DEVICE_TIME, INIT_DEVICE, SYNC_CLOCK, DUTY_CHECK = 81, 88, 89, 90, 91
UP_TYPES = {SYSTEM_STATE: "system_state", COMPONENT_STATE: "component_state", ANALOG: "analog",
            DEVICE_STATE: "device_state", DEVICE_OPERATION: "device_operation", DEVICE_TIME: "device_time"}
DOWN_TYPES = {READ_DEVICE_STATE: "read_device_state", READ_DEVICE_TIME: "read_device_time",
              INIT_DEVICE: "init_device", SYNC_CLOCK: "sync_clock", DUTY_CHECK: "duty_check"}

# system types (§8.2.1.1)
SYSTEM_GENERAL, FIRE_ALARM_SYSTEM, HYDRANT_SYSTEM = 0, 1, 11
# component types (§8.2.1.2)
COMPONENT_GENERAL, SMOKE_DETECTOR = 0, 40
# component / system state bits (§8.2.1.1, §8.2.1.2)
RUNNING, FIRE, FAULT, MASKED, SUPERVISE, STARTED, FEEDBACK, DELAYED, POWER_FAULT = (1 << i for i in range(9))
# device state bits (§8.2.1.8)
DEV_RUNNING, DEV_FIRE, DEV_FAULT, DEV_MAINS_FAULT, DEV_BACKUP_FAULT, DEV_CHANNEL_FAULT, DEV_LINE_FAULT = (
    1 << i for i in range(7))
# device operation bits (§8.2.1.9)
OP_RESET, OP_SILENCE, OP_MANUAL_ALARM, OP_ALARM_CLEARED, OP_SELF_TEST, OP_DUTY_ANSWER, OP_TEST = (
    1 << i for i in range(7))
# analog types (§8.2.1.3): (name, unit, resolution)
ANALOG_TYPES = {1: ("count", "", 1), 2: ("height", "m", 0.01), 3: ("temperature", "C", 0.1),
                4: ("pressure", "MPa", 0.1), 5: ("pressure", "kPa", 0.1), 6: ("gas", "%LEL", 0.1),
                7: ("time", "s", 1), 8: ("voltage", "V", 0.1), 9: ("current", "A", 0.1),
                10: ("flow", "L/s", 0.1), 11: ("air_flow", "m3/min", 0.1), 12: ("wind", "m/s", 1)}
HEIGHT, KPA = 2, 5
DESCRIPTION_BYTES = 31


class DataError(ValueError):
    """An application data unit that does not parse (too short, count against length)."""


@dataclass(frozen=True)
class Component:
    """Where a building fire-facility component sits: system type/address, component type/address."""
    system_type: int
    system_address: int
    component_type: int
    zone: int  # 区号, the high half of the 4-byte component address
    position: int  # 位号
    description: str = ""

    def address_bytes(self) -> bytes:
        # §8.2.1.2 draws 区号 (2 B) | 位号 (2 B), each low byte first; the worked example "2号10区"
        # is sent as 0A 00 02 00 (docs/gb26875.md, vector gb-example-1): zone first
        return struct.pack("<HH", self.zone & 0xFFFF, self.position & 0xFFFF)

    def head(self) -> bytes:
        return bytes([self.system_type, self.system_address, self.component_type]) + self.address_bytes()


def description_bytes(text: str) -> bytes:
    """31 bytes GB 18030, cut on a character boundary, padded with NUL."""
    out = b""
    for ch in text:
        b = ch.encode("gb18030", errors="replace")
        if len(out) + len(b) > DESCRIPTION_BYTES:
            break
        out += b
    return out.ljust(DESCRIPTION_BYTES, b"\x00")


def unit(type_: int, objects: list[bytes]) -> bytes:
    if not 0 < len(objects) < 256:
        raise DataError(f"a data unit holds 1..255 objects, not {len(objects)}")
    return bytes([type_, len(objects)]) + b"".join(objects)


def system_state(system_type: int, system_address: int, state: int, label: tuple) -> bytes:
    return unit(SYSTEM_STATE, [bytes([system_type, system_address]) + struct.pack("<H", state) + bytes(label)])


def component_state(c: Component, state: int, label: tuple) -> bytes:
    return unit(COMPONENT_STATE, [c.head() + struct.pack("<H", state) + description_bytes(c.description)
                                  + bytes(label)])


def analog(c: Component, analog_type: int, value: float, label: tuple) -> bytes:
    """Value in the analog type's unit, scaled by its resolution, clamped into int16."""
    raw = int(round(value / ANALOG_TYPES[analog_type][2]))
    raw = max(-32768, min(32767, raw))
    return unit(ANALOG, [c.head() + bytes([analog_type]) + struct.pack("<h", raw) + bytes(label)])


def device_state(state: int, label: tuple) -> bytes:
    return unit(DEVICE_STATE, [bytes([state & 0xFF]) + bytes(label)])


def device_operation(flags: int, operator: int, label: tuple) -> bytes:
    return unit(DEVICE_OPERATION, [bytes([flags & 0xFF, operator & 0xFF]) + bytes(label)])


def device_time(label: tuple) -> bytes:
    return unit(DEVICE_TIME, [bytes(label)])


# object sizes without the time label, and whether a label follows (§8.3.1)
_UP_SIZES = {SYSTEM_STATE: (4, True), COMPONENT_STATE: (40, True), ANALOG: (10, True),
             DEVICE_STATE: (1, True), DEVICE_OPERATION: (2, True), DEVICE_TIME: (0, True)}


def decode(data: bytes) -> dict:
    """An application data unit -> a JSON-able dict (for the reference centre and the tests).
    Raises DataError when its length does not match its type and count."""
    if len(data) < 2:
        raise DataError(f"data unit of {len(data)} bytes has no type and count")
    type_, count = data[0], data[1]
    body = data[2:]
    if type_ in DOWN_TYPES:
        # every downlink type this gateway answers carries one object; 90 a time label, the others
        # one reserved byte (91: the duty-check answer time in minutes, in practice)
        out = {"type": type_, "name": DOWN_TYPES[type_], "count": count}
        if type_ == SYNC_CLOCK:
            if len(body) < 6:
                raise DataError("clock sync without its 6-byte time label")
            out["time_label"] = list(body[:6])
        elif body:
            out["reserved"] = body[0]
        return out
    if type_ not in _UP_SIZES:
        raise DataError(f"data unit type {type_} is not one this gateway knows")
    size, labelled = _UP_SIZES[type_]
    step = size + (6 if labelled else 0)
    if count == 0 or len(body) != count * step:
        raise DataError(f"type {type_}: {len(body)} bytes for {count} objects of {step} bytes")
    objects = []
    for i in range(count):
        o = body[i * step:(i + 1) * step]
        objects.append(_object(type_, o[:size]) | ({"time_label": list(o[size:])} if labelled else {}))
    return {"type": type_, "name": UP_TYPES[type_], "count": count, "objects": objects}


def _object(type_: int, o: bytes) -> dict:
    if type_ == SYSTEM_STATE:
        return {"system_type": o[0], "system_address": o[1], "state": struct.unpack_from("<H", o, 2)[0]}
    if type_ in (COMPONENT_STATE, ANALOG):
        zone, position = struct.unpack_from("<HH", o, 3)
        d = {"system_type": o[0], "system_address": o[1], "component_type": o[2],
             "zone": zone, "position": position}
        if type_ == COMPONENT_STATE:
            d["state"] = struct.unpack_from("<H", o, 7)[0]
            d["description"] = o[9:40].rstrip(b"\x00 ").decode("gb18030", errors="replace")
        else:
            name, unit_, res = ANALOG_TYPES.get(o[7], (str(o[7]), "", 1))
            raw = struct.unpack_from("<h", o, 8)[0]
            d.update(analog_type=o[7], raw=raw, value=round(raw * res, 6), unit=unit_, quantity=name)
        return d
    if type_ == DEVICE_STATE:
        return {"state": o[0]}
    if type_ == DEVICE_OPERATION:
        return {"flags": o[0], "operator": o[1]}
    return {}
