"""Request planning: the registers a device's points need, grouped so that adjacent
registers are read in one request (<= 125 registers, FC03/FC04 limit)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.model import Profile

MAX_REGISTERS = 125


@dataclass(frozen=True, slots=True)
class Request:
    function: int
    address: int
    count: int


def registers_needed(profile: Profile) -> dict[int, set[int]]:
    """function code -> register addresses the profile's points read (incl. decimals/unit registers)."""
    need: dict[int, set[int]] = {}
    for p in profile.points:
        if p.register is None:
            continue
        regs = need.setdefault(p.function, set())
        regs.update(range(p.register, p.register + p.words))
        for extra in (p.decimals_register, p.unit_register):
            if extra is not None:
                regs.add(extra)
    return need


def plan_requests(profile: Profile) -> list[Request]:
    """Contiguous runs of needed registers, split at 125. Gaps are not bridged: many cheap
    devices answer an unimplemented register with exception 2 and fail the whole read."""
    requests = []
    for fc, regs in sorted(registers_needed(profile).items()):
        run_start = prev = None
        for r in sorted(regs):
            if run_start is None:
                run_start = prev = r
            elif r == prev + 1 and r - run_start < MAX_REGISTERS:
                prev = r
            else:
                requests.append(Request(fc, run_start, prev - run_start + 1))
                run_start = prev = r
        if run_start is not None:
            requests.append(Request(fc, run_start, prev - run_start + 1))
    return requests
