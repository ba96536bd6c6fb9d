"""A simulated SYN6288 TTS module on the far end of a serial port (a socat pty in the tests): it reads
frames, checks each whole (header, length, XOR: drivers/voice/syn6288.py), answers 0x41 or 0x45 as the
module does, and remembers what it would have said."""

from __future__ import annotations

import threading
import time

import serial

from drivers.voice.syn6288 import HEADER, RECEIVED, REFUSED, STOP, SYNTHESIS, parse

_DECODE = {0: "gb2312", 1: "gbk", 2: "big5", 3: "utf-16-be"}


class SimSyn6288:
    def __init__(self, port: str, baudrate: int = 9600, *, answer: bool = True):
        self.port, self.baudrate = port, baudrate
        self.answer = answer  # False: a module that is there but never answers (wrong baud)
        self.frames: list[bytes] = []
        self.said: list[str] = []
        self.stops = 0
        self.refused: list[str] = []
        self._stop = threading.Event()
        self._serial = serial.serial_for_url(port, baudrate=baudrate, timeout=0.05)
        self._thread = threading.Thread(target=self._run, name="sim-syn6288", daemon=True)

    def __enter__(self) -> "SimSyn6288":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self._serial.close()

    def _run(self) -> None:
        buf = bytearray()
        while not self._stop.is_set():
            buf += self._serial.read(256)
            while buf:
                if buf[0] != HEADER:
                    self.refused.append(f"junk byte {buf[0]:02X}")
                    del buf[0]
                    self._reply(REFUSED)
                    continue
                if len(buf) < 3:
                    break
                total = 3 + int.from_bytes(buf[1:3], "big")
                if len(buf) < total:
                    more = self._serial.read(total - len(buf))
                    if not more:
                        self.refused.append(f"short frame {bytes(buf).hex(' ')}")
                        buf.clear()
                        self._reply(REFUSED)
                        break
                    buf += more
                    continue
                data, buf = bytes(buf[:total]), buf[total:]
                self._handle(data)

    def _handle(self, data: bytes) -> None:
        self.frames.append(data)
        got = parse(data)
        if isinstance(got, str):
            self.refused.append(got)
            self._reply(REFUSED)
            return
        command, param, payload = got
        if command == SYNTHESIS:
            try:
                self.said.append(payload.decode(_DECODE[param & 0x07]))
            except (KeyError, UnicodeDecodeError) as e:
                self.refused.append(f"undecodable text: {e}")
                self._reply(REFUSED)
                return
        elif command == STOP:
            self.stops += 1
        self._reply(RECEIVED)

    def _reply(self, byte: int) -> None:
        if self.answer:
            time.sleep(0.002)  # the module's turnaround
            self._serial.write(bytes([byte]))
