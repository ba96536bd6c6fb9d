"""The `rpi` backend: RPi.GPIO in BCM numbering. On a Pi 5 the same `RPi.GPIO` module
comes from the rpi-lgpio package (which drives lgpio); the original RPi.GPIO cannot
reach the Pi 5's RP1 chip."""

from __future__ import annotations

import atexit
import importlib
import threading

from drivers.gpio.base import GpioBackend
from gateway.errors import OutputError

_HINT = ("install RPi.GPIO on a Pi 1-4 (pip install 'community-gateway[pi]'); on a Pi 5 install "
         "rpi-lgpio instead (pip uninstall RPi.GPIO; pip install rpi-lgpio): it provides the same module; "
         "off a Pi, use [gpio] backend = \"sim\"")


class RpiGpio(GpioBackend):
    """The Pi's header pins through RPi.GPIO."""

    name = "rpi"

    def __init__(self):
        try:
            # import_module, not `import RPi.GPIO`: the module is only importable on a Pi,
            # and the package must import on a laptop.
            gpio = importlib.import_module("RPi.GPIO")
        except ImportError as e:
            raise OutputError(f"[gpio] backend = \"rpi\": RPi.GPIO is not installed ({e}); {_HINT}") from e
        except RuntimeError as e:  # "This module can only be run on a Raspberry Pi!", or a Pi 5
            raise OutputError(f"[gpio] backend = \"rpi\": RPi.GPIO cannot run here ({e}); {_HINT}") from e
        self._gpio = gpio
        self._lock = threading.Lock()
        self._outputs: dict[int, bool] = {}  # pin -> active_low
        self._inputs: set[int] = set()
        self._closed = False
        try:
            gpio.setwarnings(False)  # "channel already in use" after a kill -9 is expected: we own the pins
            gpio.setmode(gpio.BCM)
        except (RuntimeError, ValueError) as e:
            raise OutputError(f"[gpio] cannot select BCM numbering: {e}") from e
        # A normal exit (SIGTERM handled, end of `gateway siren test`) leaves every relay off.
        atexit.register(self.cleanup)

    def _off_level(self, active_low: bool) -> int:
        return self._gpio.HIGH if active_low else self._gpio.LOW

    def _on_level(self, active_low: bool) -> int:
        return self._gpio.LOW if active_low else self._gpio.HIGH

    def setup_output(self, pin: int, active_low: bool = True) -> None:
        g = self._gpio
        try:
            # initial= sets the level before the pin becomes an output, so an active-low relay
            # never clicks on at boot.
            g.setup(pin, g.OUT, initial=self._off_level(active_low))
        except (RuntimeError, ValueError) as e:
            raise OutputError(f"GPIO{pin}: cannot set up as an output: {e}") from e
        with self._lock:
            self._outputs[pin] = active_low

    def set_output(self, pin: int, on: bool) -> None:
        active_low = self._outputs.get(pin)
        if active_low is None:
            raise OutputError(f"GPIO{pin} is not set up as an output")
        level = self._on_level(active_low) if on else self._off_level(active_low)
        try:
            self._gpio.output(pin, level)
        except (RuntimeError, ValueError) as e:
            raise OutputError(f"GPIO{pin}: cannot switch {'on' if on else 'off'}: {e}") from e

    def setup_input(self, pin: int, pull_up: bool = True) -> None:
        g = self._gpio
        try:
            g.setup(pin, g.IN, pull_up_down=g.PUD_UP if pull_up else g.PUD_DOWN)
        except (RuntimeError, ValueError) as e:
            raise OutputError(f"GPIO{pin}: cannot set up as an input: {e}") from e
        with self._lock:
            self._inputs.add(pin)

    def read_input(self, pin: int) -> int:
        if pin not in self._inputs:
            raise OutputError(f"GPIO{pin} is not set up as an input")
        try:
            return 1 if self._gpio.input(pin) else 0
        except (RuntimeError, ValueError) as e:
            raise OutputError(f"GPIO{pin}: cannot read: {e}") from e

    def cleanup(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            outputs = dict(self._outputs)
            pins = sorted(set(outputs) | self._inputs)
        g = self._gpio
        problems = []
        # Off first and explicitly: cleanup() only turns pins into inputs, and what a relay
        # board does with a floating input depends on the board.
        for pin, active_low in outputs.items():
            try:
                g.output(pin, self._off_level(active_low))
            except (RuntimeError, ValueError) as e:
                problems.append(f"GPIO{pin}: {e}")
        try:
            if pins:
                g.cleanup(pins)  # only our pins: another program may own the rest
        except (RuntimeError, ValueError) as e:
            problems.append(f"cleanup: {e}")
        atexit.unregister(self.cleanup)
        if problems:
            raise OutputError("GPIO cleanup failed: " + "; ".join(problems))
