"""`[[sensors]]` on a `gpio` bus: a dry contact (a water-immersion probe, a pressure switch, a manual
call point) wired between a BCM pin and ground. The sensor names its pin, which way the contact reads
(`active_low`), the pin's resistor (`pull_up`) and a debounce; its profile is a contact profile (one
discrete-input point, e.g. water-immersion-contact), the same one a contact on a Modbus DI module uses."""

from __future__ import annotations

from .schema import BCM_PINS, RANGES
from .tables import Table, is_int, shown

_KEYS = ("pin", "active_low", "pull_up", "debounce_ms")


def contact_fields(t: Table, bus, profile) -> dict:
    if bus is None or bus.type != "gpio":
        for key in _KEYS:
            if key in t:
                t.problem(key, "only for a sensor on a gpio bus (a dry contact on a BCM pin)")
        return {}
    pin = None
    if not t.require("pin"):
        pass
    elif not is_int(t.data["pin"]) or t.data["pin"] not in BCM_PINS:
        t.problem("pin", f"must be a BCM GPIO number between {BCM_PINS[0]} and {BCM_PINS[-1]} "
                         f"(got {shown(t.data['pin'])})")
    else:
        pin = t.data["pin"]
    if profile is not None:
        bits = [p for p in profile.points if p.function == 2]
        if len(profile.points) != 1 or len(bits) != 1:
            t.problem("profile", f"profile '{profile.name}' is not a contact profile (one discrete-input point); "
                                 "a gpio sensor uses e.g. water-immersion-contact, pressure-switch-contact, "
                                 "manual-call-point")
    return {"pin": pin, "active_low": t.flag("active_low", True), "pull_up": t.flag("pull_up", True),
            "debounce_ms": t.integer("debounce_ms", 50, within=RANGES["sensors"]["debounce_ms"])}


def check_contact_pins(top: Table, sensors: dict, pins: dict[int, str]) -> None:
    """A contact's pin must not also be a relay's or a button's (or another contact's)."""
    raw = top.data.get("sensors")
    for i, body in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or body["name"] not in sensors:
            continue  # a sensor that did not validate: its own problems are reported already
        s = sensors[body["name"]]
        if s.pin is None:
            continue
        owner = f"sensors {s.name}"
        if s.pin in pins:
            Table(top.report, body, ("sensors", i), f"sensors #{i + 1}").problem(
                "pin", f"pin {s.pin} is used by both {pins[s.pin]} and {owner}")
        pins.setdefault(s.pin, owner)
