"""Simulated streaming serial sensors: a thread writing frames to a port (usually one end of
a socat pty pair; the gateway reads the other end).

- A02yyuwEmitter: the DFRobot A02YYUW ultrasonic, frames 0xFF H L SUM about 10 times a second.
- LineEmitter: a text-line sensor ("level=12.3"), for profiles with frame = "line".
Behaviours: normal, silent, noise (random bytes between frames), and bad_checksum (A02YYUW)
or bad_line (text that does not match)."""

from __future__ import annotations

import abc
import random
import threading
import time

import serial

from gateway.errors import BusError


def a02yyuw_frame(distance_mm: int) -> bytes:
    """0xFF, H, L, SUM with distance = H*256+L and SUM = (0xFF+H+L) & 0xFF."""
    high, low = divmod(int(distance_mm) & 0xFFFF, 256)
    return bytes([0xFF, high, low, (0xFF + high + low) & 0xFF])


class _Emitter(abc.ABC):
    behaviours: tuple[str, ...] = ("normal", "silent", "noise")

    def __init__(self, port: str, hz: float, baudrate: int, seed: int):
        self.port = port
        self.hz = hz
        self.baudrate = baudrate
        self.behaviour = "normal"
        self.frames = 0  # chunks written, for tests that wait for the stream
        self.error: str | None = None  # why the thread stopped early (port vanished)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._serial: serial.SerialBase | None = None

    def behave(self, behaviour: str) -> None:
        if behaviour not in self.behaviours:
            raise ValueError(f"behaviour {behaviour!r}: one of {', '.join(self.behaviours)}")
        with self._lock:
            self.behaviour = behaviour

    def start(self):
        if self._thread is not None:
            return self
        try:
            self._serial = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=0,
                                                 write_timeout=1.0)
        except (serial.SerialException, OSError) as e:
            raise BusError(f"emitter cannot open {self.port}: {e}") from e
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"{type(self).__name__}-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._serial is not None:
            self._serial.close()
            self._serial = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        period = 1.0 / self.hz
        due = time.monotonic()
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due += period
            with self._lock:
                chunk = self._chunk(self.behaviour)
            if not chunk:
                continue
            try:
                self._serial.write(chunk)
            except (serial.SerialException, OSError) as e:
                self.error = str(e)  # the port went away: the stream ends, as a sensor's would
                return
            self.frames += 1

    def _noise(self) -> bytes:
        # no 0xFF: noise must not be able to forge an A02YYUW frame start by chance
        return bytes(self._rng.randrange(0, 0xFF) for _ in range(self._rng.randint(1, 6)))

    @abc.abstractmethod
    def _chunk(self, behaviour: str) -> bytes:
        """The bytes one tick writes for `behaviour` (empty: nothing this tick)."""


class A02yyuwEmitter(_Emitter):
    """An A02YYUW ultrasonic sensor streaming its distance in mm."""
    behaviours = ("normal", "silent", "noise", "bad_checksum")

    def __init__(self, port: str, distance_mm: int, hz: float = 10.0, *, baudrate: int = 9600,
                 seed: int = 2):
        super().__init__(port, hz, baudrate, seed)
        self.distance_mm = int(distance_mm)

    def set_distance(self, distance_mm: int) -> None:
        with self._lock:
            self.distance_mm = int(distance_mm)

    def _chunk(self, behaviour: str) -> bytes:
        frame = a02yyuw_frame(self.distance_mm)
        if behaviour == "silent":
            return b""
        if behaviour == "bad_checksum":
            return frame[:3] + bytes([frame[3] ^ 0x5A])
        if behaviour == "noise":
            return self._noise() + frame
        return frame


class LineEmitter(_Emitter):
    """A sensor printing one text line per reading, e.g. template "level={level:.1f}"."""
    behaviours = ("normal", "silent", "noise", "bad_line")

    def __init__(self, port: str, template: str, values: dict[str, float], hz: float = 5.0, *,
                 baudrate: int = 9600, newline: str = "\r\n", seed: int = 3):
        super().__init__(port, hz, baudrate, seed)
        self.template = template
        self.values = dict(values)
        self.newline = newline
        template.format(**values)  # a template naming a missing field fails here, not in the thread

    def set_values(self, **values: float) -> None:
        with self._lock:
            self.values.update(values)

    def _chunk(self, behaviour: str) -> bytes:
        line = (self.template.format(**self.values) + self.newline).encode("ascii")
        if behaviour == "silent":
            return b""
        if behaviour == "bad_line":
            return b"ERR sensor" + self.newline.encode("ascii")
        if behaviour == "noise":
            return self._noise() + self.newline.encode("ascii") + line
        return line
