"""The rpi backend with RPi.GPIO mocked (it only imports on a Pi): the exact calls."""

import sys
from unittest.mock import call

import pytest

from drivers.gpio import open_gpio
from gateway.config.model import Gpio
from gateway.errors import OutputError


@pytest.fixture
def gpio(mocker):
    g = mocker.MagicMock(name="RPi.GPIO")
    # The real module's constants, so the asserted calls read like a Pi session.
    g.BCM, g.OUT, g.IN, g.HIGH, g.LOW, g.PUD_UP, g.PUD_DOWN = 11, 0, 1, 1, 0, 22, 21
    rpi = mocker.MagicMock(name="RPi", GPIO=g)
    mocker.patch.dict(sys.modules, {"RPi": rpi, "RPi.GPIO": g})
    return g


def test_bcm_mode_initial_off_level_and_active_low_switching(gpio):
    pins = open_gpio(Gpio(backend="rpi"))
    assert pins.name == "rpi"
    pins.setup_output(17, active_low=True)
    pins.setup_output(22, active_low=False)
    pins.set_output(17, True)
    pins.set_output(17, False)
    pins.set_output(22, True)
    pins.cleanup()
    assert gpio.mock_calls == [
        call.setwarnings(False),
        call.setmode(11),
        # initial= is the OFF level: HIGH on an active-low board, so the relay never clicks at boot
        call.setup(17, 0, initial=1),
        call.setup(22, 0, initial=0),
        call.output(17, 0),  # on, active low
        call.output(17, 1),
        call.output(22, 1),  # on, active high
        # cleanup: both off explicitly, then release only our pins
        call.output(17, 1),
        call.output(22, 0),
        call.cleanup([17, 22]),
    ]


def test_inputs_with_pull_up_and_pull_down(gpio):
    pins = open_gpio(Gpio(backend="rpi"))
    pins.setup_input(27, pull_up=True)
    pins.setup_input(5, pull_up=False)
    gpio.input.return_value = 0
    assert pins.read_input(27) == 0
    gpio.input.return_value = True
    assert pins.read_input(5) == 1
    pins.cleanup()
    pins.cleanup()  # twice is harmless
    assert gpio.mock_calls[2:] == [
        call.setup(27, 1, pull_up_down=22),
        call.setup(5, 1, pull_up_down=21),
        call.input(27),
        call.input(5),
        call.cleanup([5, 27]),
    ]


def test_unconfigured_pins_and_library_errors_are_output_errors(gpio):
    pins = open_gpio(Gpio(backend="rpi"))
    with pytest.raises(OutputError, match="GPIO4 is not set up as an output"):
        pins.set_output(4, True)
    with pytest.raises(OutputError, match="GPIO4 is not set up as an input"):
        pins.read_input(4)
    gpio.setup.side_effect = RuntimeError("Not running on a RPi!")
    with pytest.raises(OutputError, match="GPIO17: cannot set up as an output: Not running on a RPi!"):
        pins.setup_output(17)
    gpio.setup.side_effect = None
    pins.setup_output(17)
    gpio.output.side_effect = RuntimeError("channel gone")
    with pytest.raises(OutputError, match="cannot switch on"):
        pins.set_output(17, True)
    with pytest.raises(OutputError, match="cleanup failed"):
        pins.cleanup()


def test_missing_library_is_an_error_naming_rpi_lgpio(mocker):
    mocker.patch.dict(sys.modules, {"RPi": None, "RPi.GPIO": None})  # None: "import fails"
    with pytest.raises(OutputError, match="rpi-lgpio") as e:
        open_gpio(Gpio(backend="rpi"))
    assert "not installed" in str(e.value)


def test_not_a_pi_is_an_error_not_a_fallback(mocker):
    mocker.patch("drivers.gpio.rpi.importlib.import_module",
                 side_effect=RuntimeError("This module can only be run on a Raspberry Pi!"))
    with pytest.raises(OutputError, match="only be run on a Raspberry Pi.*rpi-lgpio"):
        open_gpio(Gpio(backend="rpi"))


def test_unknown_backend_is_refused():
    with pytest.raises(OutputError, match="unknown backend 'pigpio'"):
        open_gpio(Gpio(backend="pigpio"))
