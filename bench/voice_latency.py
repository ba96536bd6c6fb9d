"""Voice and Modbus outputs beside the relay: does the safety path pay for them, and how long from a
reading to the start of playback and to a confirmed Modbus write.

Two safety loops as in the daemon (20 ms tick, simulated pins): one with the relay alone, one with the
relay plus a voice output (alsa backend: real espeak-ng clip rendered beforehand, real aplay on ALSA's
`null` device) and a Modbus coil output on a real simulated slave (Modbus TCP, served by pymodbus, the
bus loop writing ahead of its polls). For each alarm a red reading is submitted and the relay edge is
timed from the pin history, then a calm reading clears it. Overhead = p99(with) - p99(relay alone),
target <= 5 ms. Playback start = the worker's Popen of aplay after the safety loop's request; Modbus =
the safety loop's request -> write echoed and read back.

    python bench/voice_latency.py [--alarms 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.siren_latency import pct  # noqa: E402
from drivers.gpio.sim import SimGpio  # noqa: E402
from drivers.sim.modbus_device import SimBus  # noqa: E402
from drivers.tcp import TcpLink  # noqa: E402
from drivers.voice.alsa import AlsaVoice  # noqa: E402
from gateway.acquire.writes import ModbusOutlet, OutputWrites  # noqa: E402
from gateway.act import SafetyCore, SafetyLoop, Sirens  # noqa: E402
from gateway.act.voice import VoiceWorker  # noqa: E402
from gateway.config.model import PATTERNS, VOICE_PATTERNS, ModbusWrite, Output, Rule, VoiceSpec  # noqa: E402
from gateway.decide import AlarmBook  # noqa: E402
from gateway.reading import Reading  # noqa: E402

TARGET_OVERHEAD_MS = 5.0
RED = "地下车库B2积水已达红色预警，请勿进入车库。"
SIREN = Output("garage-siren", 17, pattern={"red": PATTERNS["steady"]}, max_on_s=3600)
VOICE = Output("lobby-voice", None, kind="voice", voice=VoiceSpec("alsa", device="null"), max_on_s=3600,
               pattern={"red": VOICE_PATTERNS["repeat"]})
SOUNDER = Output("stair-sounder", None, kind="modbus", modbus=ModbusWrite("plant", 9, coil=0), max_on_s=3600,
                 pattern={"red": PATTERNS["steady"]})


def _edges(loop, pins, rule, alarms: int, before=None, after=None) -> list[float]:
    out = []
    for _ in range(alarms):
        for value in (45.0, 0.0):
            counts = before() if before else None
            n = pins.change_count
            t0 = time.time()
            loop.submit(Reading(rule.sensor, rule.point, value, "cm", "good", t0, time.monotonic()))
            if not pins.wait_for(lambda p: p.change_count > n, timeout=5.0):
                raise RuntimeError("the relay did not switch within 5 s")
            out.append((pins.history(17)[-1]["t"] - t0) * 1000)
            if after:
                after(value, counts)
    return out


def _pump(writes: OutputWrites, link, stop):
    """The bus loop's part, as in gateway/acquire/bus_loop.py: serve writes when due."""
    while not stop.is_set():
        writes.ready.wait(0.05)
        writes.serve(link)


def measure(alarms: int = 300) -> dict:
    import threading

    rule_alone = Rule("garage-b2-water", "level", above={"red": 40}, sound=("garage-siren",))
    pins = SimGpio()
    loop = SafetyLoop(SafetyCore(AlarmBook([rule_alone]), Sirens([SIREN], pins)), tick_s=0.02).start()
    try:
        alone = _edges(loop, pins, rule_alone, alarms)
    finally:
        loop.stop()

    rule = Rule("garage-b2-water", "level", above={"red": 40},
                sound=("garage-siren", "lobby-voice", "stair-sounder"), say={"red": RED})
    with tempfile.TemporaryDirectory() as tmp, SimBus.tcp("127.0.0.1", 0) as sim:
        sim.add_device(9, None, coils=1)
        backend = AlsaVoice("null", tmp)
        backend.prepare([RED])  # as the worker does at start: the clip exists before any alarm
        worker = VoiceWorker("lobby-voice", backend, [RED]).start()
        writes = OutputWrites("plant")
        writes.add("stair-sounder", unit=9, coil=0)
        link = TcpLink("plant", "127.0.0.1", sim.port)
        link.open()
        stop = threading.Event()
        pump = threading.Thread(target=_pump, args=(writes, link, stop), daemon=True)
        pump.start()
        pins = SimGpio()
        core = SafetyCore(AlarmBook([rule]), Sirens([SIREN, VOICE, SOUNDER], pins,
                                                    {"lobby-voice": worker,
                                                     "stair-sounder": ModbusOutlet("stair-sounder", writes)}))
        loop = SafetyLoop(core, tick_s=0.02).start()
        playback, modbus = [], []

        def counts():
            return worker.spoken, writes.confirmed_count

        def settle(value, before):
            n, m = before
            if value > 40:  # wait for the worker and the bus so each alarm measures its own
                deadline = time.monotonic() + 5
                while worker.spoken == n and time.monotonic() < deadline:
                    time.sleep(0.001)
                asked, started, _ = worker.started[-1]
                playback.append((started - asked) * 1000)
            deadline = time.monotonic() + 5
            while writes.confirmed_count == m and time.monotonic() < deadline:
                time.sleep(0.001)
            _, _, asked, done = writes.confirmed[-1]
            modbus.append((done - asked) * 1000)

        try:
            with_outputs = _edges(loop, pins, rule, alarms, before=counts, after=settle)
        finally:
            loop.stop()
            worker.stop(5)
            stop.set()
            writes.ready.set()
            pump.join(5)
            link.close()
    res = {"alarms": alarms, "alone_p99_ms": pct(alone, 99), "with_p99_ms": pct(with_outputs, 99),
           "alone_p50_ms": statistics.median(alone), "with_p50_ms": statistics.median(with_outputs),
           "playback_p50_ms": statistics.median(playback), "playback_p99_ms": pct(playback, 99),
           "playback_max_ms": max(playback), "modbus_p50_ms": statistics.median(modbus),
           "modbus_p99_ms": pct(modbus, 99), "target_overhead_ms": TARGET_OVERHEAD_MS}
    res["overhead_p99_ms"] = res["with_p99_ms"] - res["alone_p99_ms"]
    return res


def report(res: dict) -> bool:
    ok = res["overhead_p99_ms"] <= TARGET_OVERHEAD_MS
    print(f"relay edge, relay alone: p50 {res['alone_p50_ms']:.3f} ms  p99 {res['alone_p99_ms']:.3f} ms")
    print(f"relay edge, + voice + Modbus outputs: p50 {res['with_p50_ms']:.3f} ms  p99 {res['with_p99_ms']:.3f} ms"
          f"  (overhead {res['overhead_p99_ms']:+.3f} ms, target <= {TARGET_OVERHEAD_MS:g}: {'ok' if ok else 'MISSED'})")
    print(f"request -> aplay started: p50 {res['playback_p50_ms']:.2f} ms  p99 {res['playback_p99_ms']:.2f} ms"
          f"  max {res['playback_max_ms']:.2f} ms")
    print(f"request -> Modbus write confirmed (TCP): p50 {res['modbus_p50_ms']:.2f} ms  p99 {res['modbus_p99_ms']:.2f} ms")
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alarms", type=int, default=300)
    args = ap.parse_args(argv)
    return 0 if report(measure(args.alarms)) else 1


if __name__ == "__main__":
    sys.exit(main())
