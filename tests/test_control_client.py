"""What the CLI tells a technician when the daemon cannot be reached: each message names the cause
and the command that fixes it."""

from __future__ import annotations

import grp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gateway.control import (ControlServer, ControlTimeout, DaemonNotRunning, SocketPermissionDenied, call,
                             client_socket_path, default_socket_path, protocol, stream)
from gateway.errors import ControlError, GatewayError


def test_daemon_not_running_says_how_to_start_it(tmp_path):
    path = str(tmp_path / "control.sock")
    with pytest.raises(DaemonNotRunning) as err:
        call(path, "status")
    msg = str(err.value)
    assert f"no socket at {path}" in msg
    assert "sudo systemctl start community-gateway" in msg and "gateway run -c FILE" in msg
    assert isinstance(err.value, ControlError) and isinstance(err.value, GatewayError)
    with pytest.raises(DaemonNotRunning):
        stream(path, "events")  # raised at the call, not at the first item


def test_stale_socket_file_is_reported_as_not_running(tmp_path):
    path = str(tmp_path / "control.sock")
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(path)
    leftover.close()
    with pytest.raises(DaemonNotRunning, match="stale socket"):
        call(path, "status")


def test_hung_daemon_times_out(tmp_path):
    path = str(tmp_path / "control.sock")
    hung = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hung.bind(path)
    hung.listen(4)  # the kernel accepts connections for it; nobody ever answers
    try:
        with pytest.raises(ControlTimeout, match="did not answer within 0.3 s.*journalctl"):
            call(path, "status", timeout=0.3)
    finally:
        hung.close()


def test_permission_denied_names_the_sockets_group(tmp_path, mocker):
    path = str(tmp_path / "control.sock")
    open(path, "w").close()
    os.chown(path, -1, 20)  # gid 20: dialout on Debian; named by whatever this machine calls it

    group = grp.getgrgid(20).gr_name
    mocker.patch("socket.socket.connect", side_effect=PermissionError(13, "Permission denied"))
    with pytest.raises(SocketPermissionDenied) as err:
        call(path, "status")
    assert str(err.value) == (f"permission denied on {path}: add yourself to the group '{group}' "
                              f"(sudo usermod -aG {group} $USER) and log in again")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to become an unprivileged user for real")
def test_permission_denied_for_real_as_an_unprivileged_user():
    # tmp_path lives under a 0700 directory: use a world-traversable one, like /run/community-gateway
    # is for members of the group
    base = tempfile.mkdtemp(prefix="gw-ctl-")
    try:
        os.chmod(base, 0o755)
        path = os.path.join(base, "control.sock")
        with ControlServer(path, {}, mode=0o660, group=20):
            code = ("import sys\nfrom gateway.control import call, ControlError\n"
                    f"try:\n    call({path!r}, 'ping')\nexcept ControlError as e:\n    print(e); sys.exit(3)\n")
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
            done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                   sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                                  env=env, cwd="/")
        import grp
        assert done.returncode == 3, done.stderr
        assert f"add yourself to the group '{grp.getgrgid(20).gr_name}'" in done.stdout
    finally:
        shutil.rmtree(base)


def test_default_socket_path_as_root_and_as_a_plain_user(mocker, tmp_path):
    mocker.patch("os.geteuid", return_value=0)
    assert default_socket_path("/var/lib/community-gateway") == "/run/community-gateway/control.sock"
    mocker.patch("os.geteuid", return_value=1000)
    mocker.patch("os.access", return_value=False)
    assert default_socket_path(str(tmp_path)) == str(tmp_path / "control.sock")


def test_client_looks_where_the_daemon_is(tmp_path, mocker):
    assert client_socket_path(str(tmp_path), "/srv/gw.sock") == "/srv/gw.sock"
    (tmp_path / "control.sock").touch()
    assert client_socket_path(str(tmp_path)) == str(tmp_path / "control.sock")
    (tmp_path / "control.sock").unlink()
    mocker.patch.object(protocol, "RUN_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    assert client_socket_path(str(tmp_path)) == str(tmp_path / "run" / "control.sock")
