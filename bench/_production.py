"""Run the gateway CLI as a production install would: `python bench/_production.py run -c FILE`.

The bench extra brings matplotlib and with it numpy into the venv. A gateway installed on a Pi
(`pip install community-gateway`) has neither, but sqlite-utils imports numpy (and pandas) when
they are importable, which costs ~19 MB of RSS and ~0.3 s of start-up. The daemon benchmarks start
the gateway through this launcher, which hides those two packages from the import system, so that
what is measured is what runs on a Pi. Nothing else differs from `python -m gateway.cli`.

With BENCH_THREAD_NAMES=1 each Python thread also gives its name to the kernel (prctl
PR_SET_NAME, once at thread start), so /proc/PID/task/TID/comm says which thread used the CPU."""

import os
import sys
from pathlib import Path


def _name_threads() -> None:
    import ctypes
    import threading

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    inner = threading.Thread._bootstrap_inner

    def bootstrap_inner(self):
        prctl(15, self.name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
        inner(self)

    threading.Thread._bootstrap_inner = bootstrap_inner


if __name__ == "__main__":
    for name in ("numpy", "pandas"):
        sys.modules[name] = None  # `import numpy` now raises ImportError, as on a clean install
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo, not bench/
    if os.environ.get("BENCH_THREAD_NAMES") == "1":
        _name_threads()
    sys.argv[0] = "gateway"
    from gateway.cli import main

    sys.exit(main())
