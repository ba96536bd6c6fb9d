"""The systemd unit: the directives the field relies on are there, and systemd itself accepts it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "community-gateway.service"
# the launcher starts the current release (docs/updates.md): it is what ExecCondition=/ExecStart= run
LAUNCHER = ("/usr/bin/python3 /opt/community-gateway/launcher/launcher.py --install-root /opt/community-gateway "
            "--data-dir /var/lib/community-gateway")
EXEC = "/usr/bin/python3"


def directives(text: str) -> dict[str, list[str]]:
    """section.key -> values; systemd allows a key more than once (DeviceAllow=), configparser not."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


@pytest.fixture(scope="module")
def unit() -> dict[str, list[str]]:
    return directives(UNIT.read_text())


def test_notify_watchdog_and_restart(unit):
    assert unit["Service.Type"] == ["notify"]
    assert unit["Service.NotifyAccess"] == ["main"]
    assert unit["Service.WatchdogSec"] == ["30s"]
    assert unit["Service.Restart"] == ["always"]
    assert unit["Service.RestartSec"] == ["2"]


def test_a_bad_config_is_checked_before_start_without_a_restart_loop(unit):
    # ExecCondition=, not ExecStartPre=: Restart=always repeats a failed ExecStartPre= forever
    # (StartLimitIntervalSec=0), but never restarts a unit whose condition skipped it
    assert unit["Service.ExecCondition"] == [f"{LAUNCHER} --condition -- check -c /etc/community-gateway/gateway.toml"]
    assert "Service.ExecStartPre" not in unit
    assert unit["Unit.StartLimitIntervalSec"] == ["0"]
    assert unit["Unit.StartLimitIntervalSec"] == ["0"], "a crash loop must never end in a stopped gateway"


def test_runs_as_the_service_user_with_device_groups(unit):
    assert unit["Service.User"] == ["community-gateway"]
    assert unit["Service.Group"] == ["community-gateway"]
    assert unit["Service.SupplementaryGroups"] == ["dialout gpio"]
    assert unit["Service.ExecStart"] == [f"{LAUNCHER} -- run -c /etc/community-gateway/gateway.toml"]
    # lgpio writes FIFOs into the working directory: it must be the writable state directory
    assert unit["Service.WorkingDirectory"] == ["/var/lib/community-gateway"]


def test_directories_and_hardening(unit):
    assert unit["Service.StateDirectory"] == ["community-gateway"]
    assert unit["Service.RuntimeDirectory"] == ["community-gateway"]
    assert unit["Service.RuntimeDirectoryMode"] == ["0750"]
    # the config directory too: a platform config push replaces gateway.toml (issue 10)
    # and the releases: a platform update installs and switches there (issue 14); "-": absent is no error
    assert unit["Service.ReadWritePaths"] == ["/var/lib/community-gateway /etc/community-gateway "
                                              "-/opt/community-gateway/releases"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables",
                "ProtectControlGroups", "LockPersonality"):
        assert unit[f"Service.{key}"] == ["yes"], key
    assert unit["Service.ProtectSystem"] == ["strict"]
    assert unit["Service.RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"]
    assert unit.get("Unit.Documentation")


def test_devices_for_serial_ports_and_gpio(unit):
    assert unit["Service.DevicePolicy"] == ["closed"]
    allowed = {v.split()[0] for v in unit["Service.DeviceAllow"]}
    assert {"char-ttyAMA", "char-ttyUSB", "char-gpiochip", "/dev/gpiomem"} <= allowed


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify(tmp_path):
    # verify checks that ExecStart= exists; stand a fake gateway in for the venv the installer makes
    fake = tmp_path / "gateway"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    unit_file = tmp_path / UNIT.name
    unit_file.write_text(UNIT.read_text().replace(EXEC + " ", str(fake) + " "))
    done = subprocess.run(["systemd-analyze", "verify", str(unit_file)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "community-gateway.service" not in done.stderr, done.stderr  # no warnings about our unit
