"""The `syn6288` voice backend: a serial TTS module of the SYN6288 family (北京宇音天下), the one many
Chinese warning terminals carry, speaking text sent over its UART (9600 8N1 by default).

The frame, as the datasheet's command-frame table gives it (帧头 0xFD, 1 byte; 数据区长度, 2 bytes, high
byte first; 数据区 <= 203 bytes: 命令字 1 byte, 命令参数 1 byte, text <= 200 bytes, 异或校验 1 byte):

    FD  LEN_H LEN_L  CMD  PARAM  TEXT...  XOR

LEN counts CMD, PARAM, TEXT and XOR; XOR is the exclusive-or of every byte before it, 0xFD included.
CMD 0x01 synthesises; PARAM's low 3 bits are the text encoding (0 GB2312, 1 GBK, 2 BIG5, 3 Unicode), its
high bits a background tune (0: none). Stop is `FD 00 02 02 FD`, a status query `FD 00 02 21 DE`. The
module answers each frame with one byte: 0x41 received, 0x45 not understood; 0x4A after power-up, 0x4E
busy and 0x4F idle answer a status query (0x4F also comes unasked when a text is finished).
Sources and a worked example: docs/voice.md."""

from __future__ import annotations

import threading
import time

from drivers.voice.base import VoiceBackend, VoiceError

HEADER = 0xFD
SYNTHESIS, STOP, STATUS = 0x01, 0x02, 0x21
ENCODINGS = {"gb2312": 0, "gbk": 1, "big5": 2, "utf-16-be": 3}
MAX_TEXT = 200  # bytes of encoded text per frame
RECEIVED, REFUSED, READY, BUSY, IDLE = 0x41, 0x45, 0x4A, 0x4E, 0x4F
ANSWER_S = 0.5


def xor(data: bytes) -> int:
    x = 0
    for b in data:
        x ^= b
    return x


def frame(command: int, param: int | None = None, payload: bytes = b"") -> bytes:
    body = bytes([command]) + (bytes([param]) if param is not None else b"") + payload
    head = bytes([HEADER]) + (len(body) + 1).to_bytes(2, "big")
    return head + body + bytes([xor(head + body)])


def synthesis_frame(text: str, encoding: str = "gbk", music: int = 0) -> bytes:
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError as e:
        raise VoiceError(f"SYN6288: \"{text}\" has characters {encoding.upper()} cannot encode ({e.reason})") from e
    if len(data) > MAX_TEXT:
        raise VoiceError(f"SYN6288: \"{text}\" is {len(data)} bytes in {encoding.upper()}; a frame takes at most "
                         f"{MAX_TEXT}: shorten the message")
    return frame(SYNTHESIS, (music & 0x1F) << 3 | ENCODINGS[encoding], data)


def parse(data: bytes) -> tuple[int, int | None, bytes] | str:
    """(command, param, payload) of one whole frame, or why it is not one (for the simulated module)."""
    if len(data) < 4 or data[0] != HEADER:
        return "no 0xFD header"
    length = int.from_bytes(data[1:3], "big")
    if len(data) != 3 + length:
        return f"length field {length}, {len(data) - 3} bytes follow"
    if xor(data[:-1]) != data[-1]:
        return f"XOR {data[-1]:02X}, expected {xor(data[:-1]):02X}"
    command = data[3]
    if command == SYNTHESIS:
        return command, data[4], data[5:-1]
    return command, None, data[4:-1]


class Syn6288Voice(VoiceBackend):
    name = "syn6288"

    def __init__(self, port: str, *, baudrate: int = 9600, encoding: str = "gbk", on_problem=None):
        self.port = port
        self.baudrate = baudrate
        self.encoding = encoding
        self._on_problem = on_problem
        self._serial = None
        self._lock = threading.Lock()

    def _open(self):
        import serial

        if self._serial is None:
            try:
                self._serial = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=ANSWER_S,
                                                     write_timeout=1.0)
            except (serial.SerialException, OSError, ValueError) as e:
                raise VoiceError(f"SYN6288 on {self.port}: cannot open the port: {e}") from e
        return self._serial

    def _send(self, data: bytes, what: str) -> None:
        import serial

        with self._lock:
            port = self._open()
            try:
                port.reset_input_buffer()  # an unasked 0x4F (idle) is not this frame's answer
                port.write(data)
                deadline = time.monotonic() + ANSWER_S
                while time.monotonic() < deadline:
                    b = port.read(1)
                    if not b:
                        break
                    if b[0] == RECEIVED:
                        return
                    if b[0] == REFUSED:
                        raise VoiceError(f"SYN6288 on {self.port} refused the {what} frame (0x45): {data.hex(' ')}")
            except (serial.SerialException, OSError) as e:
                self._close()
                raise VoiceError(f"SYN6288 on {self.port}: {e}") from e
        raise VoiceError(f"SYN6288 on {self.port}: no answer to the {what} frame within {ANSWER_S:g} s "
                         "(module missing, unpowered, or at another baud rate)")

    def speak(self, text: str, prefix: str | None = None) -> None:
        self._send(synthesis_frame((prefix or "") + text, self.encoding), "synthesis")

    def stop(self) -> None:
        if self._serial is not None:
            self._send(frame(STOP), "stop")

    def _close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.stop()
        except VoiceError:
            pass
        self._close()
