"""Fixtures of the fault-injection suite: a broker, the reference receiver, gateway processes that are
always stopped, and the `soak` marker (long variants, run with SOAK=1 or `make soak`)."""

from __future__ import annotations

import pytest

from faultkit import REPORT, GatewayProcess, env_flag
from gateway.platform import Receiver
from tests.mosquitto import Mosquitto

SOAK = env_flag("SOAK")


def pytest_configure(config):
    config.addinivalue_line("markers", "soak: long fault-injection variants; run with SOAK=1 (make soak)")


def pytest_collection_modifyitems(config, items):
    if SOAK:
        return
    skip = pytest.mark.skip(reason="soak variant: runs only with SOAK=1 (make soak)")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if REPORT:
        terminalreporter.section("fault-injection figures")
        for line in REPORT:
            terminalreporter.write_line(line)


@pytest.fixture
def broker(tmp_path):
    """A mosquitto with persistence: sessions survive the stop()/start() of an outage."""
    b = Mosquitto(tmp_path / "broker", persistence=True).start()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def receiver(broker):
    """The platform, with a persistent session: when the broker comes back, what the gateway publishes
    before the receiver has re-subscribed is queued for it instead of dropped between the two."""
    rx = Receiver(broker.host, broker.port, session="platform-faults").start()
    try:
        yield rx
    finally:
        rx.close()


@pytest.fixture
def gateways():
    """Factory: gateways(config_path, log_path, prefix=()) -> a started GatewayProcess, stopped at teardown
    (its log tail is printed when the test failed, which pytest shows with the failure)."""
    made: list[GatewayProcess] = []

    def make(config_path, log_path, prefix=()) -> GatewayProcess:
        gp = GatewayProcess(config_path, log_path, prefix).start()
        made.append(gp)
        return gp

    yield make
    for gp in made:
        try:
            gp.stop()
        except Exception:  # teardown must reach every process
            gp.kill9()
        print(f"--- daemon log tail ({gp.log_path}) ---\n{gp.log_tail(60)}")
