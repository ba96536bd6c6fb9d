"""Push buttons on GPIO inputs: the silence button on the cabinet door (or an ack button).
Polled from the safety loop's tick: no interrupt thread, and a button needs only tens of
milliseconds of attention."""

from __future__ import annotations

from gateway.config.model import Input


class SilenceButton:
    """A debounced push button. `poll(now)` returns the configured action ("silence" or
    "ack") once per press, after the contact has stayed closed for `debounce_ms`. A button
    already held at start-up (stuck, or a wedge in the door) acts only after a release."""

    def __init__(self, inp: Input, gpio):
        self.input = inp
        self._gpio = gpio
        # Button to ground with the internal pull-up (active_low), or to 3V3 with a pull-down.
        gpio.setup_input(inp.pin, pull_up=inp.active_low)
        self._stable = self._pressed()
        self._candidate = self._stable
        self._since = 0.0

    @property
    def name(self) -> str:
        return self.input.name

    @property
    def action(self) -> str:
        return self.input.action

    def _pressed(self) -> bool:
        level = self._gpio.read_input(self.input.pin)
        return level == (0 if self.input.active_low else 1)

    def poll(self, now: float) -> str | None:
        """Raises OutputError if the pin cannot be read."""
        raw = self._pressed()
        if raw != self._candidate:
            self._candidate, self._since = raw, now  # contact bounce restarts the wait
        if self._candidate != self._stable and now - self._since >= self.input.debounce_ms / 1000:
            self._stable = self._candidate
            if self._stable:
                return self.input.action
        return None
