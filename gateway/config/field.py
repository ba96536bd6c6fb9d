"""The field side of the config: `[gateway]`, `[buses.NAME]` and `[[sensors]]`."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.config.model import DEFAULT_DATA_DIR, Bus, GatewaySection, Sensor

from .paths import resolve
from .problems import suggest
from .profiles import ProfileLibrary
from .schema import BAUDRATES, BUS_TYPES, BYTESIZES, KEYS, MODBUS_BUSES, PARITIES, RANGES, STOPBITS
from .contacts import contact_fields
from .tables import Table, is_int, named_tables, array_tables, table_at

# The id goes into MQTT topics and event ids ("<id>/<seq>"): no '/', '+', '#' or spaces.
_ID = re.compile(r"^[A-Za-z0-9._-]+$")
_SERIAL_ONLY = ("baudrate", "parity", "bytesize", "stopbits")


def build_gateway(top: Table, base: Path) -> GatewaySection:
    t = table_at(top, "gateway")
    if t is None:
        if "gateway" not in top:
            top.problem("gateway", 'is required: a [gateway] table with id = "..."')
        return GatewaySection(id="")
    t.check_keys(KEYS["gateway"])
    gw_id = t.text("id", required=True)
    if gw_id and not _ID.match(gw_id):
        t.problem("id", f"may hold only letters, digits, '.', '_' and '-' (it is used in MQTT topics; got \"{gw_id}\")")
    profiles = []
    for i, entry in enumerate(t.strings("profiles")):
        path = resolve(base, entry)
        if not Path(path).exists():
            t.problem("profiles", f"no such file or directory: {path}", i)
        profiles.append(path)
    socket = t.text("control_socket")
    return GatewaySection(id=gw_id or "", data_dir=resolve(base, t.text("data_dir", DEFAULT_DATA_DIR)),
                          profiles=tuple(profiles), control_socket=socket and resolve(base, socket))


def build_buses(top: Table) -> dict[str, Bus | None]:
    """Every named bus; None for one that is invalid, so a sensor on it is not also
    told that its bus does not exist."""
    buses: dict[str, Bus | None] = {}
    for name, t in named_tables(top, "buses"):
        count = len(t.report.problems)
        t.check_keys(KEYS["buses.NAME"])
        typ = t.text("type", required=True, choices=BUS_TYPES)
        host, port = None, None
        serial = {}
        if typ == "tcp":
            host = t.text("host", required=True)
            port = t.integer("port", required=True, ge=1, le=65535)
            for key in _SERIAL_ONLY:
                if key in t:
                    t.problem(key, "only for rtu and serial buses")
        elif typ == "gpio":  # dry contacts on BCM pins: no port; the pins are the sensors' (config/contacts.py)
            for key in ("port", "host") + _SERIAL_ONLY:
                if key in t:
                    t.problem(key, "not for a gpio bus (its sensors name their pins)")
        elif typ in ("rtu", "serial"):
            if "port" not in t:
                t.problem("port", 'is required: a device or pyserial URL, e.g. "/dev/ttyAMA0"')
            elif not isinstance(t.data["port"], str):
                t.problem("port", f'must be a device or pyserial URL string, e.g. "/dev/ttyAMA0" '
                                  f'(got {t.data["port"]!r}); a TCP port needs type = "tcp"')
            else:
                port = t.data["port"]
            if "host" in t:
                t.problem("host", 'only for a tcp bus')
            serial = dict(baudrate=t.integer("baudrate", 9600, choices=BAUDRATES),
                          parity=t.text("parity", "N", choices=PARITIES),
                          bytesize=t.integer("bytesize", 8, choices=BYTESIZES),
                          stopbits=t.integer("stopbits", 1, choices=STOPBITS))
        bus = Bus(name=name, type=typ, port=port, host=host, **serial,
                  timeout_s=float(t.number("timeout_s", 0.3, gt=0, le=10)),
                  retries=t.integer("retries", 1, ge=0, le=5),
                  backoff_max_s=float(t.number("backoff_max_s", 30.0, within=RANGES["buses.NAME"]["backoff_max_s"])))
        valid = typ is not None and (port is not None or typ == "gpio") and (typ != "tcp" or host is not None)
        buses[name] = bus if valid and len(t.report.problems) == count else None
    return buses


def build_sensors(top: Table, buses: dict[str, Bus | None], library: ProfileLibrary,
                  base: Path) -> tuple[dict[str, Sensor], set[str]]:
    """The valid sensors, and the names of all sensors written (valid or not), so a
    rule on a broken sensor is not also told that the sensor does not exist."""
    sensors: dict[str, Sensor] = {}
    named: dict[str, int] = {}  # name -> line of first definition
    units: dict[tuple[str, int], str] = {}  # (bus, unit id) -> sensor
    serial_owner: dict[str, str] = {}  # serial bus -> its sensor
    for t in array_tables(top, "sensors"):
        count = len(t.report.problems)
        t.check_keys(KEYS["sensors"])
        name = t.text("name", required=True)
        if name in named:
            t.problem("name", f"duplicate sensor name '{name}' (first at line {named[name]})")
            name = None
        elif name:
            named[name] = t.line("name")
        bus_name = t.text("bus", required=True)
        bus = buses.get(bus_name)
        if bus_name and bus_name not in buses:
            t.problem("bus", f"unknown bus '{bus_name}'; "
                             + (f"buses are: {', '.join(buses)}" if buses else "no [buses.NAME] is configured")
                             + suggest(bus_name, buses))
        unit = _unit(t, bus)
        if bus and bus.type in MODBUS_BUSES and unit is not None:
            if (bus.name, unit) in units:
                t.problem("unit", f"unit {unit} on bus '{bus.name}' is already used by sensor "
                                  f"'{units[bus.name, unit]}'")
            units.setdefault((bus.name, unit), name or "?")
        if bus and bus.type == "serial":
            if bus.name in serial_owner:
                t.problem("bus", f"serial bus '{bus.name}' already has sensor '{serial_owner[bus.name]}'; "
                                 "a plain serial port carries one sensor")
            serial_owner.setdefault(bus.name, name or "?")
        profile = None
        ref = t.text("profile", required=True)
        if ref:
            profile, error = library.find(ref, base)
            if error:
                t.problem("profile", error)
        if bus and profile:
            want = "serial" if bus.type == "serial" else "modbus"
            if profile.kind != want:
                t.problem("profile", f"profile '{profile.name}' is kind {profile.kind}, but bus '{bus.name}' "
                                     f"(type {bus.type}) needs a {want} profile")
        sensor = Sensor(name=name, bus=bus_name, profile=profile, unit=unit,
                        poll_s=float(t.number("poll_s", 1.0, within=RANGES["sensors"]["poll_s"])),
                        timeout_s=_float(t.number("timeout_s", None, gt=0, le=10)),
                        retries=t.integer("retries", None, ge=0, le=5),
                        stale_after_s=_float(t.number("stale_after_s", None, within=RANGES["sensors"]["stale_after_s"])),
                        stale_after=t.integer("stale_after", 3, ge=1, le=1000),
                        place=t.text("place"), **contact_fields(t, bus, profile))
        if name and len(t.report.problems) == count and bus and profile:
            sensors[name] = sensor
    return sensors, set(named)


def _unit(t: Table, bus: Bus | None) -> int | None:
    if bus is not None and bus.type in ("serial", "gpio"):
        if "unit" in t:
            what = "a serial sensor" if bus.type == "serial" else "a contact on a pin"
            t.problem("unit", f"not allowed on a {bus.type} bus ({what} has no Modbus unit id)")
        return None
    if bus is not None and "unit" not in t:
        t.problem("unit", f"is required on a {bus.type} bus: the Modbus unit id, 1..247")
        return None
    value = t.integer("unit", None, within=RANGES["sensors"]["unit"])
    return value if is_int(value) else None


def _float(value):
    return None if value is None else float(value)
