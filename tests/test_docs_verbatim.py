"""Docs that work verbatim (issue 10 item 8): the README's "Play with it by hand" block and the hw/
bench-test procedure are run as written, in a scratch directory. What differs from the reader's
machine is only what the docs themselves make a variable: `$GATEWAY_CONFIG` (a copy of
config/demo.toml on free ports, so a demo running on this machine is not disturbed) and, for the bench
test, `systemctl`/`sudo` (systemd is not PID 1 here: a shim starts and stops `gateway run`)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from tests.mosquitto import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("VIRTUAL_ENV") or ROOT / ".venv") / "bin"


def sh_blocks(markdown: str, heading: str) -> list[str]:
    """The ```sh blocks of the section under `heading` (up to the next heading of the same or a higher level)."""
    m = re.search(rf"^(#+) {re.escape(heading)}\s*$", markdown, re.M)
    assert m, f"no heading {heading!r}"
    level = len(m.group(1))
    rest = markdown[m.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    section = rest[:end.start()] if end else rest
    return re.findall(r"^```sh\n(.*?)^```", section, re.M | re.S)


def scratch_site(tmp_path: Path) -> Path:
    """tmp_path laid out like the checkout: config/demo.toml (on free ports) and .venv."""
    text = (ROOT / "config" / "demo.toml").read_text()
    for port in ("15020", "15021", "15022"):
        text = text.replace(port, str(free_port()))
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "demo.toml").write_text(text)
    (tmp_path / ".venv").symlink_to(BIN.parent)
    return tmp_path / "config" / "demo.toml"


def run_script(script: str, cwd: Path, env: dict, timeout: float = 150) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"the doc's commands did not finish within {timeout:g} s:\n{out}") from None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # whatever the script left running
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GATEWAY_CONFIG", "VIRTUAL_ENV")}
    return dict(env, **extra)


def test_readme_play_with_it_by_hand_runs_as_written(tmp_path):
    [block] = sh_blocks((ROOT / "README.md").read_text(), "Play with it by hand")
    scratch_site(tmp_path)
    r = run_script(block, tmp_path, _env())
    assert r.returncode == 0, r.stdout
    assert re.search(r"^FIRE stair-1-smoke RED since \d\d:\d\d:\d\d \(\d+ s\), latched, "
                     r"sirens ON \(garage-siren, stair-sounder\)$", r.stdout, re.M), r.stdout
    assert "raised red value 1; cause: status 1 (alarm) is a red state" in r.stdout
    assert "silenced: stair-1-smoke.status#1" in r.stdout
    assert "acknowledged: stair-1-smoke.status#1" in r.stdout
    assert "Traceback" not in r.stdout


SYSTEMCTL = r"""#!/bin/bash
# Stand-in for systemctl in a test (systemd is not PID 1 here): community-gateway as a background `gateway run`.
pidfile="$SHIM_STATE/daemon.pid"
case "$1" in
  start|restart)
    [ "$1" = restart ] && "$0" stop "$2"
    setsid gateway run >> "$SHIM_STATE/daemon.log" 2>&1 < /dev/null &
    echo $! > "$pidfile"
    for _ in $(seq 1 200); do gateway status > /dev/null 2>&1 && exit 0; sleep 0.1; done
    echo "community-gateway did not start: $(tail -5 "$SHIM_STATE/daemon.log")" >&2; exit 1 ;;
  stop)
    [ -f "$pidfile" ] || exit 0
    pid=$(cat "$pidfile"); kill "$pid" 2> /dev/null
    for _ in $(seq 1 200); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    rm -f "$pidfile" ;;
  status)
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2> /dev/null && echo "active (running)" ;;
esac
"""


def test_hw_bench_test_runs_as_written_against_the_simulator(tmp_path):
    blocks = sh_blocks((ROOT / "hw" / "README.md").read_text(), "Bench test on a real rig")
    assert len(blocks) >= 7
    cfg = scratch_site(tmp_path)
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "systemctl").write_text(SYSTEMCTL)
    (shim / "sudo").write_text('#!/bin/sh\nexec "$@"\n')  # the test already runs as the user it needs
    for f in shim.iterdir():
        f.chmod(0o755)
    env = _env(GATEWAY_CONFIG=str(cfg), SHIM_STATE=str(tmp_path), PATH=f"{shim}:{BIN}:{os.environ['PATH']}")
    sim = subprocess.Popen([str(BIN / "gateway"), "sim", "-c", str(cfg), "--scenario", "normal"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        subprocess.run(["systemctl", "start", "community-gateway"], env=env, check=True, timeout=60)
        r = run_script("\n".join(blocks), tmp_path, env)
    finally:
        subprocess.run(["systemctl", "stop", "community-gateway"], env=env, timeout=60)
        sim.terminate()
        sim.wait(10)
    out = r.stdout
    assert r.returncode == 0, out
    assert "configuration is valid" in out
    assert re.search(r"unit +1 .*water-level-rs485", out) and re.search(r"unit +5 ", out) and re.search(r"unit +6 ", out), out
    assert re.search(r"^OK: 5 sensors good, no uplink configured", out, re.M), out
    assert re.search(r"garage-b2-water +level +[\d.]+ +cm +good", out), out
    assert "siren 'garage-siren' test done at" in out and "siren 'stair-sounder' test done at" in out
    assert "silenced: nothing was sounding" in out
    assert "applying it now" in out
    assert "Traceback" not in out and "not running" not in out
