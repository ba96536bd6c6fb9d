"""`gateway-platform gb26875-centre` as a process: it denies as told, then confirms, and prints what it
decoded as JSON lines; a port it cannot bind is a sentence, not a traceback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from gateway.sync.gb26875 import codec, datatypes as dt
from tests.ptys import wait_until
from tests.test_gb26875_uplink import free_port

DEVICE, CENTRE = codec.address("000000000379"), codec.address("000000015b38")


def _answer(sock, reader) -> codec.Frame:
    while True:
        frames = [x for x in reader.feed(sock.recv(4096)) if isinstance(x, codec.Frame)]
        if frames:
            return frames[0]


def test_gb26875_centre_process_denies_then_confirms_and_prints_json_lines():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gateway.platform.cli", "gb26875-centre", "--port", str(port),
                             "--address", "000000015b38", "--deny", "1"], stdout=subprocess.PIPE, text=True)
    try:
        assert "listening" in proc.stdout.readline()
        sock = wait_until(lambda: _connect(port), 10, what="the centre accepts")
        reader = codec.FrameReader()
        smoke = dt.Component(dt.FIRE_ALARM_SYSTEM, 1, dt.SMOKE_DETECTOR, 1, 3, "stair-2-smoke")
        frame = codec.Frame(5, codec.SEND, DEVICE, CENTRE, dt.component_state(smoke, dt.RUNNING | dt.FIRE,
                                                                             codec.time_label())).encode()
        sock.sendall(frame)
        first = _answer(sock, reader)
        sock.sendall(frame)
        second = _answer(sock, reader)
        assert (first.command, first.serial, second.command, second.serial) == (codec.DENY, 5, codec.CONFIRM, 5)
        assert second.destination == DEVICE and second.source == CENTRE
        lines = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert [ln["answer"] for ln in lines] == ["deny", "confirm"]
        assert lines[1]["unit"]["objects"][0]["description"] == "stair-2-smoke"
        sock.close()
    finally:
        proc.terminate()
        proc.wait(10)


def _connect(port):
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError:
        return None


def test_a_port_in_use_is_a_sentence():
    with socket.create_server(("127.0.0.1", 0)) as busy:
        r = subprocess.run([sys.executable, "-m", "gateway.platform.cli", "sl651-centre", "--port",
                            str(busy.getsockname()[1])], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "cannot listen" in r.stderr and "Traceback" not in r.stderr
