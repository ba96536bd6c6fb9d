"""The installer's dry run against fake systems: a temp tree stands in for / (INSTALL_ROOT), so the
planned actions for a fresh Pi, an already installed Pi, a Pi 5 and an uninstall can be read back,
and the tree is proven untouched. Nothing here installs anything on this machine."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "systemd" / "install.sh"
PI4 = "Raspberry Pi 4 Model B Rev 1.5"
PI5 = "Raspberry Pi 5 Model B Rev 1.0"


@pytest.fixture
def checkout(tmp_path):
    """A minimal checkout: the installer, the unit, the demo config, a package file."""
    co = tmp_path / "checkout"
    (co / "systemd").mkdir(parents=True)
    (co / "config").mkdir()
    (co / "gateway").mkdir()
    shutil.copy2(SCRIPT, co / "systemd" / "install.sh")
    shutil.copy2(REPO / "systemd" / "community-gateway.service", co / "systemd")
    shutil.copy2(REPO / "config" / "demo.toml", co / "config")
    (co / "pyproject.toml").write_text('[project]\nname = "community-gateway"\n')
    (co / "gateway" / "__init__.py").write_text('__version__ = "0.1.0"\n')
    (co / "README.md").write_text("# community-gateway\n")
    return co


def fake_system(root: Path, model: str | None = PI4, gpio_group=True) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text('ID=debian\nVERSION_CODENAME=bookworm\n')
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000::/home/pi:/bin/bash\n")
    groups = "root:x:0:\ndialout:x:20:pi\npi:x:1000:\n" + ("gpio:x:997:pi\n" if gpio_group else "")
    (root / "etc" / "group").write_text(groups)
    if model:
        (root / "proc" / "device-tree").mkdir(parents=True)
        (root / "proc" / "device-tree" / "model").write_bytes(model.encode() + b"\0")
    return root


def installed(root: Path, checkout: Path, stamp: str) -> None:
    """What a finished install leaves behind."""
    with (root / "etc" / "group").open("a") as f:
        f.write("community-gateway:x:990:pi\n")
    text = (root / "etc" / "group").read_text()
    text = text.replace("dialout:x:20:pi", "dialout:x:20:pi,community-gateway")
    text = text.replace("gpio:x:997:pi", "gpio:x:997:pi,community-gateway")
    (root / "etc" / "group").write_text(text)
    with (root / "etc" / "passwd").open("a") as f:
        f.write("community-gateway:x:990:990::/var/lib/community-gateway:/usr/sbin/nologin\n")
    venv = root / "opt" / "community-gateway" / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\n")
    (venv / "bin" / "python").chmod(0o755)
    (venv / ".community-gateway-source").write_text(stamp + "\n")
    (venv / "lib" / "python3.11" / "site-packages" / "RPi.GPIO-0.7.1.dist-info").mkdir(parents=True)
    (root / "usr" / "local" / "bin").mkdir(parents=True)
    (root / "usr" / "local" / "bin" / "gateway").symlink_to("/opt/community-gateway/venv/bin/gateway")
    doc = root / "opt" / "community-gateway" / "doc"
    doc.mkdir()
    shutil.copy2(checkout / "README.md", doc / "README.md")
    (root / "etc" / "community-gateway").mkdir(parents=True)
    (root / "etc" / "community-gateway" / "gateway.toml").write_text("# the technician's own config\n")
    units = root / "etc" / "systemd" / "system"
    (units / "multi-user.target.wants").mkdir(parents=True)
    shutil.copy2(checkout / "systemd" / "community-gateway.service", units)
    (units / "multi-user.target.wants" / "community-gateway.service").symlink_to(
        "/etc/systemd/system/community-gateway.service")


def snapshot(root: Path) -> dict[str, tuple]:
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else ""
            state[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return state


def dry_run(checkout: Path, root: Path, *args: str, sudo_user: str | None = "pi") -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    env["INSTALL_ROOT"] = str(root)
    if sudo_user:
        env["SUDO_USER"] = sudo_user
    before = snapshot(root)
    done = subprocess.run(["bash", str(checkout / "systemd" / "install.sh"), "--dry-run", *args],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == "", done.stderr
    assert snapshot(root) == before, "a dry run changed the inspected tree"
    return done.stdout.splitlines()


def would(lines: list[str]) -> list[str]:
    return [line[len("would: "):] for line in lines if line.startswith("would: ")]


def index(actions: list[str], pattern: str) -> int:
    for i, action in enumerate(actions):
        if re.search(pattern, action):
            return i
    raise AssertionError(f"no planned action matches {pattern!r}:\n" + "\n".join(actions))


def test_fresh_pi4_plans_the_whole_install_in_order(checkout, tmp_path):
    root = fake_system(tmp_path / "root", PI4)
    actions = would(dry_run(checkout, root))
    order = [
        r"^groupadd --system community-gateway$",
        r"^useradd --system --gid community-gateway --groups dialout,gpio .* community-gateway$",
        r"^usermod -a -G community-gateway pi$",
        r"^python3 -m venv /opt/community-gateway/venv$",
        rf"^/opt/community-gateway/venv/bin/python -m pip install --upgrade {re.escape(str(checkout))}$",
        r"^/opt/community-gateway/venv/bin/python -m pip install RPi.GPIO$",
        r"^ln -s /opt/community-gateway/venv/bin/gateway /usr/local/bin/gateway$",
        r"^write /etc/community-gateway/gateway.toml from config/demo.toml .*gpio backend rpi",
        r"^install -m 0644 .*/etc/systemd/system/community-gateway.service$",
        r"^systemctl daemon-reload$",
        r"^systemctl enable community-gateway$",
        r"^systemctl restart community-gateway$",
    ]
    positions = [index(actions, pattern) for pattern in order]
    assert positions == sorted(positions), actions
    assert not any("groupadd --system gpio" in a or "groupadd --system dialout" in a for a in actions)
    assert not any("rpi-lgpio" in a for a in actions)


def test_fresh_pi5_gets_rpi_lgpio_not_rpi_gpio(checkout, tmp_path):
    actions = would(dry_run(checkout, fake_system(tmp_path / "root", PI5)))
    index(actions, r"pip install rpi-lgpio$")
    assert not any(re.search(r"pip (install|uninstall).*RPi\.GPIO", a) for a in actions)


def test_non_pi_creates_the_gpio_group_and_installs_no_gpio_library(checkout, tmp_path):
    lines = dry_run(checkout, fake_system(tmp_path / "root", None, gpio_group=False))
    actions = would(lines)
    index(actions, r"^groupadd --system gpio$")  # or SupplementaryGroups=gpio stops the unit starting
    index(actions, r"gpio backend sim")
    assert not any("RPi.GPIO" in a or "rpi-lgpio" in a for a in actions)
    assert "ok: not a Raspberry Pi" in "\n".join(lines)


def stamp_of(checkout: Path, tmp_path: Path) -> str:
    lines = dry_run(checkout, fake_system(tmp_path / "probe", None))
    return re.search(r"record source (\w+)", "\n".join(lines)).group(1)


def test_already_installed_changes_nothing(checkout, tmp_path):
    root = fake_system(tmp_path / "root", PI4)
    installed(root, checkout, stamp_of(checkout, tmp_path))
    lines = dry_run(checkout, root)
    assert would(lines) == ["systemctl start community-gateway"], lines
    text = "\n".join(lines)
    assert "ok: keeping the existing /etc/community-gateway/gateway.toml" in text
    assert "ok: package already installed from this checkout" in text
    assert "ok: /etc/systemd/system/community-gateway.service is up to date" in text


def test_changed_checkout_reinstalls_and_restarts_but_keeps_the_config(checkout, tmp_path):
    root = fake_system(tmp_path / "root", PI4)
    installed(root, checkout, "0000000000000000")
    actions = would(dry_run(checkout, root))
    index(actions, r"pip install --upgrade")
    index(actions, r"^systemctl restart community-gateway$")
    assert not any(a.startswith(("useradd", "groupadd", "write /etc/community-gateway")) for a in actions)
    assert not any("daemon-reload" in a for a in actions)  # the unit did not change


def test_pi5_upgrade_removes_rpi_gpio_before_installing_rpi_lgpio(checkout, tmp_path):
    root = fake_system(tmp_path / "root", PI5)
    installed(root, checkout, stamp_of(checkout, tmp_path))  # an old install that has RPi.GPIO
    actions = would(dry_run(checkout, root))
    assert index(actions, r"pip uninstall -y RPi\.GPIO$") < index(actions, r"pip install rpi-lgpio$")


def test_uninstall_removes_unit_and_venv_but_keeps_config_and_state(checkout, tmp_path):
    root = fake_system(tmp_path / "root", PI4)
    installed(root, checkout, "x")
    lines = dry_run(checkout, root, "--uninstall")
    actions = would(lines)
    assert actions == [
        "systemctl disable --now community-gateway",
        "rm -f /etc/systemd/system/community-gateway.service",
        "systemctl daemon-reload",
        "rm -f /usr/local/bin/gateway",
        "rm -rf /opt/community-gateway/venv",
        "rm -rf /opt/community-gateway/doc",
        "rmdir --ignore-fail-on-non-empty /opt/community-gateway",
    ]
    assert not any("/etc/community-gateway" in a or "/var/lib" in a or "userdel" in a for a in actions)
    assert "kept: /etc/community-gateway (config), /var/lib/community-gateway" in "\n".join(lines)


def test_uninstall_when_nothing_is_installed(checkout, tmp_path):
    assert would(dry_run(checkout, fake_system(tmp_path / "root"), "--uninstall")) == []


def test_prefix_moves_venv_and_exec_start(checkout, tmp_path):
    lines = dry_run(checkout, fake_system(tmp_path / "root"), "--prefix", "/srv/gw")
    actions = would(lines)
    index(actions, r"^python3 -m venv /srv/gw/venv$")
    assert "ExecStart=/srv/gw/venv/bin/gateway run -c /etc/community-gateway/gateway.toml" in "\n".join(lines)


def test_refusals_happen_before_any_action(checkout, tmp_path):
    root = fake_system(tmp_path / "root")
    env = {**os.environ, "INSTALL_ROOT": str(root)}
    done = subprocess.run(["bash", str(checkout / "systemd" / "install.sh")], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 1 and "INSTALL_ROOT is for --dry-run" in done.stderr
    assert done.stdout == ""
    done = subprocess.run(["bash", str(checkout / "systemd" / "install.sh"), "--dry-rnu"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "unknown option --dry-rnu" in done.stderr
    done = subprocess.run(["bash", str(checkout / "systemd" / "install.sh"), "--prefix", "relative/dir",
                           "--dry-run"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "--prefix must be an absolute directory" in done.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to run the installer as an unprivileged user")
def test_real_install_needs_root_and_dry_run_does_not():
    def as_nobody(*args):
        return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               "bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                              cwd="/", env={"PATH": os.environ["PATH"], "HOME": "/"})
    done = as_nobody()
    assert done.returncode == 1 and "run it as root: sudo" in done.stderr and done.stdout == ""
    done = as_nobody("--dry-run")
    assert done.returncode == 0, done.stderr
    assert "dry run: nothing will be changed" in done.stdout


def test_example_config_is_the_demo_pointed_at_real_hardware(checkout, tmp_path):
    root = fake_system(tmp_path / "root", PI4)
    done = subprocess.run(["bash", str(checkout / "systemd" / "install.sh"), "--print-config"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "INSTALL_ROOT": str(root)})
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert 'data_dir = "/var/lib/community-gateway"' in text
    assert 'port = "/dev/ttyAMA0"' in text and 'port = "/dev/ttyUSB0"' in text
    assert "socket://" not in text and "record =" not in text
    assert 'backend = "rpi"' in text
    assert "port = 502" in text
    from gateway.config import load_config

    path = tmp_path / "gateway.toml"
    path.write_text(text)
    cfg = load_config(str(path))  # the example must pass `gateway check` as written
    assert cfg.buses["rs485"].port == "/dev/ttyAMA0"
    assert cfg.gpio.backend == "rpi"
