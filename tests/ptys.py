"""A null-modem cable for tests: two linked ptys made by socat, as a context manager.

    with PtyPair(tmp_path) as pty:      # pty.a and pty.b are paths (symlinks to /dev/pts/N)
        master = RtuLink("rs485", pty.a)
        slave = SimBus.rtu(pty.b)
        pty.vanish()                    # the USB adapter is unplugged: both ends die
        pty.restore()                   # ... and plugged back in, under the same names

A pty ignores the baud rate: bytes cross it in microseconds."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

SOCAT = shutil.which("socat")


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.002, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value or `timeout` passes (then AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class PtyPair:
    def __init__(self, directory, a: str = "ttyA", b: str = "ttyB"):
        if SOCAT is None:
            raise RuntimeError("socat is not installed (apt-get install socat)")
        self.dir = Path(directory)
        self.a = str(self.dir / a)
        self.b = str(self.dir / b)
        self.log = self.dir / f"socat-{a}-{b}.log"
        self._proc: subprocess.Popen | None = None

    def start(self) -> PtyPair:
        if self._proc is not None:
            return self
        for link in (self.a, self.b):
            if os.path.islink(link):
                os.unlink(link)  # dangling from a killed socat: it would fool the wait below
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                [SOCAT, "-d", "-d", f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_until(lambda: self._proc.poll() is not None
                       or (os.path.exists(self.a) and os.path.exists(self.b)),
                       timeout=5.0, what=f"socat links {self.a}, {self.b}")
        except AssertionError:
            self.stop()
            raise
        if self._proc.poll() is not None:
            code = self._proc.returncode
            self._proc = None
            raise RuntimeError(f"socat exited with {code}: see {self.log}")
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for link in (self.a, self.b):
            if os.path.islink(link):
                os.unlink(link)

    def vanish(self) -> None:
        """Both ports disappear, as when the USB-RS485 adapter is pulled out."""
        self.stop()

    def restore(self) -> None:
        """The ports come back under the same names (new /dev/pts numbers)."""
        self.start()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> PtyPair:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
