"""The sim backend: physical levels, the history, inputs, and the record file."""

import json
import threading

import pytest

from drivers.gpio import open_gpio
from drivers.gpio.sim import SimGpio
from gateway.config.model import Gpio
from gateway.errors import OutputError


def test_outputs_record_physical_levels_only_on_change():
    pins = SimGpio()
    pins.setup_output(17, active_low=True)
    pins.setup_output(22, active_low=False)
    for on in (True, True, False):
        pins.set_output(17, on)
        pins.set_output(22, on)
    assert pins.values(17) == [1, 0, 1]  # off at setup, on = LOW, off
    assert pins.values(22) == [0, 1, 0]
    h = pins.history()
    assert [(e["pin"], e["value"]) for e in h] == [(17, 1), (22, 0), (17, 0), (22, 1), (17, 1), (22, 0)]
    assert all(isinstance(e["t"], float) for e in h) and h == sorted(h, key=lambda e: e["t"])
    pins.cleanup()


def test_cleanup_turns_outputs_off_and_closes():
    pins = SimGpio()
    pins.setup_output(17)
    pins.set_output(17, True)
    pins.cleanup()
    assert pins.values(17) == [1, 0, 1]
    with pytest.raises(OutputError, match="cleaned up"):
        pins.set_output(17, True)


def test_inputs_press_and_release_against_the_pull():
    pins = SimGpio()
    pins.setup_input(27, pull_up=True)
    pins.setup_input(5, pull_up=False)
    assert (pins.read_input(27), pins.read_input(5)) == (1, 0)
    pins.press(27)
    pins.press(5)
    assert (pins.read_input(27), pins.read_input(5)) == (0, 1)
    pins.release(27)
    pins.set_input(5, 0)
    assert (pins.read_input(27), pins.read_input(5)) == (1, 0)
    with pytest.raises(OutputError, match="GPIO6 is not set up as an input"):
        pins.read_input(6)
    with pytest.raises(OutputError, match="already an input"):
        pins.setup_output(27)
    pins.cleanup()


def test_record_file_is_written_by_a_background_thread(tmp_path):
    path = tmp_path / "var" / "pins.jsonl"
    pins = open_gpio(Gpio(backend="sim", record=str(path)))
    assert any(t.name == "sim-gpio-record" for t in threading.enumerate())
    pins.setup_output(17)
    pins.set_output(17, True)
    pins.set_output(17, False)
    history = pins.history()
    pins.cleanup()  # joins the writer: the file is complete afterwards
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines == history
    assert [x["value"] for x in lines] == [1, 0, 1]
    assert set(lines[0]) == {"t", "pin", "value"}
    assert not any(t.name == "sim-gpio-record" for t in threading.enumerate())


def test_unwritable_record_is_an_output_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="record: cannot write"):
        SimGpio(record=str(tmp_path / "file" / "pins.jsonl"))


def test_wait_for_wakes_on_a_change_from_another_thread():
    pins = SimGpio()
    pins.setup_output(17)
    t = threading.Timer(0.05, pins.set_output, args=(17, True))
    t.start()
    assert pins.wait_for(lambda p: p.values(17) == [1, 0], timeout=5.0)
    assert not pins.wait_for(lambda p: len(p.values(17)) > 2, timeout=0.05)
    t.join()
    pins.cleanup()
