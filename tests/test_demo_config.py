"""Issue 2's done-when, as a test: with `gateway sim -c config/demo.toml` running,
`gateway read -c config/demo.toml --json` gives a good value for every configured point."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from gateway.config import load_config
from tests.ptys import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "config", "demo.toml")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def test_sim_serves_every_point_of_the_demo_and_read_gets_them_good():
    cfg = load_config(DEMO)
    sim = subprocess.Popen([sys.executable, "-m", "gateway.cli", "sim", "-c", DEMO, "--scenario", "normal"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: all(_listening(p) for p in (15020, 15021, 15022)) or sim.poll() is not None,
                   timeout=20, what="the simulator listening")
        assert sim.poll() is None, sim.stdout.read()

        def read():
            r = subprocess.run([sys.executable, "-m", "gateway.cli", "read", "-c", DEMO, "--json", "--direct"],
                               capture_output=True, text=True, timeout=60)
            return r, [json.loads(line) for line in r.stdout.splitlines()]

        # the A02YYUW streams: the first read may come before its first frame
        wait_until(lambda: read()[0].returncode == 0, timeout=20, what="every point good")
        r, lines = read()
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(15)
    expected = {(s.name, p.name) for s in cfg.sensors.values() for p in s.profile.points}
    assert {(d["sensor"], d["point"]) for d in lines} == expected
    assert all(d["quality"] == "good" and d["value"] is not None for d in lines), lines


def test_make_demo_shows_the_flood_sounding_and_clearing_the_siren():
    env = dict(os.environ, DEMO_SPEED="4")  # red must outlast the 3 s debounce in wall time
    r = subprocess.run([sys.executable, "-m", "gateway.sim.demo"], capture_output=True, text=True, timeout=120,
                       env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "relay garage-siren GPIO17 ON" in out
    assert out.index("escalated level=orange->red") < out.index("cleared")
    assert "siren off  alarms: none" in out.split("cleared")[-1]
    assert "voice garage-voice: 地下车库B2积水已退去，预警解除。" in out.split("cleared")[-1]  # it speaks (issue 13)
    assert len(list((Path(ROOT) / "var" / "demo" / "voice").glob("*.wav"))) >= 2  # the rendered clips
    assert "Traceback" not in out + r.stderr
