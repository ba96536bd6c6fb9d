"""A gateway with no [commands] and no [updates] loads neither the signing nor the update code: found
by the 50-sensor memory fault test after the update merge (RSS at start 36.9 -> 48.6 MB, over its
45 MB bound): the daemon's step-journal audit imported gateway.update, whose package __init__
imported apply -> bundle -> cryptography, jsonschema, tarfile. Run in a fresh interpreter so what
other tests imported does not count."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_daemon_without_commands_or_updates_never_imports_cryptography_or_the_apply_code(tmp_path):
    (tmp_path / "gateway.toml").write_text(textwrap.dedent(f"""
        [gateway]
        id = "imports-gw"
        data_dir = "{tmp_path}/var"
        control_socket = "{tmp_path}/var/control.sock"

        [gpio]
        backend = "sim"

        [buses.b0]
        type = "tcp"
        host = "127.0.0.1"
        port = 1

        [[sensors]]
        name = "level-01"
        bus = "b0"
        unit = 1
        profile = "water-level-rs485"
        """))
    code = textwrap.dedent(f"""
        import sys, time
        from gateway.config import load_config
        from gateway.service.daemon import Daemon
        d = Daemon(load_config({str(tmp_path / 'gateway.toml')!r}))
        d.start()
        time.sleep(1.5)  # a few supervisor ticks: the journal audit has run
        d.stop()
        print(sorted(m for m in sys.modules if m.split('.')[0] in ('cryptography', 'jsonschema', 'tarfile')
                     or m in ('gateway.update.apply', 'gateway.update.bundle', 'gateway.commands')))
        """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout[-2000:]
