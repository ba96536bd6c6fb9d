"""GPIO backends, chosen by name in the config ([gpio] backend): `rpi` (RPi.GPIO, or
rpi-lgpio on a Pi 5) and `sim` (records every pin change). There is no fallback: asking
for `rpi` on a machine without it is an error, never a silent simulation."""

from __future__ import annotations

from drivers.gpio.base import HIGH, LOW, GpioBackend, physical_level
from gateway.errors import OutputError

BACKENDS = ("sim", "rpi")

__all__ = ["BACKENDS", "HIGH", "LOW", "GpioBackend", "open_gpio", "physical_level"]


def open_gpio(gpio_cfg) -> GpioBackend:
    """The backend named by a `gateway.config.model.Gpio` section."""
    name = gpio_cfg.backend
    if name == "sim":
        from drivers.gpio.sim import SimGpio

        return SimGpio(record=gpio_cfg.record)
    if name == "rpi":
        from drivers.gpio.rpi import RpiGpio

        return RpiGpio()
    raise OutputError(f"[gpio] backend: unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
