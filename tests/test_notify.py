"""sd_notify and the loop-aware watchdog against a fake systemd: a real AF_UNIX datagram socket
bound where $NOTIFY_SOCKET points, as systemd does for a Type=notify service."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

import pytest

from gateway.service.notify import Watchdog, sd_notify, watchdog_interval


class FakeSystemd:
    def __init__(self, address: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)

    def next(self, timeout=3.0) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode()

    def wait_for(self, message: str, timeout=3.0) -> list[str]:
        """Every datagram up to and including `message`."""
        seen, deadline = [], time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            seen.append(self.next(left))
            if seen[-1] == message:
                return seen
        raise AssertionError(f"{message!r} never arrived; got {seen}")

    def silent_for(self, message: str, seconds: float) -> bool:
        """True when `message` does not arrive within `seconds` (other datagrams are fine)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                if self.next(left) == message:
                    return False
            except TimeoutError:
                return True
        return True

    def close(self):
        self.sock.close()


@pytest.fixture
def systemd(tmp_path, monkeypatch):
    address = str(tmp_path / "notify")
    fake = FakeSystemd(address)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    yield fake
    fake.close()


def test_without_notify_socket_it_is_a_quiet_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False


def test_abstract_namespace_address(monkeypatch):
    name = f"gw-test-{uuid.uuid4().hex}"
    fake = FakeSystemd("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify("READY=1") is True
        assert fake.next() == "READY=1"
    finally:
        fake.close()


def test_vanished_systemd_socket_does_not_raise(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    with caplog.at_level(logging.WARNING, logger="gateway.service.notify"):
        assert sd_notify("WATCHDOG=1") is False
    assert "sd_notify 'WATCHDOG' failed" in caplog.text


def test_interval_is_half_of_watchdog_usec():
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0


def test_ready_status_and_stopping(systemd):
    dog = Watchdog()  # no WATCHDOG_USEC: readiness still works, no feeding thread
    assert not dog.enabled
    assert dog.ready("2 buses up, 5 sensors") is True
    assert systemd.next() == "READY=1\nSTATUS=2 buses up, 5 sensors"
    dog.status("uplink offline, 12 events queued")
    assert systemd.next() == "STATUS=uplink offline, 12 events queued"
    dog.stopping()
    assert systemd.next() == "STOPPING=1"


def test_watchdog_fed_while_loops_beat_and_withheld_when_one_hangs(systemd, monkeypatch, caplog):
    monkeypatch.setenv("WATCHDOG_USEC", "40000")  # feed every 20 ms
    dog = Watchdog(min_allowed_s=0.2)
    assert dog.interval_s == pytest.approx(0.02)
    bus = dog.register("bus rtu1", period_s=0.02)
    decide = dog.register("decide", period_s=0.02)
    dog.start()
    try:
        # both loops alive: WATCHDOG=1 keeps coming
        for _ in range(5):
            bus.beat()
            decide.beat()
            systemd.wait_for("WATCHDOG=1", timeout=1.0)
        # the bus loop hangs (stuck in a serial read); the decision loop carries on
        with caplog.at_level(logging.ERROR, logger="gateway.service.notify"):
            deadline = time.monotonic() + 3.0
            while not dog.stale() and time.monotonic() < deadline:
                decide.beat()
                time.sleep(0.01)
            assert [name for name, _ in dog.stale()] == ["bus rtu1"]
            while True:  # drain feeds sent before the staleness was noticed
                try:
                    systemd.next(timeout=0.1)
                except TimeoutError:
                    break
            assert systemd.silent_for("WATCHDOG=1", 0.3), "fed systemd although the bus loop hung"
        withheld = [r for r in caplog.records if "withholding the systemd watchdog" in r.getMessage()]
        assert len(withheld) == 1 and "'bus rtu1'" in withheld[0].getMessage()
        # the loop recovers: feeding resumes
        bus.beat()
        decide.beat()
        systemd.wait_for("WATCHDOG=1", timeout=1.0)
    finally:
        dog.stopping()
    assert systemd.wait_for("STOPPING=1")[-1] == "STOPPING=1"
    assert dog._thread is None


def test_retired_heart_no_longer_counts():
    sent = []
    now = [100.0]
    dog = Watchdog(notify=lambda m: sent.append(m) or True, interval_s=1.0, clock=lambda: now[0])
    old_bus = dog.register("bus removed-by-reload", period_s=1.0)
    now[0] += 10
    assert dog.feed_once() is False and sent == []
    old_bus.retire()
    assert dog.feed_once() is True and sent == ["WATCHDOG=1"]


def test_allowance_is_three_periods_or_the_minimum():
    dog = Watchdog(notify=lambda m: True, interval_s=1.0)
    assert dog.register("fast", period_s=0.1).allowed_s == 2.0
    assert dog.register("slow", period_s=5.0).allowed_s == 15.0
    assert dog.register("explicit", period_s=5.0, allowed_s=4.0).allowed_s == 4.0
