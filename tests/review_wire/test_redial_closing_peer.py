"""Review of the wire merge (review-wire): reconnect probing (gateway/sync/reconnect.py) against a
peer that accepts TCP and closes before CONNACK (a load balancer or TLS terminator in front of a
broker that is down, a broker at max_connections). The failure is classed "unreachable" (uplink.py
_connect), the TCP probe connects at once, so the full MQTT session (a TLS handshake in the field) is
retried every probe_s (~1 s), for ever, by every gateway of the fleet: the exponential backoff the
docstring promises for "the other end answered no" never starts. Fails on main bb84831."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.config.model import Uplink as UplinkConfig  # noqa: E402
from gateway.record import Outbox  # noqa: E402
from gateway.sync import Uplink  # noqa: E402
from test_uplink import BIRTH, GW  # noqa: E402


def test_a_peer_that_closes_before_connack_is_not_redialled_every_second(tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.2)
    port = srv.getsockname()[1]
    stop = threading.Event()
    sessions = []  # connections that sent bytes (an MQTT CONNECT), not bare probes

    def serve():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            c.settimeout(0.3)
            try:
                if c.recv(16):
                    sessions.append(time.monotonic())
            except OSError:
                pass
            c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    ob = Outbox(tmp_path / "o.db", GW)
    up = Uplink(UplinkConfig(host="127.0.0.1", port=port), ob, GW, BIRTH).start()
    try:
        time.sleep(12.0)  # a window to count attempts in, not a wait for a condition
    finally:
        up.stop()
        stop.set()
        t.join(2)
        srv.close()
        ob.close()
    # backoff 1, 2, 4, 8 s (jittered down to half): at most ~6 full sessions in 12 s
    assert len(sessions) <= 6, f"{len(sessions)} full MQTT sessions in 12 s against a peer that always closes"
