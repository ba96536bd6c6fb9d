"""The reconnect schedule (gateway/sync/reconnect.py) as pure logic: `now` passed in, a fixed random
source, probes counted, no sockets except where a real port is the point."""

from __future__ import annotations

import socket
import threading

from gateway.sync.reconnect import Redial


def test_no_answer_keeps_the_probe_interval_however_long_the_outage():
    r = Redial("h", 1, probe_s=1.0, jitter=0.5, rng=lambda: 0.0)  # rng 0: the longest delay
    delays = [r.delay("unreachable", t) for t in range(0, 300, 10)]
    assert max(delays) == 1.0 and min(delays) == 1.0


def test_the_probe_interval_slows_once_after_ten_minutes_and_no_further():
    r = Redial("h", 1, probe_s=1.0, slow_probe_s=5.0, slow_after_s=600, jitter=0.5, rng=lambda: 0.0)
    r.delay("unreachable", 0.0)
    assert r.probe_delay(599.0) == 1.0
    assert r.probe_delay(601.0) == 5.0
    assert r.probe_delay(86_400.0 * 7) == 5.0


def test_a_broker_that_answered_no_is_backed_off_and_online_resets_it():
    r = Redial("h", 1, backoff_initial_s=1.0, backoff_max_s=60.0, jitter=0.5, rng=lambda: 0.0)
    grown = [r.delay(kind, 0.0) for kind in ("refused", "busy", "tls_error", "error", "refused", "refused",
                                              "refused", "refused")]
    assert grown == [1, 2, 4, 8, 16, 32, 60, 60]
    r.online()
    assert r.delay("busy", 0.0) == 1.0
    assert r.down_since == 0.0  # a new outage begins at the first failure after online


def test_jitter_spreads_the_delays_over_half_the_interval():
    import random

    rng = random.Random(7).random
    r = Redial("h", 1, probe_s=1.0, jitter=0.5, rng=rng)
    delays = [r.delay("unreachable", 0.0) for _ in range(2000)]
    assert 0.5 <= min(delays) < 0.52 and 0.98 < max(delays) <= 1.0
    # in 100 ms buckets across [0.5, 1.0]: each holds roughly a fifth
    buckets = [sum(1 for d in delays if 0.5 + 0.1 * i <= d < 0.6 + 0.1 * i) for i in range(5)]
    assert all(300 < b < 500 for b in buckets), buckets


def test_wait_probes_a_real_port_until_it_listens():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        r = Redial("127.0.0.1", port, probe_s=0.05, slow_probe_s=0.05, jitter=0.5)
        stop = threading.Event()
        done = threading.Event()
        t = threading.Thread(target=lambda: (r.wait("unreachable", stop), done.set()), daemon=True)
        t.start()
        assert not done.wait(0.5)  # refused probes: still waiting
        assert r.probes >= 3
        s.listen(8)
        assert done.wait(5.0), "the probe that connects ends the wait"
        stop.set()
        t.join(2)


def test_without_a_probe_the_wait_is_one_interval():
    r = Redial("h", 1, probe_s=0.05, slow_probe_s=0.05, probe=False)
    stop = threading.Event()
    r.wait("offline", stop)
    assert r.probes == 0 and r.next_retry is None


def test_a_broker_that_says_server_busy_is_backed_off_not_probed():
    """A listener that answers every CONNECT with an MQTT 5 CONNACK 0x89 (Server busy): the uplink's
    state says so, its tries are a growing backoff, and it never probes (the broker is there)."""
    import time

    from gateway.config.model import Uplink as UplinkConfig
    from gateway.record import Outbox
    from gateway.sync import Uplink
    from tests.mosquitto import wait_for

    connects: list[float] = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            with c:
                c.settimeout(2)
                try:
                    if c.recv(1024)[:1] == b"\x10":  # CONNECT
                        connects.append(time.monotonic())
                        c.sendall(bytes([0x20, 0x03, 0x00, 0x89, 0x00]))  # CONNACK, reason 0x89, no properties
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        ob = Outbox(f"{d}/o.db", "busy-gw")
        up = Uplink(UplinkConfig(host="127.0.0.1", port=srv.getsockname()[1]), ob, "busy-gw", {},
                    backoff_initial_s=0.1, backoff_max_s=60.0).start()
        try:
            wait_for(lambda: len(connects) >= 5, 30, what="five CONNECTs")
            st = up.status()
            assert st["state"] == "busy" and "shedding load" in st["last_error"], st
            assert st["probes"] == 0
            gaps = [b - a for a, b in zip(connects, connects[1:])]
            # 0.1, 0.2, 0.4, 0.8 s, each scaled by [0.5, 1]: the last gap is longer than the first
            assert gaps[-1] > gaps[0] and gaps[-1] >= 0.4, gaps
        finally:
            up.stop()
            ob.close()
            stop.set()
            t.join(2)
            srv.close()
