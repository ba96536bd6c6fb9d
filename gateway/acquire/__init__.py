"""Acquire: bus scheduling, request planning, decoding and reading quality."""

from gateway.acquire.bus_loop import Acquisition, DeviceStats

__all__ = ["Acquisition", "DeviceStats"]
