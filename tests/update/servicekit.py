"""A stand-in for systemd (Restart=always) and for releases, so the launcher is tested as the unit
runs it: `python3 <install_root>/launcher/launcher.py ... -- run -c FILE`, restarted whenever it ends.

    install_launcher(layout)             copies launcher.py, journal.py, releases.py as install.sh does
    fake_release(layout, "0.2.0", "unhealthy")   releases/0.2.0 whose bin/gateway is a tiny daemon
    svc = Service(layout, conf); svc.start(); ...; svc.stop()

A fake release's daemon answers `status` on the control socket with its version and a health that its
behaviour says: "healthy", "unhealthy" (a bus that never comes up), "crash" (exits 1 at once, like a
release that fails on import), "slow" (healthy after 1.5 s). It holds daemon.lock (flock, pid) like the real
one and appends its version to <data_dir>/boots.log at each start."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from gateway.update import releases as R

UPDATE_SRC = Path(__file__).resolve().parents[2] / "gateway" / "update"
LAUNCHER_FILES = ("launcher.py", "journal.py", "releases.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"

FAKE_DAEMON = r'''#!{python}
import json, os, signal, socket, sys, threading, time
VERSION = {version!r}
BEHAVIOUR = {behaviour!r}
data_dir, sock_path = {data_dir!r}, {sock!r}
with open(os.path.join(data_dir, "boots.log"), "a") as f:
    f.write(VERSION + "\n")
if sys.argv[1:2] == ["check"]:
    sys.exit(1 if BEHAVIOUR == "crash" else print("configuration is valid"))
if BEHAVIOUR == "crash":
    sys.exit("ImportError: cannot import name 'Daemon' (a broken release)")
import fcntl
_lock = open(os.path.join(data_dir, "daemon.lock"), "a+")  # held for the life of the process, like ownership.py
fcntl.flock(_lock, fcntl.LOCK_EX)
_lock.truncate(0)
_lock.write(json.dumps({{"pid": os.getpid()}}))
_lock.flush()
t0 = time.monotonic()
try:
    os.unlink(sock_path)
except FileNotFoundError:
    pass
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sock_path)
srv.listen(8)
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
while True:
    c, _ = srv.accept()
    c.recv(65536)
    healthy = BEHAVIOUR == "healthy" or (BEHAVIOUR == "slow" and time.monotonic() - t0 > 1.5)
    problems = [] if healthy else ["bus rs485: port not open (No such file or directory)"]
    c.sendall((json.dumps({{"ok": True, "result": {{"release": VERSION, "firmware": VERSION,
               "health": {{"healthy": healthy, "problems": problems}}}}}}) + "\n").encode())
    c.close()
'''


def install_launcher(layout: R.Layout) -> str:
    d = Path(layout.install_root) / "launcher"
    d.mkdir(parents=True, exist_ok=True)
    for f in LAUNCHER_FILES:
        shutil.copy2(UPDATE_SRC / f, d / f)
    return str(d / "launcher.py")


def socket_of(layout: R.Layout) -> str:
    return os.path.join(layout.data_dir, "ctl.sock")


def fake_release(layout: R.Layout, version: str, behaviour: str = "healthy") -> str:
    d = Path(layout.release_dir(version))
    (d / "bin").mkdir(parents=True, exist_ok=True)
    exe = d / "bin" / "gateway"
    exe.write_text(FAKE_DAEMON.format(python=PYTHON, version=version, behaviour=behaviour,
                                      data_dir=layout.data_dir, sock=socket_of(layout)))
    exe.chmod(0o755)
    (d / R.COMPLETE).write_text(version + "\n")
    return str(d)


def boots(layout: R.Layout) -> list[str]:
    p = Path(layout.data_dir) / "boots.log"
    return p.read_text().split() if p.exists() else []


class Service:
    """systemd's Restart=always, RestartSec=`restart_s`, for the launcher command line."""

    def __init__(self, layout: R.Layout, args=("run", "-c", "/dev/null"), restart_s: float = 0.2,
                 socket: str | None = None, env: dict | None = None):
        self.layout = layout
        self.argv = [PYTHON, install_launcher(layout), "--install-root", layout.install_root,
                     "--data-dir", layout.data_dir, "--socket", socket or socket_of(layout), "--", *args]
        self.restart_s = restart_s
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Service":
        self._thread.start()
        return self

    def _run(self) -> None:
        log = Path(self.layout.data_dir) / "service.log"
        while not self._stop.is_set():
            with open(log, "ab") as out:
                self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                             start_new_session=True, env=self.env, cwd=self.layout.data_dir)
            self.starts += 1
            self.proc.wait()
            # systemd then stops what is left in the unit's cgroup (KillMode=control-group): the watcher
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self._stop.wait(self.restart_s):
                break

    def stop(self) -> None:
        self._stop.set()
        p = self.proc
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self._thread.join(30)
        if p is not None:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # the watcher, if it outlived the daemon
            except ProcessLookupError:
                pass

    def log(self) -> str:
        p = Path(self.layout.data_dir) / "service.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def kill9(self) -> None:
        """A power cut of the whole unit: the daemon and its watcher, SIGKILL."""
        p = self.proc
        if p is not None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def wait_for(cond, timeout: float, what: str, poll_s: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
