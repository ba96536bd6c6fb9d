"""systemd/install.sh run for real, as root, in a throwaway Debian Bookworm root (issue 10 item 2).

Why a debootstrap root: it is a real Bookworm userland (Debian's python3 3.11 with PEP 668, python3-venv,
useradd/usermod, systemctl, setpriv), and running the installer in it with chroot is exactly the
situation of pi-gen, which bakes Raspberry Pi OS images by running each stage's scripts in a chroot of
the image: systemd is not running there, so `systemctl daemon-reload`/`start` fail ("System has not
been booted with systemd") while `systemctl enable` works. tests/test_install.py's dry runs against a
fake tree cannot show what useradd, pip or systemctl really do; a container would need a runtime this
machine does not have and would not be the pi-gen case; a VM image would cost minutes per run. The root
is built once per machine (tests/bookworm_root.py, `make deps`) and copied per run (`cp -a`, ~2 s).

The installer runs offline, from `--wheels DIR` (tests/wheelhouse.py builds the gateway's and its
dependencies' wheels on this host, as `make wheels` does; they are copied into the root), with the
checkout copied into the root: the first run with /proc mounted (as pi-gen mounts it), the upgrade
without (the installer must tell a chroot from a booted system either way)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from bookworm_root import CHECKOUT, put_checkout, put_wheels, throwaway_root, unavailable
from wheelhouse import REPO, gateway_wheel, wheelhouse

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=f"installer chroot test: {unavailable()}")

NAME = "community-gateway"
CONF = "/etc/community-gateway/gateway.toml"
VENV = "/opt/community-gateway/venv"
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
       "LANG": "C.UTF-8", "TERM": "dumb"}


def chroot(root: Path, *args: str, user: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = ["chroot", str(root)]
    if user:  # the service user with its groups, as systemd's User= and SupplementaryGroups= give them
        cmd += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env=ENV, timeout=timeout, cwd="/")


def install(root: Path, *args: str) -> subprocess.CompletedProcess:
    return chroot(root, "bash", f"{CHECKOUT}/systemd/install.sh", *args)


@pytest.fixture(scope="module")
def house() -> Path:
    return wheelhouse()


@pytest.fixture(scope="module")
def root(tmp_path_factory, house):
    with throwaway_root(tmp_path_factory.mktemp("bookworm"), proc=True) as root:
        put_checkout(root)
        yield root


@pytest.fixture(scope="module")
def first(root, house) -> subprocess.CompletedProcess:
    """The first install: offline, from the wheels."""
    return install(root, "--wheels", put_wheels(root, house, "wheels"))


def passwd(root: Path, name: str) -> list[str] | None:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    return None


def members(root: Path, group: str) -> list[str]:
    for line in (root / "etc" / "group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == group:
            return [m for m in fields[3].split(",") if m]
    raise AssertionError(f"no group {group}")


def test_installs_in_a_chroot_enables_without_starting_and_says_so(first):
    out = first.stdout
    assert first.returncode == 0, out + first.stderr
    # "in a chroot" where /proc/1/root can be read (pi-gen on a build host); this sandbox forbids it
    assert re.search(r"note: .*chroot.*: the unit will be enabled, not started", out), out
    assert re.search(r"note: .*chroot.*: community-gateway is enabled and not started", out), out
    assert "+ systemctl enable community-gateway" in out
    assert not re.search(r"^\+ systemctl (daemon-reload|start|restart)", out, re.M), out
    assert "Traceback" not in first.stderr and "failed at line" not in first.stderr, first.stderr
    steps = re.findall(r"^  (\d)\. ", out, re.M)
    assert steps == ["1", "2", "3"], out


def test_user_and_groups(root, first):
    user = passwd(root, NAME)
    assert user is not None, "no service user"
    assert user[5] == "/var/lib/community-gateway" and user[6] == "/usr/sbin/nologin"
    assert int(user[2]) < 1000, "a system user"
    assert NAME in members(root, "dialout") and NAME in members(root, "gpio")


def test_venv_and_the_cli_on_path(root, first):
    assert (root / VENV.lstrip("/") / "bin" / "gateway").is_file()
    # the CLI follows the current release (docs/updates.md); install.sh's venv is the first release
    assert os.readlink(root / "usr" / "local" / "bin" / "gateway") == "/opt/community-gateway/releases/current/bin/gateway"
    releases = root / "opt" / "community-gateway" / "releases"
    version = os.readlink(releases / "current")
    assert os.readlink(releases / version) == "../venv"
    assert (root / "opt" / "community-gateway" / "launcher" / "launcher.py").is_file()
    done = chroot(root, "gateway", "--version")
    assert done.returncode == 0 and "community-gateway" in done.stdout, done.stderr


def test_unit_installed_and_enabled(root, first):
    unit = root / "etc" / "systemd" / "system" / f"{NAME}.service"
    assert unit.read_text() == (REPO / "systemd" / f"{NAME}.service").read_text()
    wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants" / f"{NAME}.service"
    assert wants.is_symlink() and os.readlink(wants) == f"/etc/systemd/system/{NAME}.service"
    assert chroot(root, "systemctl", "is-enabled", NAME).stdout.strip() == "enabled"


def test_config_dir_and_data_dir_are_the_services(root, first):
    etc = (root / "etc" / NAME).stat()
    gid = int(next(line for line in (root / "etc" / "group").read_text().splitlines()
                   if line.startswith(f"{NAME}:")).split(":")[2])
    # group write: a config push replaces the file (temp file + rename in this directory)
    assert (etc.st_uid, etc.st_gid, etc.st_mode & 0o7777) == (0, gid, 0o770)
    conf = (root / CONF.lstrip("/")).stat()
    assert (conf.st_uid, conf.st_gid, conf.st_mode & 0o777) == (0, gid, 0o640)
    data = (root / "var" / "lib" / NAME).stat()
    assert (data.st_uid, data.st_gid) == (int(passwd(root, NAME)[2]), gid)


def test_the_example_is_rejected_until_id_and_sensors_are_set(root, first):
    done = chroot(root, "gateway", "check", "-c", CONF, user=NAME)  # as ExecCondition= runs it
    assert done.returncode == 1, done.stdout
    problems = done.stderr
    assert "unknown profile" not in problems, problems  # the installed package found its profiles
    assert re.search(r"gateway.toml:\d+: \[gateway\] id: is required", problems), problems
    assert re.search(r"\[sensors #1\] unit: is required", problems), problems
    text = (root / CONF.lstrip("/")).read_text()
    assert 'backend = "sim"' in text  # not a Pi: no GPIO library, so not "rpi"


@pytest.fixture(scope="module")
def filled_in(root, first) -> bytes:
    """The technician sets the id and the sensors' units (after the test that the example is rejected)."""
    path = root / CONF.lstrip("/")
    text = path.read_text().replace('# id = "SET-ME"', 'id = "chroot-test-001"')
    for unit in (1, 5, 2):
        text = text.replace(f"# unit = {unit} ", f"unit = {unit} ")
    path.write_bytes(text.encode())
    return path.read_bytes()


PUSH = r"""
import sys
from types import SimpleNamespace
from gateway.commands.config_push import ConfigPush
from gateway.config import load_config
path = sys.argv[1]
daemon = SimpleNamespace(cfg=load_config(path), safety=SimpleNamespace(status=lambda: {"alarms": []}))
daemon.request_reload = lambda new: setattr(daemon, "cfg", new)
verdicts = []
push = ConfigPush(daemon, healthy=lambda sha256: True, report=verdicts.append, watch_s=5, poll_s=0.05)
new = open(path).read().replace("poll_s = 1.0", "poll_s = 2.0", 1)
try:
    push.start(new, "chroot-push-1")
except Exception as e:
    sys.exit(f"push refused: {type(e).__name__}: {e}")
push.wait(10)
print(verdicts[0]["outcome"])
"""


def test_a_config_push_is_written_as_the_service_user(root, filled_in):
    """The write a platform config push makes, as the daemon's user with the installed permissions
    (the unit adds ReadWritePaths= for the directory: tests/test_systemd_unit.py)."""
    assert chroot(root, "gateway", "check", "-c", CONF, user=NAME).returncode == 0
    done = chroot(root, f"{VENV}/bin/python", "-c", PUSH, CONF, user=NAME)
    assert done.returncode == 0 and done.stdout.strip() == "applied", done.stdout + done.stderr
    assert "poll_s = 2.0" in (root / CONF.lstrip("/")).read_text()
    assert (root / (CONF + ".previous").lstrip("/")).is_file()
    leftovers = [p.name for p in (root / "etc" / NAME).iterdir() if p.name.endswith((".tmp", ".toml")) and
                 p.name.startswith(".")]
    assert leftovers == []


def rewrite_wheel(wheel: Path, dest: Path, member: str, append: str) -> Path:
    """A copy of `wheel` in `dest` with `append` added to `member`, its RECORD line updated: what a
    rebuild after a one-line change gives, in a fraction of a second."""
    out = dest / wheel.name
    with zipfile.ZipFile(wheel) as old, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as new:
        record_name = next(n for n in old.namelist() if n.endswith(".dist-info/RECORD"))
        changed = old.read(member) + append.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(changed).digest()).rstrip(b"=").decode()
        for info in old.infolist():
            data = old.read(info)
            if info.filename == member:
                data = changed
            elif info.filename == record_name:
                data = "".join(f"{member},sha256={digest},{len(changed)}\n" if line.startswith(member + ",")
                               else line for line in data.decode().splitlines(keepends=True)).encode()
            new.writestr(info, data)
    return out


def test_a_config_dir_the_daemon_cannot_write_is_a_sentence_not_internal(root, filled_in):
    """As the installer used to leave it (0750, no group write): the push is refused with a reason the
    platform operator can act on, and nothing is left behind; it was a PermissionError ("internal")."""
    etc = root / "etc" / NAME
    before = sorted(p.name for p in etc.iterdir())
    etc.chmod(0o750)
    try:
        done = chroot(root, f"{VENV}/bin/python", "-c", PUSH, CONF, user=NAME)
    finally:
        etc.chmod(0o770)
    assert done.returncode == 1
    assert "push refused: CommandError: failed: cannot write a temporary file beside" in done.stderr, done.stderr
    assert "Permission denied" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in etc.iterdir()) == before


def test_rerun_on_a_newer_checkout_upgrades_in_place_and_keeps_config_and_data(root, filled_in, house, tmp_path):
    # (put_checkout again stands for `git pull`: the installer and unit of the newer checkout)
    conf = root / CONF.lstrip("/")
    config_before = conf.read_bytes()
    outbox = root / "var" / "lib" / NAME / "outbox.sqlite"
    outbox.write_bytes(b"the outbox of a gateway that has been running")
    # a newer checkout, same version number (the hard case for pip): one line of the package changed
    newer = tmp_path / "wheels"
    shutil.copytree(house, newer, ignore=shutil.ignore_patterns(".complete", "community_gateway-*"))
    rewrite_wheel(gateway_wheel(house), newer, "gateway/__init__.py", "# newer checkout: upgrade marker\n")
    subprocess.run(["umount", str(root / "proc")], capture_output=True)  # the other way to be in a chroot
    put_checkout(root)
    done = install(root, "--wheels", put_wheels(root, newer, "wheels-newer"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not started" in done.stdout
    installed_init = next((root / VENV.lstrip("/") / "lib").glob("python3*/site-packages/gateway/__init__.py"))
    assert "upgrade marker" in installed_init.read_text()
    assert conf.read_bytes() == config_before, "the technician's config was changed"
    assert outbox.read_bytes() == b"the outbox of a gateway that has been running"
    assert chroot(root, "gateway", "check", "-c", CONF, user=NAME).returncode == 0
    again = install(root, "--wheels", "/root/wheels-newer")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "ok: package already installed" in again.stdout
    assert not re.search(r"^\+ ", again.stdout, re.M), again.stdout  # nothing left to do
