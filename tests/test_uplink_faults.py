"""The uplink when things are wrong: TLS (mTLS against a mosquitto that requires client certificates,
certificates made by the test), plaintext against a TLS port, refused credentials, a message over the
broker's size limit, MQTT 3.1.1; plus the pacing and backoff arithmetic."""

import re

import pytest

from gateway.config.model import Tls
from gateway.config.model import Uplink as UplinkConfig
from gateway.errors import UplinkError
from gateway.platform import Receiver
from gateway.record import Event, Outbox
from gateway.record.outbox import FAILED
from gateway.sync import Backoff, TokenBucket, Uplink
from mosquitto import Mosquitto, TlsFiles, make_tls_files, wait_for

GW = "gw-faults"


def telemetry(i):
    return {"sensor": "water-1", "point": "level", "unit": "cm", "quality": "good", "reason": "period",
            "period_s": 60.0, "count": 1, "min": i, "max": i, "mean": i, "last": i}


def uplink(outbox, host, port, **cfg):
    return Uplink(UplinkConfig(host=host, port=port, replay_per_s=10_000, **cfg), outbox, GW,
                  {"firmware": "t", "config_hash": "h", "sensors": []}, backoff_initial_s=0.1, backoff_max_s=0.3)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    return make_tls_files(d / "good") | {"wrong_name": make_tls_files(d / "wrong", hostname="gateway.invalid")}


@pytest.fixture
def tls_broker(tmp_path, certs):
    b = Mosquitto(tmp_path / "broker", tls=TlsFiles(certs["ca"], certs["server_cert"], certs["server_key"])).start()
    yield b
    b.close()


def test_mutual_tls_delivers(tmp_path, tls_broker, certs):
    rx = Receiver(tls_broker.host, tls_broker.port).start()  # the platform on the plain listener
    ob = Outbox(tmp_path / "o.db", GW)
    ob.add_many([Event("telemetry", telemetry(i)) for i in range(20)])
    up = uplink(ob, "127.0.0.1", tls_broker.tls_port,
                tls=Tls(ca=certs["ca"], cert=certs["client_cert"], key=certs["client_key"])).start()
    try:
        wait_for(lambda: len(rx.events) == 20, 10, what="events over mTLS")
        st = up.status()
    finally:
        up.stop()
        rx.stop()
    assert st["tls"] and st["state"] == "online" and not rx.invalid


@pytest.mark.parametrize("case, tls, message", [
    ("plaintext to the TLS port", None, "TLS-only port"),
    ("unknown CA", "other_ca", "CERTIFICATE_VERIFY_FAILED"),
    ("no client certificate", "no_cert", "closed the connection|TLS"),
])
def test_tls_failures_are_loud_errors_never_a_plaintext_fallback(tmp_path, tls_broker, certs, caplog,
                                                                 case, tls, message):
    ob = Outbox(tmp_path / "o.db", GW)
    ob.add("telemetry", telemetry(1))
    cfg = {None: None, "other_ca": Tls(ca=certs["other_ca"], cert=certs["client_cert"], key=certs["client_key"]),
           "no_cert": Tls(ca=certs["ca"])}[tls]
    up = uplink(ob, "127.0.0.1", tls_broker.tls_port, tls=cfg).start()
    try:
        wait_for(lambda: up.status()["attempts"] >= 2, 10, what="a retry")
        st = up.status()
    finally:
        up.stop()
    assert st["state"] in ("tls_error", "unreachable") and st["connects"] == 0, st
    assert re.search(message, st["last_error"]), st["last_error"]
    assert ob.stats()["pending"] == 1  # still buffered
    assert any(r.levelname == "ERROR" and "uplink" in r.getMessage() for r in caplog.records)


def test_tls_hostname_is_checked(tmp_path, certs):
    wrong = certs["wrong_name"]
    broker = Mosquitto(tmp_path / "broker", tls=TlsFiles(wrong["ca"], wrong["server_cert"], wrong["server_key"]))
    broker.start()
    ob = Outbox(tmp_path / "o.db", GW)
    up = uplink(ob, "127.0.0.1", broker.tls_port,
                tls=Tls(ca=wrong["ca"], cert=wrong["client_cert"], key=wrong["client_key"])).start()
    try:
        wait_for(lambda: up.status()["last_error"], 10, what="the TLS error")
        st = up.status()
    finally:
        up.stop()
        broker.close()
    assert st["state"] == "tls_error" and "mismatch" in st["last_error"], st


def test_missing_tls_files_are_reported_and_retried(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    up = uplink(ob, "127.0.0.1", 1, tls=Tls(ca=str(tmp_path / "nope.pem"))).start()
    try:
        wait_for(lambda: up.status()["attempts"] >= 2, 10, what="a retry")
    finally:
        up.stop()
    assert up.status()["last_error"].startswith("TLS files unusable")


def test_refused_credentials_keep_buffering_and_retry_with_backoff(tmp_path):
    broker = Mosquitto(tmp_path / "broker", users={"gw": "right"}).start()
    ob = Outbox(tmp_path / "o.db", GW)
    ob.add_many([Event("telemetry", telemetry(i)) for i in range(5)])
    bad = uplink(ob, broker.host, broker.port, username="gw", password="wrong").start()
    try:
        wait_for(lambda: bad.status()["attempts"] >= 3, 10, what="retries")
        st = bad.status()
    finally:
        bad.stop()
    assert st["state"] == "refused" and "refused the credentials of 'gw'" in st["last_error"]
    assert st["connects"] == 0 and ob.stats()["pending"] == 5
    rx = Receiver(broker.host, broker.port, username="gw", password="right").start()
    good = uplink(ob, broker.host, broker.port, username="gw", password="right").start()
    try:
        wait_for(lambda: len(rx.events) == 5, 10, what="delivery with the right password")
    finally:
        good.stop()
        rx.stop()
        broker.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_message_over_the_broker_limit_does_not_wedge_the_queue(tmp_path, protocol):
    broker = Mosquitto(tmp_path / "broker", message_size_limit=4000).start()
    rx = Receiver(broker.host, broker.port).start()
    ob = Outbox(tmp_path / "o.db", GW)
    ob.add_many([Event("telemetry", telemetry(i)) for i in range(30)])
    big = ob.add("audit", {"action": "upload", "detail": "x" * 10_000})
    ob.add_many([Event("telemetry", telemetry(i)) for i in range(30)])
    up = uplink(ob, broker.host, broker.port, protocol=protocol).start()
    try:
        if protocol == "5":
            wait_for(lambda: rx.of_type("fault"), 20, what="the fault about the refused message")
            wait_for(lambda: ob.stats()["pending"] == 0, 20, what="the queue to drain past it")
            (fault,) = rx.of_type("fault")
            assert fault["component"] == "uplink" and fault["failed_seq"] == big
            assert ob.db.execute("SELECT state FROM events WHERE seq = ?", (big,)).fetchone()[0] == FAILED
            assert up.status()["poison"] == 1
            # PUBACK comes from the broker, the receiver's copy a moment later; the fault (higher
            # priority) may reach it before the telemetry queued behind the refused message
            wait_for(lambda: len(rx.of_type("telemetry")) == 60, 20, what="the receiver to get every telemetry event")
            assert rx.undeclared_gaps() == []  # the refused seq is declared by the fault
        else:
            # MQTT 3.1.1 has no reason codes: mosquitto PUBACKs and drops the message; the rest
            # must still flow
            wait_for(lambda: ob.stats()["pending"] == 0, 20, what="the queue to drain")
        wait_for(lambda: len(rx.of_type("telemetry")) == 60, 10, what="all telemetry at the platform")
        assert big not in rx.seqs()
    finally:
        up.stop()
        rx.stop()
        broker.close()
    assert not rx.invalid


def test_local_size_limit_marks_failed_without_sending(tmp_path):
    broker = Mosquitto(tmp_path / "broker").start()
    rx = Receiver(broker.host, broker.port).start()  # someone to take the fault (no subscriber: PUBACK 0x10, held)
    ob = Outbox(tmp_path / "o.db", GW)
    big = ob.add("audit", {"action": "upload", "detail": "x" * 5000})
    up = Uplink(UplinkConfig(host=broker.host, port=broker.port), ob, GW, {}, max_message_bytes=2000).start()
    try:
        wait_for(lambda: ob.stats()["pending"] == 0, 10, what="the poison and its fault")
    finally:
        up.stop()
        rx.close()
        broker.close()
    assert ob.db.execute("SELECT reason FROM events WHERE seq = ?", (big,)).fetchone()[0].endswith("-byte limit")


def test_unknown_protocol_is_a_config_error(tmp_path):
    with pytest.raises(UplinkError, match="protocol"):
        Uplink(UplinkConfig(host="h", protocol="4"), Outbox(tmp_path / "o.db", GW), GW)


def test_status_is_cheap_and_complete_while_offline(tmp_path):
    ob = Outbox(tmp_path / "o.db", GW)
    ob.add("alarm", {"sensor": "s", "point": "p", "transition": "raised", "level": "red", "state": "active"})
    up = uplink(ob, "127.0.0.1", 1).start()
    try:
        wait_for(lambda: up.status()["outbox"].get("pending") == 1, 5, what="the outbox snapshot")
        st = up.status()
    finally:
        up.stop()
    assert st["outbox"]["depth"]["alarm"] == 1 and st["outbox"]["oldest_pending_age_s"] >= 0
    for key in ("state", "last_error", "inflight", "resent", "delivered", "poison", "thread_alive"):
        assert key in st


# -- pacing arithmetic ---------------------------------------------------------------------------
def test_backoff_doubles_with_jitter_and_caps_at_60_s():
    b = Backoff(1.0, 60.0, rng=lambda: 0.0)
    assert [b.next() for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    b = Backoff(1.0, 60.0, rng=lambda: 1.0)
    assert [b.next() for _ in range(3)] == [0.5, 1.0, 2.0]
    b.reset()
    assert b.next() == 0.5
    b = Backoff(1.0, 600.0)
    assert all(d <= 600 for d in (b.next() for _ in range(20)))


def test_token_bucket_paces():
    now = [0.0]
    bucket = TokenBucket(10, burst=2, clock=lambda: now[0])
    assert bucket.take() and bucket.take() and not bucket.take()
    assert bucket.wait_s() == pytest.approx(0.1)
    now[0] += 0.1
    assert bucket.take() and not bucket.take()
    now[0] += 100
    assert sum(bucket.take() for _ in range(10)) == 2  # never more than the burst


def test_a_bug_in_our_own_callback_never_poisons_the_message_in_flight(tmp_path):
    """Found merging fleet-sim with batched publishing: an exception in an on_publish callback ends
    the session (paho re-raises it from loop()), and the Sender counted that as "the broker closed
    the connection each time this message was sent": a live alarm alone in flight was marked
    failed after two such sessions and never reached the platform. A bug of ours is not the
    message's fault: it is retried (and logged), never poisoned."""
    class Buggy(Uplink):
        fails = 4

        def _on_publish(self, client, userdata, mid, reason_code, properties):
            if Buggy.fails > 0:
                Buggy.fails -= 1
                raise AttributeError("'list' object has no attribute 'seq'")
            super()._on_publish(client, userdata, mid, reason_code, properties)

    with Mosquitto(tmp_path / "broker") as broker:
        rx = Receiver(broker.host, broker.port).start()
        ob = Outbox(tmp_path / "o.db", GW)
        seq = ob.add("alarm", {"alarm": "w.level#1", "rule": "w.level", "sensor": "w", "point": "level",
                               "transition": "raised", "level": "red", "previous_level": None, "value": 50.0,
                               "unit": "cm", "state": "active"})
        up = Buggy(UplinkConfig(host=broker.host, port=broker.port, replay_per_s=10_000), ob, GW,
                   {"firmware": "t", "config_hash": "h", "sensors": []}, backoff_initial_s=0.05,
                   backoff_max_s=0.1, probe_s=0.05).start()
        try:
            def settled():
                s = up.status()
                return s if s["delivered"] >= 1 or s["poison"] > 0 else None
            st = wait_for(settled, 20, what="the alarm's PUBACK handled, once our callback stops failing")
        finally:
            up.stop()
            rx.stop()
    assert st["poison"] == 0 and st["delivered"] == 1 and Buggy.fails == 0, st
    assert seq in rx.seqs() and ob.stats()["failed"] == 0 and ob.stats()["pending"] == 0
