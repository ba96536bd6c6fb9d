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
    for fc, spans in _spans(profile).items():
        need[fc] = {r for start, count in spans for r in range(start, start + count)}
    return need


def _spans(profile: Profile) -> dict[int, list[tuple[int, int]]]:
    """function code -> (start, count) of what must be read together: a point's words (a 32-bit
    value read in two transactions can tear), and each decimals/unit register alone."""
    out: dict[int, list[tuple[int, int]]] = {}
    for p in profile.points:
        if p.register is None:
            continue
        spans = out.setdefault(p.function, [])
        spans.append((p.register, p.words))
        for extra in (p.decimals_register, p.unit_register):
            if extra is not None:
                spans.append((extra, 1))
    return out


def plan_requests(profile: Profile) -> list[Request]:
    """Contiguous runs of needed registers, split at 125 but never inside a point's words. Gaps
    are not bridged: many cheap devices answer an unimplemented register with exception 2 and
    fail the whole read."""
    requests = []
    for fc, spans in sorted(_spans(profile).items()):
        start = end = None  # the run being built: [start, end)
        for s, n in sorted(spans):
            if start is None:
                start, end = s, s + n
            elif s <= end and max(end, s + n) - start <= MAX_REGISTERS:
                end = max(end, s + n)  # adjacent or overlapping, and it still fits
            else:
                requests.append(Request(fc, start, end - start))
                start, end = s, s + n
        if start is not None:
            requests.append(Request(fc, start, end - start))
    return requests
