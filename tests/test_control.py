"""The control socket server against real UNIX sockets: what a technician's CLI, a half-dead SSH
session or a stray `socat` can throw at the daemon, and that the daemon keeps serving."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
import time

import pytest

from gateway.control import ControlServer, RemoteError, call, require, stream
from gateway.errors import ConfigError, ControlError


def wait_for(predicate, timeout=3.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Daemon:
    """Stand-in handlers with the shapes the real daemon's will have."""

    def __init__(self):
        self.follow_gone = threading.Event()
        self.follow_sent = 0
        self.slow_emit_failed = threading.Event()

    def status(self, args):
        return {"sensors": [{"name": "underpass-level", "value": 4.2, "unit": "cm", "quality": "good"}]}

    def siren_test(self, args):
        seconds = require(args, "seconds", (int, float))
        return {"siren": require(args, "name"), "seconds": seconds}

    def reload(self, args):
        raise ConfigError("gateway.toml:12: [bus.rtu1] baudrate: must be one of 1200..115200")

    def crash(self, args):
        return 1 / 0

    def unserialisable(self, args):
        return object()

    def events(self, args, emit):
        for seq in range(1, 4):
            emit({"seq": seq, "type": "alarm"})

    def follow(self, args, emit):
        while emit.alive():
            if emit({"seq": self.follow_sent}):
                self.follow_sent += 1
            emit.wait(0.02)
        self.follow_gone.set()

    def flood(self, args, emit):
        chunk = "x" * 8192
        while emit(chunk):
            pass
        self.slow_emit_failed.set()

    def broken_stream(self, args, emit):
        emit({"seq": 1})
        raise ConfigError("the events log is unreadable")


@pytest.fixture
def daemon():
    return Daemon()


@pytest.fixture
def sock_path(tmp_path):
    return str(tmp_path / "control.sock")


@pytest.fixture
def server(sock_path, daemon):
    d = daemon
    srv = ControlServer(
        sock_path,
        {"status": d.status, "siren-test": d.siren_test, "reload": d.reload, "crash": d.crash,
         "unserialisable": d.unserialisable},
        {"events": d.events, "follow": d.follow, "flood": d.flood, "broken": d.broken_stream},
        send_timeout_s=0.3, request_timeout_s=2.0,
    ).start()
    yield srv
    srv.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("control-") and t.is_alive()]


def raw(path, data: bytes, timeout=3.0) -> list[dict]:
    """Send bytes as-is and read reply lines until the server closes or goes quiet."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    return [json.loads(line) for line in buf.splitlines()]


def test_status_round_trip(server, sock_path):
    result = call(sock_path, "status")
    assert result["sensors"][0]["name"] == "underpass-level"
    assert call(sock_path, "ping")["pid"] == os.getpid()


def test_socket_mode_and_removed_on_stop(sock_path, daemon):
    srv = ControlServer(sock_path, {}, mode=0o660).start()
    st = os.stat(sock_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    srv.stop()
    assert not os.path.exists(sock_path)


def test_stale_socket_is_replaced(sock_path):
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(sock_path)  # a crashed daemon's file: bound, nobody listening
    leftover.close()
    with ControlServer(sock_path, {}):
        assert call(sock_path, "ping")["pid"] == os.getpid()


def test_refuses_to_replace_a_live_daemon_or_a_plain_file(server, sock_path, tmp_path):
    with pytest.raises(ControlError, match="already listening"):
        ControlServer(sock_path, {}).start()
    assert call(sock_path, "ping")  # the first daemon is untouched
    plain = tmp_path / "notes.txt"
    plain.write_text("keep me")
    with pytest.raises(ControlError, match="not a socket"):
        ControlServer(str(plain), {}).start()
    assert plain.read_text() == "keep me"


def test_malformed_requests_get_error_replies_and_the_connection_goes_on(server, sock_path):
    replies = raw(sock_path, b'{"cmd": "status"\n[1, 2]\n{"cmd": "status", "args": 3}\n\xff\xfe\n{"cmd":"status"}\n')
    assert [r.get("code") for r in replies] == ["bad-json", "bad-request", "bad-request", "bad-json", None]
    assert replies[-1]["ok"] is True
    assert call(sock_path, "status")


def test_oversize_request_is_refused_and_server_keeps_serving(server, sock_path):
    replies = raw(sock_path, b'{"cmd": "status", "args": {"x": "' + b"a" * 70_000 + b'"}}\n')
    assert replies == [{"ok": False, "error": replies[0]["error"], "code": "too-large"}]
    # no newline at all: the server must not buffer forever either
    assert raw(sock_path, b"a" * 200_000)[0]["code"] == "too-large"
    assert call(sock_path, "status")


def test_unknown_command_names_the_known_ones(server, sock_path):
    with pytest.raises(RemoteError, match="unknown command 'stauts'.*status") as err:
        call(sock_path, "stauts")
    assert err.value.code == "unknown-command"


def test_missing_and_wrong_arguments(server, sock_path):
    with pytest.raises(RemoteError, match="missing argument 'seconds'") as err:
        call(sock_path, "siren-test", {"name": "siren-1"})
    assert err.value.code == "bad-args"
    with pytest.raises(RemoteError, match="'seconds' must be int or float, got bool"):
        call(sock_path, "siren-test", {"name": "siren-1", "seconds": True})
    assert call(sock_path, "siren-test", {"name": "siren-1", "seconds": 5}) == {"siren": "siren-1", "seconds": 5}


def test_gateway_error_reaches_the_technician(server, sock_path):
    with pytest.raises(RemoteError, match=r"gateway.toml:12: \[bus.rtu1\] baudrate") as err:
        call(sock_path, "reload")
    assert err.value.code == "ConfigError"


def test_handler_bug_is_internal_error_with_a_logged_traceback(server, sock_path, caplog):
    with caplog.at_level(logging.ERROR, logger="gateway.control"):
        with pytest.raises(RemoteError, match="^internal error$") as err:
            call(sock_path, "crash")
        with pytest.raises(RemoteError, match="^internal error$"):
            call(sock_path, "unserialisable")
    assert err.value.code == "internal"
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)
    assert call(sock_path, "status")


def test_client_vanishing_mid_request_does_not_block_others(server, sock_path):
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(sock_path)  # connects and never says a word, like a frozen SSH session
    half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half.connect(sock_path)
    half.sendall(b'{"cmd": "sta')
    half.close()  # gone mid-request
    started = time.monotonic()
    assert call(sock_path, "status", timeout=1.0)
    assert time.monotonic() - started < 0.5
    wait_for(lambda: server.client_count() == 1, what="the half-sent client to be dropped")
    silent.close()
    wait_for(lambda: server.client_count() == 0, what="the silent client to be dropped")


def test_finite_stream(server, sock_path):
    assert list(stream(sock_path, "events")) == [{"seq": 1, "type": "alarm"}, {"seq": 2, "type": "alarm"},
                                                 {"seq": 3, "type": "alarm"}]


def test_stream_error_mid_way_raises_after_the_items_so_far(server, sock_path):
    items = stream(sock_path, "broken")
    assert next(items) == {"seq": 1}
    with pytest.raises(RemoteError, match="events log is unreadable"):
        next(items)


def test_follow_client_hanging_up_ends_the_handler_while_others_are_served(server, sock_path, daemon):
    follow = stream(sock_path, "follow")
    assert next(follow) == {"seq": 0}
    assert next(follow) == {"seq": 1}
    assert call(sock_path, "status")  # served while the follow runs
    follow.close()  # Ctrl-C in `gateway events --follow`
    assert daemon.follow_gone.wait(3.0)
    wait_for(lambda: server.client_count() == 0, what="the follow client to be released")


def test_stream_to_a_client_that_stops_reading_is_dropped(server, sock_path, daemon):
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.connect(sock_path)
    stuck.sendall(b'{"cmd": "flood"}\n')  # then never reads: the kernel buffers fill up
    assert call(sock_path, "status", timeout=1.0)
    assert daemon.slow_emit_failed.wait(5.0), "emit() kept blocking on a client that does not read"
    stuck.close()


def test_stop_ends_an_open_follow_promptly(sock_path, daemon):
    srv = ControlServer(sock_path, {}, {"follow": daemon.follow}).start()
    follow = stream(sock_path, "follow")
    next(follow)
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 1.5
    assert daemon.follow_gone.is_set()
    # the client drains what was in flight and then sees the end of the stream, not an exception
    assert all("seq" in item for item in follow)
    assert not os.path.exists(sock_path)


def test_busy_when_too_many_clients(sock_path):
    with ControlServer(sock_path, {}, max_clients=1) as srv:
        holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        holder.connect(sock_path)
        wait_for(lambda: srv.client_count() == 1, what="the first client to be admitted")
        with pytest.raises(RemoteError, match="busy") as err:
            call(sock_path, "ping")
        assert err.value.code == "busy"
        holder.close()
        wait_for(lambda: srv.client_count() == 0, what="the first client to leave")
        assert call(sock_path, "ping")
