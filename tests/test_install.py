"""The installer's dry run against fake systems: a temp tree stands in for / (INSTALL_ROOT), so the
planned actions for a fresh Pi, an already installed Pi, a Pi 5, a chroot, an offline install and an
uninstall can be read back, and the tree is proven untouched. Nothing here installs anything on this
machine; tests/test_installer_chroot.py runs the installer for real in a Bookworm root."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "systemd" / "install.sh"
EXAMPLE = REPO / "gateway" / "examples" / "gateway.toml"
PI4 = "Raspberry Pi 4 Model B Rev 1.5"
PI5 = "Raspberry Pi 5 Model B Rev 1.0"


@pytest.fixture
def checkout(tmp_path):
    """A minimal checkout: the installer, the unit, the example config, a package file."""
    co = tmp_path / "checkout"
    (co / "systemd").mkdir(parents=True)
    (co / "gateway" / "examples").mkdir(parents=True)
    shutil.copy2(SCRIPT, co / "systemd" / "install.sh")
    shutil.copy2(REPO / "systemd" / "community-gateway.service", co / "systemd")
    shutil.copy2(EXAMPLE, co / "gateway" / "examples")
    shutil.copytree(REPO / "gateway" / "update", co / "gateway" / "update")  # the launcher install.sh copies
    (co / "pyproject.toml").write_text('[project]\nname = "community-gateway"\n')
    (co / "gateway" / "__init__.py").write_text('__version__ = "0.1.0"\n')
    (co / "README.md").write_text("# community-gateway\n")
    return co


def fake_system(root: Path, model: str | None = PI4, gpio_group=True, booted=True) -> Path:
    (root / "etc").mkdir(parents=True)
    if booted:  # sd_booted(3): systemd is PID 1; a chroot (pi-gen) has no /run/systemd/system
        (root / "run" / "systemd" / "system").mkdir(parents=True)
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
    (root / "usr" / "local" / "bin" / "gateway").symlink_to("/opt/community-gateway/releases/current/bin/gateway")
    # releases (issue 14): the venv is release 0.1.0 by symlink, current -> it; the launcher beside
    releases = root / "opt" / "community-gateway" / "releases"
    releases.mkdir()
    (releases / "0.1.0").symlink_to("../venv")
    (releases / "current").symlink_to("0.1.0")
    (venv / ".community-gateway-release").write_text("0.1.0\n")
    (root / "opt" / "community-gateway" / "launcher").mkdir()
    for f in ("launcher.py", "journal.py", "releases.py"):
        shutil.copy2(checkout / "gateway" / "update" / f, root / "opt" / "community-gateway" / "launcher" / f)
    doc = root / "opt" / "community-gateway" / "doc"
    doc.mkdir()
    shutil.copy2(checkout / "README.md", doc / "README.md")
    etc = root / "etc" / "community-gateway"
    etc.mkdir(parents=True)
    etc.chmod(0o770)
    try:
        os.chown(etc, 0, 990)  # root:community-gateway, as the installer leaves it
    except PermissionError:
        pytest.skip("needs root to give the fake config directory the service's group")
    (etc / "gateway.toml").write_text("# the technician's own config\n")
    (root / "var" / "lib" / "community-gateway").mkdir(parents=True)
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
        r"^install -d -m 0755 -o community-gateway -g community-gateway /opt/community-gateway/releases$",
        r"^install -D -m 0644 .*/gateway/update/launcher.py /opt/community-gateway/launcher/launcher.py$",
        r"^link /opt/community-gateway/releases/<version> -> ../venv .*current at it$",
        r"^ln -s /opt/community-gateway/releases/current/bin/gateway /usr/local/bin/gateway$",
        r"^install -d -m 0750 -o community-gateway -g community-gateway /var/lib/community-gateway$",
        r"^install -d -m 0770 -o root -g community-gateway /etc/community-gateway$",
        r"^write /etc/community-gateway/gateway.toml from the installed package's example .*gpio backend rpi",
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


def test_in_a_chroot_enables_but_does_not_reload_or_start_and_says_so(checkout, tmp_path):
    """pi-gen bakes images in a chroot: systemctl daemon-reload/start fail there, enable works."""
    lines = dry_run(checkout, fake_system(tmp_path / "root", PI4, booted=False))
    actions = would(lines)
    index(actions, r"^systemctl enable community-gateway$")
    assert not any(re.match(r"systemctl (daemon-reload|start|restart)", a) for a in actions), actions
    text = "\n".join(lines)
    assert "in a chroot or image build" in text and "enabled and not started; it starts at the next boot" in text
    assert "3. boot the image" in text


def wheels_dir(tmp_path: Path, *names: str) -> Path:
    d = tmp_path / "wheels"
    d.mkdir()
    for name in names:
        (d / name).write_bytes(b"not really a wheel")
    return d


def test_wheels_installs_offline_from_the_directory_only(checkout, tmp_path):
    wheels = wheels_dir(tmp_path, "community_gateway-0.1.0-py3-none-any.whl", "RPi.GPIO-0.7.1-cp311-cp311-linux_armv7l.whl")
    lines = dry_run(checkout, fake_system(tmp_path / "root", PI4), "--wheels", str(wheels))
    actions = would(lines)
    wheel = f"{wheels}/community_gateway-0.1.0-py3-none-any.whl"
    index(actions, rf"pip install --upgrade --no-index --find-links {re.escape(str(wheels))} {re.escape(wheel)}$")
    index(actions, rf"pip install --no-index --no-deps --force-reinstall {re.escape(wheel)}$")
    index(actions, rf"pip install --no-index --find-links {re.escape(str(wheels))} RPi.GPIO$")
    pips = [a for a in actions if " -m pip install" in a]
    assert all("--no-index" in a for a in pips), pips  # nothing from a package index


@pytest.mark.parametrize("names, model, message", [
    ((), PI4, "holds no community_gateway-*.whl"),
    (("community_gateway-0.1.0-py3-none-any.whl",), PI4, "has no RPi.GPIO for this Raspberry Pi 4"),
    (("community_gateway-0.1.0-py3-none-any.whl", "RPi.GPIO-0.7.1-cp311-cp311-linux_armv7l.whl"), PI5,
     "has no rpi_lgpio for this Raspberry Pi 5"),
])
def test_wheels_without_what_this_board_needs_is_refused_before_any_action(checkout, tmp_path, names, model, message):
    env = {**os.environ, "INSTALL_ROOT": str(fake_system(tmp_path / "root", model))}
    done = subprocess.run(["bash", str(checkout / "systemd" / "install.sh"), "--dry-run", "--wheels",
                           str(wheels_dir(tmp_path, *names))], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert "would:" not in done.stdout


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


def test_a_config_directory_an_older_installer_left_0750_gets_group_write(checkout, tmp_path):
    """Without it a platform config push cannot write gateway.toml (issue 10)."""
    root = fake_system(tmp_path / "root", PI4)
    installed(root, checkout, stamp_of(checkout, tmp_path))
    (root / "etc" / "community-gateway").chmod(0o750)
    actions = would(dry_run(checkout, root))
    assert actions[:2] == ["chown root:community-gateway /etc/community-gateway",
                           "chmod 0770 /etc/community-gateway"], actions


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
        "rm -rf /opt/community-gateway/releases",
        "rm -rf /opt/community-gateway/launcher",
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
    assert ("ExecStart=/usr/bin/python3 /srv/gw/launcher/launcher.py --install-root /srv/gw "
            "--data-dir /var/lib/community-gateway -- run -c /etc/community-gateway/gateway.toml") in "\n".join(lines)


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
def test_real_install_needs_root_and_dry_run_does_not(checkout):
    # the clone (and pytest's tmp_path, 0700) may be unreadable to nobody: a copy in a readable place
    readable = Path(tempfile.mkdtemp(prefix="gateway-install-"))
    try:
        readable.chmod(0o755)
        shutil.copytree(checkout, readable / "checkout")
        script = readable / "checkout" / "systemd" / "install.sh"
        _as_nobody_checks(script)
    finally:
        shutil.rmtree(readable)


def _as_nobody_checks(script: Path) -> None:
    def as_nobody(*args):
        return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               "bash", str(script), *args], capture_output=True, text=True, timeout=60,
                              cwd="/", env={"PATH": os.environ["PATH"], "HOME": "/"})
    done = as_nobody()
    assert done.returncode == 1 and "run it as root: sudo" in done.stderr and done.stdout == ""
    done = as_nobody("--dry-run")
    assert done.returncode == 0, done.stderr
    assert "dry run: nothing will be changed" in done.stdout


def print_config(checkout: Path, root: Path) -> str:
    done = subprocess.run(["bash", str(checkout / "systemd" / "install.sh"), "--print-config"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "INSTALL_ROOT": str(root)})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_example_config_is_rejected_until_the_id_and_the_sensors_are_set(checkout, tmp_path):
    """A fresh install must not sound real relays on an example nobody has looked at."""
    from gateway.config import load_config
    from gateway.errors import ConfigError

    text = print_config(checkout, fake_system(tmp_path / "root", PI4))
    assert 'data_dir = "/var/lib/community-gateway"' in text and 'backend = "rpi"' in text
    assert 'port = "/dev/ttyAMA0"' in text and "socket://" not in text
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    problems = [str(p).split(": ", 1)[1] for p in e.value.problems]
    assert problems == ["[gateway] id: is required",
                        "[sensors #1] unit: is required on a rtu bus: the Modbus unit id, 1..247",
                        "[sensors #2] unit: is required on a rtu bus: the Modbus unit id, 1..247",
                        "[sensors #3] unit: is required on a tcp bus: the Modbus unit id, 1..247"]
    # what the technician does, per the file's own comments: then it is a valid config
    text = text.replace('# id = "SET-ME"', 'id = "site-001"')
    for unit in (1, 5, 2):
        text = text.replace(f"# unit = {unit} ", f"unit = {unit} ")
    path.write_text(text)
    cfg = load_config(str(path))
    assert cfg.gateway.id == "site-001" and cfg.gpio.backend == "rpi" and len(cfg.sensors) == 4
    assert cfg.buses["rs485"].port == "/dev/ttyAMA0"


def test_off_a_pi_the_example_uses_simulated_relays(checkout, tmp_path):
    text = print_config(checkout, fake_system(tmp_path / "root", None))
    assert re.search(r'^backend = "sim"  # not a Raspberry Pi', text, re.M) and 'backend = "rpi"\n' not in text
