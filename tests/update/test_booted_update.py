"""Updates under a real systemd: the Bookworm root installed with install.sh (as a Pi is), booted with
systemd-nspawn, the unit as shipped (ExecCondition=/ExecStart= through the launcher, the sandbox with
ReadWritePaths= for releases/). `gateway update` as root to a real 0.2.0: healthy, and the daemon kept
its pid through the switch (SIGUSR2 re-exec: systemd saw a reload, not a stop). Then a release that
crashes at start: systemd restarts it (RestartSec=2), the launcher counts the starts and rolls back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bookworm_root import put_checkout, put_wheels, throwaway_root, unavailable  # noqa: E402
from ptys import wait_until  # noqa: E402
from releasekit import BROKEN_START, release_bundle  # noqa: E402
from wheelhouse import wheelhouse  # noqa: E402

WHY = unavailable() or next((f"{t} is not installed (make deps installs systemd-container)"
                             for t in ("systemd-nspawn", "nsenter") if not shutil.which(t)), None)
pytestmark = [pytest.mark.skipif(WHY is not None, reason=f"booted update test: {WHY}"), pytest.mark.slow]

NAME = "community-gateway"
CONF = "/etc/community-gateway/gateway.toml"
SITE = """[gateway]
id = "booted-upd"

[gpio]
backend = "sim"

[updates]
release_keys = ["release.pub"]
health_s = 60
probation_s = 3
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    from gateway.platform.keys import keygen
    from test_installer_booted import Booted

    work = tmp_path_factory.mktemp("booted-update")
    key, pub = keygen(str(work / "release"))
    bundles = {"0.2.0": release_bundle(work, "0.2.0", key, min_version="0.1.0"),
               "0.3.0": release_bundle(work, "0.3.0", key, BROKEN_START)}
    with throwaway_root(work) as root:
        put_checkout(root)
        wheels = put_wheels(root, wheelhouse(), "wheels")
        done = subprocess.run(["chroot", str(root), "bash", "/root/community-gateway/systemd/install.sh", "--wheels",
                               wheels], capture_output=True, text=True, timeout=600, cwd="/",
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"})
        assert done.returncode == 0, done.stdout + done.stderr
        shutil.copy2(pub, root / "etc" / NAME / "release.pub")
        (root / CONF.lstrip("/")).write_text(SITE)
        for v, b in bundles.items():
            shutil.copy2(b, root / "root" / f"{v}.tar")
        b = Booted(root, work / "console.log")
        try:
            wait_until(b.started, timeout=30, interval=0.05, what="systemd-nspawn to start the container")
            if b.proc.poll() is not None:
                pytest.skip(f"systemd-nspawn cannot boot a container here: {b.log_path.read_text()[-600:]}")
            wait_until(lambda: b.run("systemctl", "is-system-running").stdout.strip() in ("running", "degraded"),
                       timeout=90, interval=0.2, what="the container's systemd to finish booting")
            b.status = lambda: json.loads(b.run("gateway", "status", "--json").stdout or "{}")
            wait_until(lambda: b.status().get("health", {}).get("healthy"), timeout=60, interval=0.5,
                       what="release 0.1.0 healthy under systemd")
            yield b
        finally:
            b.stop()


def _journal(box) -> str:
    return box.run("journalctl", "-u", NAME, "--no-pager", "-n", "60").stdout


def test_update_under_systemd_keeps_the_pid_and_is_healthy(box):
    before = box.show(f"{NAME}.service", "MainPID", "NRestarts")
    assert box.status()["release"] == "0.1.0"
    done = box.run("gateway", "update", "/root/0.2.0.tar", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr + _journal(box)
    assert "release 0.2.0 is healthy and kept (previous: 0.1.0)" in done.stdout
    st = box.status()
    assert st["release"] == "0.2.0" and st["previous"] == "0.1.0" and st["last_update"]["outcome"] == "healthy"
    after = box.show(f"{NAME}.service", "MainPID", "NRestarts", "ActiveState")
    assert after["ActiveState"] == "active"
    assert (after["MainPID"], after["NRestarts"]) == (before["MainPID"], before["NRestarts"]), _journal(box)
    # the release the service user made is the service's, and the CLI follows current
    rel = box.root / "opt" / NAME / "releases"
    assert os.readlink(rel / "current") == "0.2.0"
    assert (rel / "0.2.0").stat().st_uid == (box.root / "var" / "lib" / NAME).stat().st_uid
    assert "community-gateway 0.2.0" in box.run("gateway", "--version").stdout


def test_a_release_that_crashes_at_start_is_rolled_back_under_systemd(box):
    done = box.run("gateway", "update", "/root/0.3.0.tar", timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr + _journal(box)
    assert "release 0.3.0 ROLLED BACK to 0.2.0" in done.stderr
    wait_until(lambda: box.status().get("release") == "0.2.0" and box.status()["health"]["healthy"], timeout=60,
               interval=0.5, what="0.2.0 back under systemd")
    st = box.status()
    assert st["last_update"]["outcome"] == "rolled_back" and st["last_update"]["reason"] == "crash"
    assert box.show(f"{NAME}.service", "ActiveState")["ActiveState"] == "active"
