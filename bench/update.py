"""A signed update on this machine (issue 14): release 0.1.0 built from this tree and installed as
install.sh does, its daemon under the launcher and a Restart=always stand-in (tests/update/servicekit.py),
a red flood sounding the siren (sim GPIO recording every edge); then `gateway update` with a real bundle
of 0.2.0 (a copy of the tree with the version bumped, every dependency wheel). Measured per round:

- command -> healthy: from starting `gateway update` to the launcher journalling `healthy` (verify,
  offline venv install, switch, restart, health gate), and its parts;
- relay undriven: from the siren's OFF edge as the old daemon stops to its ON edge once the new one has
  restored the alarm (target: nothing beyond the restore, <= 1 s); and the restore after the new
  daemon's exec.

Wheels are cached by content (tests/update/releasekit.py); the first run builds them."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests" / "update")]

PIN = 17


def _siren(var: Path) -> list[dict]:
    f = var / "pins.jsonl"
    out = []
    for line in (f.read_text().splitlines() if f.exists() else []):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e["pin"] == PIN:
            out.append(e)
    return out


def _round(work: Path) -> dict:
    from releasekit import dependency_wheels, gateway_wheel, release_bundle
    from servicekit import Service, wait_for

    from drivers.sim.modbus_device import SimBus
    from gateway.config import load_config
    from gateway.platform.keys import keygen
    from gateway.update import journal as J
    from gateway.update import releases as R
    from gateway.update.install import install_release
    from gateway.update.launcher import ask_status
    from tests.daemonkit import write_config

    key, _ = keygen(str(work / "release"))
    lay = R.Layout(str(work / "opt"), str(work / "var"))
    os.makedirs(lay.data_dir)
    wheels = work / "wheels-0.1.0"
    wheels.mkdir()
    for w in [*dependency_wheels().glob("*.whl"), gateway_wheel("0.1.0")]:
        os.link(w, wheels / w.name)
    install_release(lay, "0.1.0", str(wheels), {"gateway_wheel": f"wheels/{gateway_wheel('0.1.0').name}"})
    R.switch(lay, "0.1.0")
    bundle = release_bundle(work, "0.2.0", key, min_version="0.1.0")
    with SimBus.tcp("127.0.0.1", 0) as sim:
        conf = write_config(work, "bench-gw", sim.port, extra=f"""
            [updates]
            release_keys = ["./release.pub"]
            health_s = 120
            probation_s = 2  # the figures below are switch -> healthy + this probation
            install_root = "{lay.install_root}"
            """)
        sim.add_device(1, load_config(conf).sensors["garage-b2-water"].profile, {"level": 45.0})
        sock = str(work / "var" / "control.sock")
        svc = Service(lay, args=("run", "-c", conf), socket=sock, restart_s=2.0).start()  # RestartSec=2

        def healthy(v):
            try:
                st = ask_status(sock, timeout=2)
            except (OSError, ValueError):
                return False
            return st.get("release") == v and st["health"]["healthy"]
        try:
            wait_for(lambda: healthy("0.1.0"), 120, "0.1.0 healthy")
            wait_for(lambda: (s := _siren(lay and Path(lay.data_dir))) and s[-1]["value"] == 0, 30, "siren on")
            n = len(_siren(Path(lay.data_dir)))
            t0 = time.time()
            r = subprocess.run([lay.gateway_bin("0.1.0"), "update", str(bundle), "-c", conf], capture_output=True,
                               text=True, timeout=900, cwd=work)
            t_cli = time.time() - t0
            if r.returncode != 0:
                raise RuntimeError(f"gateway update failed: {r.stdout}{r.stderr}")
            wait_for(lambda: (s := _siren(Path(lay.data_dir))[n:]) and s[-1]["value"] == 0, 30, "siren on again")
        finally:
            svc.stop()
        steps = {e["step"]: e["ts"] for e in J.Journal(lay.journal_path).entries()}
        edges = _siren(Path(lay.data_dir))[n:]
        off = next(e["t"] for e in edges if e["value"] == 1)
        on = next(e["t"] for e in edges if e["value"] == 0 and e["t"] > off)
        return {"to_healthy_s": steps["healthy"] - t0, "cli_s": t_cli,
                "verify_s": steps["verified"] - t0, "install_s": steps["installed"] - steps["installing"],
                "switch_to_healthy_s": steps["healthy"] - steps["switched"],
                "undriven_s": on - off, "restore_after_exec_s": on - steps["started"]}


def measure(rounds: int = 3) -> dict:
    runs = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="bench-update-") as tmp:
            runs.append(_round(Path(tmp)))
    keys = runs[0].keys()
    return {"rounds": rounds, "runs": runs, **{f"{k}_median": statistics.median(r[k] for r in runs) for k in keys},
            **{f"{k}_max": max(r[k] for r in runs) for k in keys}}


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1), indent=2))
