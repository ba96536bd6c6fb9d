"""N receivers as processes, for a bench or a test: each `gateway-platform receive --share GROUP
--instance i`, with handles to kill (-9), restart and measure them.

    rxs = start_receivers(3, "127.0.0.1", 1883, "postgresql://postgres@127.0.0.1/city", group="platform")
    rxs[1].kill9(); rxs[1].start()        # same instance, same session: the broker re-sends the rest
    cpu = [rx.cpu_s() for rx in rxs]      # utime + stime from /proc, this process and earlier ones
    stop_receivers(rxs)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


class ReceiverProcess:
    """One `gateway-platform receive` process of a shared-subscription group."""

    def __init__(self, host: str, port: int, store: str, *, group: str, instance: int, root: str = "city/v1",
                 session_expiry_s: int = 3600, batch: int = 500, linger_s: float = 0.05, log_dir: str | os.PathLike | None = None,
                 env: dict | None = None):
        self.host, self.port, self.store = host, port, store
        self.group, self.instance, self.root = group, instance, root
        self.session_expiry_s, self.batch, self.linger_s = session_expiry_s, batch, linger_s
        self.log_path = Path(log_dir) / f"receiver-{group}-{instance}.log" if log_dir else None
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.cpu_before = 0.0  # CPU seconds of the earlier processes of this instance (killed ones)
        self.starts = 0

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", "gateway.platform.cli", "receive", "--quiet", "--host", self.host,
                "--port", str(self.port), "--root", self.root, "--store", self.store, "--share", self.group,
                "--instance", str(self.instance), "--session-expiry", str(self.session_expiry_s),
                "--batch", str(self.batch), "--linger", str(self.linger_s)]

    def start(self, timeout: float = 30.0) -> "ReceiverProcess":
        """Start the process and wait for its 'receiving' line (subscribed)."""
        err = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=err, text=True, env=self.env,
                                     cwd=Path(__file__).resolve().parents[2])
        if err is not subprocess.DEVNULL:
            err.close()
        self.starts += 1
        got: list[str] = []
        reader = threading.Thread(target=lambda: got.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not got or "receiving" not in got[0]:
            self.kill9()
            raise RuntimeError(f"receiver {self.group}-{self.instance} did not subscribe within {timeout} s: "
                               f"{got[0].strip() if got else 'no output'}"
                               f"{' (see ' + str(self.log_path) + ')' if self.log_path else ''}")
        # drain the rest (the summary at exit) so the pipe never blocks the receiver
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_s(self) -> float:
        """utime + stime of this instance's processes so far (a killed process's last reading kept)."""
        now = 0.0
        if self.running:
            try:
                fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                now = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                self._last_cpu = now
            except (OSError, IndexError, ValueError):
                now = getattr(self, "_last_cpu", 0.0)
        return self.cpu_before + now

    def kill9(self) -> None:
        if self.proc is None:
            return
        self.cpu_before = self.cpu_s()
        self._last_cpu = 0.0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM: the receiver commits and acknowledges what it holds, prints its summary, exits."""
        if self.proc is None:
            return None
        self.cpu_before = self.cpu_s()
        self._last_cpu = 0.0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(10)
        self.proc = None
        return rc


def start_receivers(n: int, host: str, port: int, store: str, *, group: str = "platform",
                    **kwargs) -> list[ReceiverProcess]:
    """N receivers of one group, started in parallel; each is subscribed when this returns."""
    rxs = [ReceiverProcess(host, port, store, group=group, instance=i + 1, **kwargs) for i in range(n)]
    errors: list[BaseException] = []

    def go(rx):
        try:
            rx.start()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=go, args=(rx,)) for rx in rxs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        stop_receivers(rxs)
        raise errors[0]
    return rxs


def stop_receivers(rxs: list[ReceiverProcess]) -> None:
    for rx in rxs:
        if rx.running:
            rx.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    for rx in rxs:
        if rx.proc is not None:
            rx.stop(max(1.0, deadline - time.monotonic()))
