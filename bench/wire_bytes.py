"""Telemetry on the wire (issue 14 item 6): bytes per reading and MB per month of `gateway run` (a real
process) at 50 sensors with default settings, measured ON THE SOCKET: the daemon's MQTT connection goes
through a counting TCP proxy in this process, which splits the client->broker stream into MQTT packets
(fixed header + remaining length) and counts each whole packet (fixed header, topic, packet id,
properties, payload). A telemetry reading's bytes = the PUBLISH packets on .../event/telemetry / the
readings they carry (a batch's `readings`, or 1 for a single event). TCP/IP and TLS overhead is not in
these figures (one batch is one or two TCP segments: ~40-80 bytes per message, not per reading).

Real time by default (`--speed 1`): the lengths on the wire depend on the periods themselves (a
`period_s` of 10.002 is a byte longer than 1.001, a 30 s ms offset than a 3 s one), so compressing time
would flatter the figure; `--speed N` divides telemetry, status and commit periods by N for a quick
look. MB/month = bytes in the window x 30 x 86400 / (window x speed), PINGREQ/PINGRESP counted apart at
their real rate (keepalive 30 s). The warm-up (> one report period) leaves out each point's first
report. Two cases: every value still, and 10 of 50 sensors moving every 10 s.
`single_bytes_per_reading` is what one reading cost as its own message (contract 1), for comparison.
Target: <= 60 bytes per reading (the ThingsBoard gateway's 59.6 side by side).

    python bench/wire_bytes.py [--speed 1] [--warmup 65] [--window 180] [--sensors 50]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _daemon as D  # noqa: E402
from mosquitto import Mosquitto  # noqa: E402
from write_volume import DEFAULTS, _mover  # noqa: E402

TARGET_BYTES = 60.0
PUBLISH, PINGREQ, PINGRESP = 3, 12, 13
NAMES = {1: "connect", 2: "connack", 3: "publish", 4: "puback", 8: "subscribe", 9: "suback", 12: "pingreq",
         13: "pingresp", 14: "disconnect"}


class MqttStream:
    """Splits one direction of an MQTT 5 connection into packets and counts them."""

    def __init__(self, v5: bool = True):
        self.buf = bytearray()
        self.v5 = v5
        self.by_type: dict[str, int] = {}
        self.telemetry_bytes = self.readings = self.telemetry_messages = 0
        self.other_events: dict[str, list[int]] = {}  # event type -> [messages, bytes]
        self.sample = ""  # the start of the last telemetry payload
        self.faults: list[str] = []
        self.lock = threading.Lock()

    def feed(self, data: bytes) -> None:
        with self.lock:
            self.buf += data
            while True:
                n = self._one()
                if not n:
                    return
                del self.buf[:n]

    def _one(self) -> int:
        b = self.buf
        if len(b) < 2:
            return 0
        remaining, mult, i = 0, 1, 1
        while True:
            if i >= len(b):
                return 0
            remaining += (b[i] & 0x7F) * mult
            mult *= 128
            i += 1
            if not b[i - 1] & 0x80:
                break
        total = i + remaining
        if len(b) < total:
            return 0
        kind = b[0] >> 4
        name = NAMES.get(kind, str(kind))
        self.by_type[name] = self.by_type.get(name, 0) + total
        if kind == PUBLISH:
            self._publish(bytes(b[i:total]), (b[0] >> 1) & 3, total)
        return total

    def _publish(self, body: bytes, qos: int, total: int) -> None:
        tlen = int.from_bytes(body[:2], "big")
        topic = body[2:2 + tlen].decode()
        off = 2 + tlen + (2 if qos else 0)
        if self.v5:
            plen, mult = 0, 1
            while True:
                plen += (body[off] & 0x7F) * mult
                mult *= 128
                off += 1
                if not body[off - 1] & 0x80:
                    break
            off += plen
        payload = body[off:]
        if "/event/" not in topic:
            return
        type_ = topic.rsplit("/", 1)[1]
        if type_ == "telemetry":
            msg = json.loads(payload)
            self.telemetry_bytes += total
            self.telemetry_messages += 1
            self.readings += len(msg["readings"]) if "readings" in msg else 1
            self.sample = payload.decode()[:600]
        else:
            m = self.other_events.setdefault(type_, [0, 0])
            m[0] += 1
            m[1] += total
            if type_ == "fault" and len(self.faults) < 3:
                self.faults.append(payload.decode()[:300])  # what split the batches (a fault commits at once)


class CountingProxy:
    """127.0.0.1:port -> the broker, one MqttStream per direction (reset() starts the window)."""

    def __init__(self, broker: tuple[str, int]):
        self.broker = broker
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.up, self.down = MqttStream(), MqttStream()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        # only whole packets are counted from here: the streams keep their partial buffers
        for s in (self.up, self.down):
            with s.lock:
                s.by_type, s.other_events, s.faults = {}, {}, []
                s.telemetry_bytes = s.readings = s.telemetry_messages = 0

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.broker)
            threading.Thread(target=self._pump, args=(client, upstream, self.up), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.down), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, stream: MqttStream) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                stream.feed(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def one(n: int, moving: int, speed: float, warmup_s: float, window_s: float, broker: Mosquitto) -> dict:
    with tempfile.TemporaryDirectory(prefix="wb-") as td:
        td = Path(td)
        buses = D.sim_buses(n)
        for b in buses:
            b.start()
        proxy = CountingProxy((broker.host, broker.port))
        proc = None
        stop = threading.Event()
        try:
            cfg = D.write_config(td, buses, n, poll_s=DEFAULTS["poll_s"] / speed, broker=("127.0.0.1", proxy.port))
            cfg.write_text(cfg.read_text() + "\n[outbox]\n"
                           f"telemetry_period_s = {DEFAULTS['telemetry_period_s'] / speed}\n"
                           f"status_period_s = {DEFAULTS['status_period_s'] / speed}\n"
                           f"commit_s = {DEFAULTS['commit_s'] / speed}\n")
            log = td / "daemon.log"
            proc = D.start_daemon(cfg, log)
            D.wait_until(lambda: proc.poll() is not None or (td / "var" / "control.sock").exists(), 30,
                         interval=0.05, what="daemon up")
            if proc.poll() is not None:
                raise RuntimeError(f"gateway run exited: {log.read_text()[-2000:]}")
            if moving:
                threading.Thread(target=_mover, args=(buses, n, moving, 10.0 / speed, stop), daemon=True).start()
            time.sleep(warmup_s)
            proxy.reset()
            t0 = time.monotonic()
            time.sleep(window_s)
            t1 = time.monotonic()
            up, down = proxy.up, proxy.down
            with up.lock, down.lock:
                snap = {"up": dict(up.by_type), "down": dict(down.by_type), "telemetry_bytes": up.telemetry_bytes,
                        "readings": up.readings, "telemetry_messages": up.telemetry_messages,
                        "other_events": {k: list(v) for k, v in up.other_events.items()}, "sample": up.sample,
                        "faults": list(up.faults)}
        finally:
            stop.set()
            if proc is not None:
                D.stop_daemon(proc)
            proxy.close()
            for b in buses:
                b.stop()
    site_s = (t1 - t0) * speed  # seconds of the site's life in the window
    per_month = 30 * 86400 / site_s
    keepalive = 30.0
    pings = (2 + 2) * 30 * 86400 / keepalive  # PINGREQ + PINGRESP, at their real rate
    scaled = sum(v for k, v in snap["up"].items() if k != "pingreq") + \
        sum(v for k, v in snap["down"].items() if k != "pingresp")
    return {"sensors": n, "moving": moving, "speed": speed, "window_s": t1 - t0, "site_s": site_s, **snap,
            "bytes_per_reading": snap["telemetry_bytes"] / max(1, snap["readings"]),
            "readings_per_message": snap["readings"] / max(1, snap["telemetry_messages"]),
            "readings_per_day": snap["readings"] * 86400 / site_s,
            "telemetry_mb_month": snap["telemetry_bytes"] * per_month / 1e6,
            # a window of a few minutes holds 2 or 3 report periods by its phase: the month's telemetry at
            # the site's own rate (a report per sensor a minute, one per moving sensor every 10 s)
            "readings_per_day_expected": n * 1440 + moving * 8640,
            "telemetry_mb_month_expected": snap["telemetry_bytes"] / max(1, snap["readings"])
            * (n * 1440 + moving * 8640) * 30 / 1e6,
            "total_mb_month": (scaled * per_month + pings) / 1e6,
            "up_mb_month": (sum(v for k, v in snap["up"].items() if k != "pingreq") * per_month + pings / 2) / 1e6}


def single_bytes_per_reading(gateway_id: str = "bench-50") -> float:
    """One reading as its own message (contract 1's form), the whole QoS 1 PUBLISH packet."""
    from gateway.record import envelope

    fields = {"sensor": "w12", "point": "level", "unit": "cm", "quality": "good", "reason": "period",
              "period_s": 60.001, "count": 60, "bad": 0, "min": 21.0, "max": 21.0, "mean": 21.0, "last": 21.0}
    payload = envelope.build(gateway_id, 123456, time.time(), True, "6f1c0d1e-8a43-4c1b-9f8e-2d1b5c7a9e10",
                             "telemetry", fields).encode()
    topic = f"city/v1/{gateway_id}/event/telemetry".encode()
    remaining = 2 + len(topic) + 2 + 1 + len(payload)
    return 1 + (1 if remaining < 128 else 2) + remaining


def measure(sensors: int = 50, speed: float = 1.0, warmup_s: float = 65.0, window_s: float = 180.0) -> dict:
    with tempfile.TemporaryDirectory(prefix="wb-broker-") as bd:
        broker = Mosquitto(bd).start()
        try:
            rows = [one(sensors, moving, speed, warmup_s, window_s, broker) for moving in (0, 10)]
        finally:
            broker.close()
    return {"rows": rows, "target_bytes": TARGET_BYTES, "single_bytes_per_reading": single_bytes_per_reading(),
            "thingsboard_bytes_per_reading": 59.6}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", type=int, default=50)
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--warmup", type=float, default=65.0)
    ap.add_argument("--window", type=float, default=180.0)
    a = ap.parse_args()
    r = measure(a.sensors, a.speed, a.warmup, a.window)
    print(f"one reading as its own message (contract 1): {r['single_bytes_per_reading']:.0f} bytes of PUBLISH")
    for x in r["rows"]:
        ok = "met" if x["bytes_per_reading"] <= TARGET_BYTES else "NOT met"
        print(f"{x['sensors']} sensors, {x['moving']} moving: {x['bytes_per_reading']:.1f} bytes/reading on the socket "
              f"(target <= {TARGET_BYTES:g}: {ok}), {x['readings_per_message']:.1f} readings/message, "
              f"{x['readings_per_day']:,.0f} readings/day in the window ({x['readings_per_day_expected']:,} at the "
              f"site's rate); MB/month: telemetry {x['telemetry_mb_month_expected']:.1f} at the site's rate "
              f"({x['telemetry_mb_month']:.1f} scaled from the window), "
              f"all MQTT both ways {x['total_mb_month']:.1f} (up {x['up_mb_month']:.1f}); "
              f"packets up {x['up']}, down {x['down']}, other events {x['other_events']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
