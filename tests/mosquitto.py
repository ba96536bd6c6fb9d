"""A real mosquitto for tests and benchmarks: started on a free port from a config file written into a
temporary directory, stopped and started again on the same port to make outages.

    broker = Mosquitto(tmp_path)            # plain listener on 127.0.0.1:<free port>
    broker.start()
    ...
    broker.stop(); broker.start()           # an outage, same port
    broker.close()

Options: `tls=TlsFiles(...)` adds a listener that requires client certificates (its port is
`broker.tls_port`), `users={"name": "password"}` turns anonymous access off, `message_size_limit`,
`persistence=True` keeps sessions (a platform's persistent subscription) across stop()/start().
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass
class TlsFiles:
    ca: str
    cert: str
    key: str
    require_certificate: bool = True


class Mosquitto:
    """One mosquitto process the test owns."""

    def __init__(self, workdir: str | os.PathLike | None = None, *, tls: TlsFiles | None = None,
                 users: dict[str, str] | None = None, message_size_limit: int | None = None,
                 persistence: bool = False, max_queued_messages: int = 0):
        if not os.path.exists(MOSQUITTO):
            raise RuntimeError(f"{MOSQUITTO} not installed (apt-get install mosquitto)")
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="mosquitto-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.tls = tls
        self.users = users
        self.message_size_limit = message_size_limit
        self.persistence = persistence
        self.max_queued_messages = max_queued_messages
        self.log_path = self.dir / "mosquitto.log"
        self.conf_path = self.dir / "mosquitto.conf"
        self.proc: subprocess.Popen | None = None
        self._write_conf()

    def _write_conf(self) -> None:
        lines = [
            # as root mosquitto drops to the "mosquitto" user, which cannot read a 0700 pytest tmp dir
            "user root" if os.geteuid() == 0 else "",
            "per_listener_settings false",
            f"allow_anonymous {'false' if self.users else 'true'}",
            # 0 = unlimited: the default 1000 silently drops QoS 1 messages for a slow test subscriber
            f"max_queued_messages {self.max_queued_messages}",
            "log_type all",
            f"log_dest file {self.log_path}",
            f"listener {self.port} {self.host}",
        ]
        if self.message_size_limit:
            lines.insert(0, f"message_size_limit {self.message_size_limit}")
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.dir}/"]
        if self.users:
            pwfile = self.dir / "passwd"
            pwfile.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            os.chmod(pwfile, 0o600)
            subprocess.run(["mosquitto_passwd", "-U", str(pwfile)], check=True, capture_output=True)
            lines.append(f"password_file {pwfile}")
        if self.tls:
            lines += [
                f"listener {self.tls_port} {self.host}",
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.cert}",
                f"keyfile {self.tls.key}",
                f"require_certificate {'true' if self.tls.require_certificate else 'false'}",
            ]
        self.conf_path.write_text("\n".join(line for line in lines if line) + "\n")

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> "Mosquitto":
        if self.running:
            return self
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        deadline = time.monotonic() + timeout
        for port in ports:
            while not self._accepts(port):
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                    raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err}\n{self.log()}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"mosquitto did not listen on {port} within {timeout} s\n{self.log()}")
                time.sleep(0.02)
        return self

    def _accepts(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=0.2):
                return True
        except OSError:
            return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (mosquitto saves persistent sessions), then wait until the port is free again."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
        wait_for(lambda: not self._accepts(self.port), timeout, what=f"port {self.port} to close")

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def make_tls_files(directory: str | os.PathLike, hostname: str = "127.0.0.1") -> dict[str, str]:
    """A CA, a server certificate for `hostname` (IP and DNS SAN) and a client certificate, made with
    the openssl CLI (the venv has no `cryptography`). Returns paths: ca, server_cert, server_key,
    client_cert, client_key, other_ca (a CA nobody signed with, for verification failures)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-ca")
    run("req", "-x509", *key, "-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "2",
        "-subj", "/CN=other-ca")
    san = f"subjectAltName=IP:{hostname},DNS:localhost" if hostname[0].isdigit() else \
        f"subjectAltName=DNS:{hostname}"
    (d / "server.ext").write_text(san + "\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, ext in (("server", "server.ext"), ("client", "client.ext")):
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", ext)
    return {"ca": str(d / "ca.pem"), "server_cert": str(d / "server.pem"), "server_key": str(d / "server.key"),
            "client_cert": str(d / "client.pem"), "client_key": str(d / "client.key"),
            "other_ca": str(d / "other-ca.pem")}
