"""Coils and discrete inputs of a simulated device (relay modules, dry-contact input modules,
sounders switched by a coil), served by pymodbus's simulator in its distinct-blocks mode.

In that mode pymodbus keeps 16 bits per register, bit 0 first, and hands the device's `action`
the block's registers: `pack` fills them from the device's own bit image before every request, so
the image (kept under the SimBus lock) is the one truth, as it is for registers."""

from __future__ import annotations

from pymodbus.simulator import DataType, SimData

BIT_FUNCTIONS = {1: "coils", 5: "coils", 15: "coils", 2: "inputs"}
WRITE_FUNCTIONS = (5, 15)


def bit_block(count: int) -> list[SimData]:
    """A block of `count` bits from address 0 (at least 16: pymodbus needs one register)."""
    n = max(16, (count + 15) // 16 * 16)
    return [SimData(0, values=[False] * n, datatype=DataType.BITS)]


def pack(bits: dict[int, bool], start_register: int, registers: list[int]) -> None:
    """Write `bits` (address -> state) into the block's registers, 16 bits a register."""
    for j in range(len(registers)):
        word = 0
        for b in range(16):
            if bits.get((start_register + j) * 16 + b):
                word |= 1 << b
        registers[j] = word
