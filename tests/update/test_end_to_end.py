"""An update from one real release to another, built from this tree (a copy with the version bumped):
release 0.1.0 installed as install.sh does (releases/0.1.0, current, the launcher), its daemon under a
Restart=always stand-in with a flood sounding the siren; `gateway update` (release 0.1.0's own CLI)
to 0.2.0: verified, installed offline, switched, restarted, healthy; the alarm sounds again at once in
the new daemon and every step is an audit event. Then two broken releases: one that crashes at start
(0.3.0) and one whose buses never come up (0.3.1): each rolled back to 0.2.0 by itself, reported, the
siren sounding throughout."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from releasekit import BROKEN_START, BUSES_NEVER_UP, dependency_wheels, gateway_wheel, release_bundle
from servicekit import Service, wait_for
from drivers.sim.modbus_device import SimBus
from gateway.config import load_config
from gateway.update import journal as J
from gateway.update import releases as R
from gateway.update.install import install_release
from gateway.update.launcher import ask_status
from tests.daemonkit import SIREN_PIN, write_config

HEALTH_S = 15


def pins(var: Path) -> list[dict]:
    f = var / "pins.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines() if x.strip()] if f.exists() else []


def siren(var: Path) -> list[dict]:
    return [p for p in pins(var) if p["pin"] == SIREN_PIN]


class Site:
    def __init__(self, tmp: Path, lay: R.Layout, conf: str, sock: str, svc: Service):
        self.tmp, self.lay, self.conf, self.sock, self.svc = tmp, lay, conf, sock, svc
        self.var = Path(lay.data_dir)

    def status(self):
        try:
            return ask_status(self.sock, timeout=2)
        except (OSError, ValueError):
            return None

    def healthy(self, version):
        st = self.status()
        return st is not None and st.get("release") == version and st["health"]["healthy"]

    def cli(self, version, *args, timeout=240):
        exe = os.path.join(self.lay.release_dir(version), "bin", "gateway")
        return subprocess.run([exe, *args, "-c", self.conf], capture_output=True, text=True, timeout=timeout,
                              cwd=self.tmp)

    def journal(self):
        return J.Journal(self.lay.journal_path).entries()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from gateway.platform.keys import keygen

    tmp = tmp_path_factory.mktemp("e2e")
    key, pub = keygen(str(tmp / "release"))
    lay = R.Layout(str(tmp / "opt"), str(tmp / "var"))
    os.makedirs(lay.data_dir)
    # release 0.1.0, as install.sh installs it: releases/0.1.0 from the wheels, current -> 0.1.0
    wheels = tmp / "wheels-0.1.0"
    wheels.mkdir()
    for w in [*dependency_wheels().glob("*.whl"), gateway_wheel("0.1.0")]:
        os.link(w, wheels / w.name)
    install_release(lay, "0.1.0", str(wheels), {"gateway_wheel": f"wheels/{gateway_wheel('0.1.0').name}"})
    R.switch(lay, "0.1.0")
    with SimBus.tcp("127.0.0.1", 0) as sim:
        conf = write_config(tmp, "upd-gw", sim.port, extra=f"""
            [updates]
            release_keys = ["./release.pub"]
            health_s = {HEALTH_S}
            probation_s = 2
            install_root = "{lay.install_root}"
            """)
        sim.add_device(1, load_config(conf).sensors["garage-b2-water"].profile, {"level": 2.0})
        sock = str(tmp / "var" / "control.sock")
        svc = Service(lay, args=("run", "-c", conf), socket=sock)
        s = Site(tmp, lay, conf, sock, svc)
        s.key, s.sim = key, sim
        # the bundles are built while 0.1.0 starts
        s.bundles = {}
        svc.start()
        try:
            s.bundles["0.2.0"] = release_bundle(tmp, "0.2.0", key, min_version="0.1.0")
            s.bundles["0.3.0"] = release_bundle(tmp, "0.3.0", key, BROKEN_START)
            s.bundles["0.3.1"] = release_bundle(tmp, "0.3.1", key, BUSES_NEVER_UP)
            wait_for(lambda: s.healthy("0.1.0"), 60, "release 0.1.0 up and healthy")
            sim.set_value(1, "level", 45.0)
            wait_for(lambda: siren(s.var) and siren(s.var)[-1]["value"] == 0, 15, "the siren on for a red flood")
            yield s
        finally:
            svc.stop()


def test_update_to_a_real_release_is_healthy_and_the_alarm_sounds_again(site):
    before = len(siren(site.var))
    t0 = time.time()
    r = site.cli("0.1.0", "update", str(site.bundles["0.2.0"]))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "signature and sha256 of every file verified" in r.stdout
    assert "release 0.2.0 is healthy and kept (previous: 0.1.0)" in r.stdout
    st = wait_for(lambda: site.status() if site.healthy("0.2.0") else None, 30, "0.2.0 healthy")
    assert st["release"] == "0.2.0" and st["previous"] == "0.1.0"
    assert st["last_update"]["outcome"] == "healthy" and st["last_update"]["from"] == "0.1.0"
    assert st["release_dir"] == site.lay.release_dir("0.2.0")
    assert [a["level"] for a in st["alarms"]] == ["red"]
    # the relay: off when 0.1.0 stopped, on again once 0.2.0 restored the alarm - within 1 s of its start
    started = next(e["ts"] for e in site.journal() if e["step"] == "started" and e["version"] == "0.2.0")
    changes = siren(site.var)[before:]
    ons = [c["t"] for c in changes if c["value"] == 0 and c["t"] >= started]
    assert ons, changes
    restore_s = ons[0] - started
    slack = max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))  # a loaded CI box: scaled, said below
    assert restore_s <= 1.0 * slack, f"the siren came back {restore_s:.2f} s after the new daemon's start"
    off = [c["t"] for c in changes if c["value"] == 1]
    print(f"\nupdate 0.1.0 -> 0.2.0: {time.time() - t0:.1f} s to healthy; relay undriven "
          f"{(ons[0] - off[0]) if off else 0:.2f} s; restored {restore_s:.2f} s after exec")
    # every step an audit event, from the outbox
    wait_for(lambda: "healthy" in _audits(site), 20, "the audit of the healthy step")
    steps = _audits(site)
    for step in ("received", "verified", "installing", "installed", "switching", "switched", "restarting",
                 "started", "healthy"):
        assert step in steps, steps
    assert sorted(R.installed(site.lay)) == ["0.1.0", "0.2.0"]


def _audits(site) -> list[str]:
    r = site.cli(site.status()["release"] if site.status() else "0.2.0", "events", "--type", "audit", "--json",
                 "-n", "200", timeout=30)
    out = []
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            e = json.loads(line)
            if e.get("action") == "update":
                out.append(e.get("result"))
    return out


def _rolled_back(site, version, reason):
    r = site.cli("0.2.0", "update", str(site.bundles[version]), timeout=HEALTH_S * 4 + 120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"release {version} ROLLED BACK to 0.2.0" in r.stderr
    wait_for(lambda: site.healthy("0.2.0"), 60, "0.2.0 back and healthy")
    st = site.status()
    assert st["last_update"]["outcome"] == "rolled_back" and st["last_update"]["reason"] == reason
    assert R.current_version(site.lay) == "0.2.0"
    wait_for(lambda: siren(site.var)[-1]["value"] == 0, 10, "the siren sounding again")
    return st


def test_a_release_that_crashes_at_start_is_rolled_back(site):
    st = _rolled_back(site, "0.3.0", "crash")
    assert "started 3 times without becoming healthy" in st["last_update"]["message"]


def test_a_release_whose_buses_never_come_up_is_rolled_back(site):
    st = _rolled_back(site, "0.3.1", "health")
    assert f"within {HEALTH_S} s" in st["last_update"]["message"]
    assert "bus garage" in st["last_update"]["message"], st["last_update"]["message"]
    # the running release and the one before it; the rolled-back 0.3.1 stays for a look until the
    # next update (0.3.0 went when 0.3.1 was applied)
    assert sorted(R.installed(site.lay)) == ["0.1.0", "0.2.0", "0.3.1"]
    assert st["previous"] == "0.1.0"
