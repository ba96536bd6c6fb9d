"""fetchsite: the platform-driven update's site: a CA that signs both the broker's TLS listener and the HTTPS file
server (the download is pinned by the uplink's CA), a real mosquitto, the reference receiver, the
platform's command key and a `gateway run` process with [updates]."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from fetchkit import Ca, FileServer
from drivers.sim.modbus_device import SimBus
from gateway.config import load_config
from gateway.platform import Receiver
from gateway.platform.keys import keygen, load_private_key
from gateway.platform.sign import send_command, sign_command
from tests.daemonkit import stop_daemon, write_config
from tests.mosquitto import Mosquitto, TlsFiles, wait_for

GW = "upd-gw"


class Site:
    """One gateway with the update path configured; `send(args)` signs and publishes an `update`."""

    def __init__(self, tmp: Path, *, updates: str | None = 'release_keys = ["./release.pub"]\ninstall_root = "{opt}"'):
        self.tmp = tmp
        self.ca = Ca.make(tmp / "ca")
        broker_cert = self.ca.issue("127.0.0.1", "broker")
        self.broker = Mosquitto(tmp / "broker", tls=TlsFiles(self.ca.pem, *broker_cert, require_certificate=False))
        self.sim = SimBus.tcp("127.0.0.1", 0)
        keygen(str(tmp / "platform"))
        keygen(str(tmp / "intruder"))
        keygen(str(tmp / "release"))  # a release key to pin; the bundles of these tests are not signed by it
        self.key = load_private_key(str(tmp / "platform.key"))
        self.updates = updates
        self.proc = None
        self.rx = None
        self.replies: list[dict] = []

    def __enter__(self) -> "Site":
        self.broker.start()
        self.sim.__enter__()
        extra = f"""
            [uplink]
            host = "127.0.0.1"
            port = {self.broker.tls_port}

            [uplink.tls]
            ca = "{self.ca.pem}"

            [commands]
            platform_keys = ["./platform.pub"]
        """
        if self.updates is not None:
            extra += "\n[updates]\n" + self.updates.format(opt=self.tmp / "opt") + "\n"
        self.cfg_path = write_config(self.tmp, GW, self.sim.port, extra=extra)
        self.sim.add_device(1, load_config(self.cfg_path).sensors["garage-b2-water"].profile, {"level": 2.0})
        self.rx = Receiver("127.0.0.1", self.broker.port).start()
        self.start_gateway()
        return self

    def start_gateway(self) -> None:
        # in its own directory, as systemd starts it in /: apply_bundle's import check of a new release
        # (`python -c`, sys.path[0] = the cwd) would otherwise see this checkout's egg-info
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(self.cfg_path)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=self.tmp)
        wait_for(lambda: self.rx.presence.get(GW, {}).get("state") == "online" or self.proc.poll() is not None,
                 30, what="birth")
        assert self.proc.poll() is None, self.proc.stdout.read()

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.rx.presence.pop(GW, None)

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            out = stop_daemon(self.proc)
            if exc[0] is not None:
                print(out)
        self.rx.close()
        self.sim.__exit__(*exc)
        self.broker.close()

    def file_server(self, files: dict, ca: Ca | None = None) -> FileServer:
        return FileServer(ca or self.ca, files)

    def command(self, args: dict, key=None, **kw) -> dict:
        return sign_command(key or self.key, GW, "update", args, **kw)

    def send(self, cmd: dict, timeout: float = 60.0) -> list[dict]:
        """Publish `cmd` and wait for its final reply (gateway/platform/sign.py send_command)."""
        return send_command("127.0.0.1", self.broker.port, cmd, timeout=timeout)

    def send_async(self, cmd: dict) -> tuple[threading.Thread, list]:
        got: list = []

        def run():
            try:
                send_command("127.0.0.1", self.broker.port, cmd, timeout=20, on_reply=got.append)
            except Exception as e:  # noqa: BLE001 - a killed gateway sends no final reply
                got.append({"error_in_test": repr(e)})

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t, got

    def audits(self, command_id: str) -> list[dict]:
        return [e for e in self.rx.of_type("audit") if e.get("command_id") == command_id]

    def outcomes(self, command_id: str) -> list[str]:
        return [e.get("outcome") for e in self.audits(command_id)]

    def apply_steps(self, command_id: str) -> list[str]:
        """apply_bundle's journalled steps for this command, as the daemon audits them."""
        return [e.get("result") for e in self.rx.of_type("audit") if e.get("actor") == f"platform:{command_id}"]

    @property
    def fetch_dir(self) -> Path:
        return self.tmp / "var" / "update-fetch"


def replies_json(replies) -> str:
    return json.dumps(replies, indent=1, ensure_ascii=False)
