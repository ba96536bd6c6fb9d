"""kill -9 (a power cut) at every step of an update, including mid-install and mid-switch: the next
start (the launcher under a Restart=always stand-in) boots into a working release, the journal says
which, and the update is over - kept (healthy) when the cut came after the switch, undone
("failed: interrupted", the half-made release removed) when it came before."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from updatekit import fake_wheels
from servicekit import Service, boots, fake_release, wait_for
from gateway.update import journal as J
from gateway.update import releases as R
from gateway.update.bundle import build_bundle
from gateway.update.launcher import ask_status

HERE = os.path.dirname(os.path.abspath(__file__))
BEFORE = ["received", "verified", "installing", "mid-install", "installed", "switching", "mid-switch"]
AFTER = ["after-rename", "switched", "restarting"]


def running(lay):
    try:
        return ask_status(os.path.join(lay.data_dir, "ctl.sock"), timeout=1)["release"]
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize("point", BEFORE + AFTER)
def test_kill9_at_each_step(tmp_path, layout, release_key, point):
    fake_release(layout, "0.1.0", "healthy")
    out = tmp_path / "b.tar"
    build_bundle(version="0.2.0", wheels_dir=str(fake_wheels(tmp_path / "w", "0.2.0")), key_path=release_key[0],
                 out=str(out))
    r = subprocess.run([sys.executable, os.path.join(HERE, "cut_apply.py"), str(out), layout.install_root,
                        layout.data_dir, release_key[1], point], capture_output=True, text=True, timeout=60)
    assert r.returncode == -9, (r.stdout, r.stderr)

    svc = Service(layout).start()  # the power comes back
    try:
        wait_for(lambda: J.state(J.Journal(layout.journal_path).entries())["last"]["outcome"], 30,
                 "the update to be over")
        want = "0.2.0" if point in AFTER else "0.1.0"
        wait_for(lambda: running(layout) == want, 20, f"{want} running")
    finally:
        svc.stop()
    st = J.state(J.Journal(layout.journal_path).entries())
    assert R.current_version(layout) == want and layout.complete(want)
    if point in AFTER:
        assert st["last"]["outcome"] == "healthy" and st["previous"] == "0.1.0"
        assert boots(layout) == ["0.2.0"]
    else:
        assert st["last"]["outcome"] == "failed" and st["last"]["reason"] == "interrupted"
        assert not os.path.exists(layout.release_dir("0.2.0"))
        assert boots(layout) == ["0.1.0"]
    assert not os.path.lexists(os.path.join(layout.releases, ".current.tmp"))
    assert not [n for n in os.listdir(layout.update_dir) if n.startswith("staging-")]


def test_kill9_during_the_trial_and_during_the_rollback(tmp_path, layout):
    """The unit killed while the new release is on trial: the next start counts again and the gate
    runs again; killed between `rolling_back` and the switch back: the next start finishes the rollback."""
    from test_launcher import begin_trial

    fake_release(layout, "0.1.0", "healthy")
    fake_release(layout, "0.2.0", "unhealthy")
    begin_trial(layout, "0.2.0", health_s=60)
    svc = Service(layout).start()
    wait_for(lambda: running(layout) == "0.2.0", 20, "0.2.0 on trial")
    svc.kill9()
    svc.stop()
    j = J.Journal(layout.journal_path)
    trial = J.state(j.entries())["trial"]
    assert trial and trial["starts"] == 1
    # the gate decided to roll back, then the power went before it switched
    j.append({"update": trial["update"], "by": "launcher", "step": "rolling_back", "version": "0.2.0",
              "reason": "health", "message": "not healthy within 60 s: bus rs485: port not open", "to": "0.1.0"})
    svc = Service(layout).start()
    try:
        wait_for(lambda: running(layout) == "0.1.0", 20, "0.1.0 running")
    finally:
        svc.stop()
    st = J.state(j.entries())
    assert st["last"]["outcome"] == "rolled_back" and st["last"]["reason"] == "health"
    assert R.current_version(layout) == "0.1.0"
    assert boots(layout) == ["0.2.0", "0.1.0"]
