"""`gateway scan BUS`: find Modbus devices on a bus and recognise the shipped profiles.

Each unit id is asked for holding registers 0..4 (one FC03; 0..2 if it has fewer). A device that answers, even
with an exception, is there. The QDY30A family (water level, hydrant pressure) echoes its own
unit id in register 0 and its baud code in register 1; its unit-code register (2) tells a
level gauge from a pressure transmitter. A smoke detector of the shipped map has a status
0..4 in register 0. Anything else is listed as "unknown profile"."""

from __future__ import annotations

import dataclasses
import sys
import time

from gateway.config.model import Bus, Config
from gateway.errors import DeviceFault, GatewayError

BAUD_CODES = {1200: 0, 2400: 1, 4800: 2, 9600: 3, 19200: 4, 38400: 5, 57600: 6, 115200: 7}
LEVEL_UNITS = {1, 2, 16, 17, 18}
PRESSURE_UNITS = {3, 4, 5, 6}


@dataclasses.dataclass
class Found:
    unit: int
    baud: int | None
    registers: list[int] | None
    note: str
    garbled: bool = False

    @property
    def profile(self) -> str:
        return recognise(self.unit, self.baud, self.registers)


def recognise(unit: int, baud: int | None, regs: list[int] | None) -> str:
    if regs and len(regs) == 3 and regs[0] <= 4 and regs[1] <= 0b111:
        return "smoke-rs485 (probably: status, faults, concentration at 0..2)"
    if not regs or len(regs) < 5:
        return "unknown profile"
    addr, baud_code, unit_code = regs[0], regs[1], regs[2]
    baud_ok = baud is None or BAUD_CODES.get(baud) == baud_code
    if addr == unit and baud_code in BAUD_CODES.values() and baud_ok:
        if unit_code in PRESSURE_UNITS:
            return "hydrant-pressure-rs485 (QDY30A family)"
        if unit_code in LEVEL_UNITS:
            return "water-level-rs485 (QDY30A family)"
        return "QDY30A family, unknown unit code"
    return "unknown profile"


def parse_units(text: str) -> list[int]:
    units: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise GatewayError(f"--units {text!r}: write e.g. 1-247 or 1,5,10-20") from None
        if not 1 <= a <= b <= 247:
            raise GatewayError(f"--units {text!r}: unit ids are 1..247")
        units.update(range(a, b + 1))
    return sorted(units)


def parse_bauds(text: str) -> list[int]:
    try:
        bauds = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise GatewayError(f"--baud {text!r}: write e.g. 9600,19200") from None
    bad = [b for b in bauds if b not in BAUD_CODES]
    if bad:
        raise GatewayError(f"--baud {bad[0]} is not a standard rate ({', '.join(map(str, BAUD_CODES))})")
    return bauds


def _read_head(link, unit: int, timeout: float) -> list[int]:
    """Registers 0..4, or 0..2 for a device that has fewer (a smoke detector answers exception 2)."""
    for count in (5, 3):
        try:
            return link.read_registers(unit, 3, 0, count, timeout=timeout, retries=0)
        except DeviceFault as f:
            if f.reason != "exception" or count == 3:
                raise
    raise AssertionError("unreachable")


def scan(bus: Bus, units: list[int], bauds: list[int | None], timeout: float, progress=None) -> list[Found]:
    from drivers.modbus import open_link

    found: dict[int, Found] = {}  # unit -> what it said; a garbled answer is asked again at the next baud
    total = len(units) * len(bauds)
    done = 0
    for baud in bauds:
        link = open_link(dataclasses.replace(bus, baudrate=baud) if baud else bus)
        link.open()  # BusError: the port is missing, said as such
        try:
            for u in units:
                done += 1
                if u in found and not found[u].garbled:
                    continue
                try:
                    found[u] = Found(u, baud, _read_head(link, u, timeout), "answers")
                except DeviceFault as f:
                    if f.reason == "exception" and (f.detail or "").startswith(("code 10 ", "code 11 ")):
                        pass  # a Modbus TCP gateway saying nobody answers behind it
                    elif f.reason == "exception":  # it is there, just has no registers 0..4
                        found[u] = Found(u, baud, None, f"answers with {f.detail or 'an exception'}")
                    elif f.reason != "timeout" and u not in found:
                        found[u] = Found(u, baud, None, f"garbled answer ({f.reason}): wrong baud or wiring?",
                                         garbled=True)
                if progress:
                    progress(done, total, baud, len(found))
        finally:
            link.close()
    return [found[u] for u in sorted(found)]


def _bar(done: int, total: int, baud, n: int) -> None:
    width = 30
    fill = int(width * done / total)
    rate = f"{baud} baud" if baud else "tcp"
    sys.stderr.write(f"\r  scanning {rate:>11}  [{'#' * fill}{'.' * (width - fill)}] {done}/{total}  found {n}")
    sys.stderr.flush()


def run_scan(cfg: Config, bus_name: str, units_text: str, baud_text: str | None, timeout: float) -> int:
    bus = cfg.buses.get(bus_name)
    if bus is None:
        raise GatewayError(f"unknown bus {bus_name!r}; buses are: {', '.join(cfg.buses)}")
    if bus.type == "serial":
        raise GatewayError(f"bus {bus_name} is a plain serial line: there is nothing to scan")
    if bus.type == "gpio":
        raise GatewayError(f"bus {bus_name} is dry contacts on GPIO pins: there is nothing to scan")
    _refuse_if_daemon_owns(cfg, bus_name)
    units = parse_units(units_text)
    bauds: list[int | None] = [None] if bus.type == "tcp" else parse_bauds(baud_text or str(bus.baudrate))
    started = time.monotonic()
    found = scan(bus, units, bauds, timeout, progress=_bar if sys.stderr.isatty() else None)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(f"scanned {len(units)} unit ids at {', '.join(str(b or 'tcp') for b in bauds)} on {bus_name} "
          f"in {time.monotonic() - started:.1f} s: {len(found)} device(s)")
    if found:
        print(f"{'UNIT':>4}  {'BAUD':>6}  {'REGISTERS 0..4':24}  PROFILE / NOTE")
        for f in found:
            regs = " ".join(f"{r:5d}" for r in f.registers) if f.registers else "-"
            print(f"{f.unit:4d}  {f.baud or '-':>6}  {regs:24}  {f.profile if f.registers else f.note}")
    return 0 if found else 2


def _refuse_if_daemon_owns(cfg: Config, bus_name: str) -> None:
    from gateway.control import ControlError, DaemonNotRunning, call, client_socket_path

    from gateway.service.ownership import data_lock_path, describe, holder

    owner = holder(data_lock_path(cfg.gateway.data_dir))  # a daemon between two configs has no socket
    if owner is not None:
        raise GatewayError(f"the gateway daemon, {describe(owner)}, owns bus {bus_name} (one master per "
                           f"RS485 line); stop it first: sudo systemctl stop community-gateway")
    try:
        call(client_socket_path(cfg.gateway.data_dir, cfg.gateway.control_socket), "ping", timeout=2.0)
    except DaemonNotRunning:
        return
    except ControlError:
        pass  # a daemon is there but we cannot talk to it: it still owns the port
    raise GatewayError(f"the gateway daemon is running and owns bus {bus_name} (one master per RS485 line); "
                       "stop it first: sudo systemctl stop community-gateway")
