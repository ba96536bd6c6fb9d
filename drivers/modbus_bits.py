"""Coils, discrete inputs and output writes, as Modbus PDUs (Modbus Application Protocol
Specification V1.1b3: 6.1 Read Coils 0x01, 6.2 Read Discrete Inputs 0x02, 6.5 Write Single Coil
0x05, 6.6 Write Single Register 0x06, 6.12 Write Multiple Registers 0x10).

`ExchangeBits` gives an RTU link (which has `exchange`, drivers/rtu.py) the same read_bits /
write_coil / write_register methods the TCP link gets from pymodbus (drivers/tcp.py). A write
is checked against its echo here; whether the device really switched is the read-back's
business (gateway/acquire/writes.py)."""

from __future__ import annotations

import struct

from gateway.errors import DeviceFault

BIT_FUNCTIONS = (1, 2)
MAX_READ_BITS = 2000  # spec limit for FC01/FC02
COIL_ON, COIL_OFF = 0xFF00, 0x0000  # FC05: the only two values a coil write may carry


def read_bits_pdu(function: int, address: int, count: int) -> bytes:
    if function not in BIT_FUNCTIONS:
        raise ValueError(f"function {function} is not a bit read (1 or 2)")
    if not 0 <= address <= 0xFFFF or not 1 <= count <= MAX_READ_BITS or address + count > 0x10000:
        raise ValueError(f"bit span {address}+{count} invalid (1..{MAX_READ_BITS} bits)")
    return struct.pack(">BHH", function, address, count)


def parse_bits(pdu: bytes, function: int, count: int) -> list[bool]:
    nbytes = (count + 7) // 8
    if len(pdu) != 2 + nbytes or pdu[0] != function or pdu[1] != nbytes:
        raise DeviceFault("bytecount", f"bit reply {pdu.hex(' ')}: expected {nbytes} data bytes for {count} bits")
    return [bool(pdu[2 + i // 8] >> (i % 8) & 1) for i in range(count)]  # LSB of the first byte first


def write_coil_pdu(address: int, on: bool) -> bytes:
    return struct.pack(">BHH", 5, address, COIL_ON if on else COIL_OFF)


def write_register_pdu(address: int, value: int, multiple: bool = False) -> bytes:
    if multiple:
        return struct.pack(">BHHBH", 16, address, 1, 2, value)
    return struct.pack(">BHH", 6, address, value)


def check_echo(request: bytes, reply: bytes) -> None:
    """FC05/FC06 echo the request; FC16 echoes address and quantity."""
    want = request[:5]
    if reply[:5] != want or (request[0] in (5, 6) and reply != request):
        raise DeviceFault("garbage", f"write not echoed: sent {request.hex(' ')}, got {reply.hex(' ')}")


class ExchangeBits:
    """read_bits / write_coil / write_register for a link with `exchange(unit, pdu, reply_len, ...)`."""

    def read_bits(self, unit: int, function: int, address: int, count: int, *, timeout: float,
                  retries: int) -> list[bool]:
        pdu = read_bits_pdu(function, address, count)
        reply = self.exchange(unit, pdu, 5 + (count + 7) // 8, lambda head: head[2] + 5,
                              timeout=timeout, retries=retries)
        return parse_bits(reply, function, count)

    def write_coil(self, unit: int, address: int, on: bool, *, timeout: float, retries: int) -> None:
        pdu = write_coil_pdu(address, on)
        check_echo(pdu, self.exchange(unit, pdu, 8, lambda head: 8, timeout=timeout, retries=retries))

    def write_register(self, unit: int, address: int, value: int, *, multiple: bool = False,
                       timeout: float, retries: int) -> None:
        pdu = write_register_pdu(address, value, multiple)
        check_echo(pdu, self.exchange(unit, pdu, 8, lambda head: 8, timeout=timeout, retries=retries))
