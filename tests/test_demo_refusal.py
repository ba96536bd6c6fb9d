"""`make demo` refuses, with the reason, when its ports are taken, and never deletes a data directory
that a live daemon holds (issue 10 item 3). Refusals come before anything is started or deleted."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

from gateway.service.ownership import Ownership
from tests.test_docs_verbatim import scratch_site


def _demo(cfg):
    return subprocess.run([sys.executable, "-m", "gateway.sim.demo"], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, DEMO_CONFIG=str(cfg)))


def test_demo_never_deletes_a_data_directory_a_live_daemon_holds(tmp_path):
    cfg = scratch_site(tmp_path)
    data = tmp_path / "var" / "demo"
    data.mkdir(parents=True)
    (data / "outbox.sqlite").write_bytes(b"the running daemon's events")
    with Ownership(str(data)):
        r = _demo(cfg)
    assert r.returncode == 1
    assert f"make demo: {data} belongs to a running gateway daemon, pid {os.getpid()}" in r.stderr, r.stderr
    assert (data / "outbox.sqlite").read_bytes() == b"the running daemon's events"


def test_demo_refuses_when_a_port_of_its_simulator_is_taken(tmp_path):
    cfg = scratch_site(tmp_path)
    port = int(re.search(r'port = (\d+)\n', cfg.read_text()).group(1))  # the TCP bus (pumproom)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    try:
        r = _demo(cfg)
    finally:
        squatter.close()
    assert r.returncode == 1
    assert f"make demo: port {port} (bus pumproom: Address already in use) already in use" in r.stderr, r.stderr
    assert not (tmp_path / "var" / "demo").exists()  # nothing started, nothing written
