"""The one interface every GPIO backend implements. Devices (sirens, buttons) only ever
talk to this; the vendor library stays inside its backend file."""

from __future__ import annotations

from abc import ABC, abstractmethod

HIGH = 1
LOW = 0


def physical_level(on: bool, active_low: bool) -> int:
    """The level on the pin for a logical on/off. Most Pi relay boards switch on LOW."""
    return (LOW if on else HIGH) if active_low else (HIGH if on else LOW)


class GpioBackend(ABC):
    """A set of BCM-numbered pins. Outputs are driven by logical state (on = relay
    energised); the backend turns that into the physical level. Inputs are read as the
    physical level: what "pressed" means is the button's business, not the pin's."""

    name = "?"

    @abstractmethod
    def setup_output(self, pin: int, active_low: bool = True) -> None:
        """Make `pin` an output that starts OFF, without ever passing through ON."""

    @abstractmethod
    def set_output(self, pin: int, on: bool) -> None:
        """Switch an output; raises OutputError if the pin was not set up or cannot be driven."""

    @abstractmethod
    def setup_input(self, pin: int, pull_up: bool = True) -> None:
        """Make `pin` an input with the internal pull-up (button to ground) or pull-down."""

    @abstractmethod
    def read_input(self, pin: int) -> int:
        """The physical level of an input pin: 0 or 1."""

    @abstractmethod
    def cleanup(self) -> None:
        """Drive every output OFF and release the pins. Safe to call twice."""

    def __enter__(self) -> "GpioBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()
