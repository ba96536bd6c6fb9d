"""The launcher (what the unit's ExecStart= runs, outside every release) decides alone: a release on
trial that crashes at every start, or never becomes healthy within health_s, is rolled back to the one
before it, with the reason journalled; a healthy one is kept and the older releases removed.
The releases here are stand-ins (servicekit.fake_release); tests/update/test_end_to_end.py runs real ones."""

from __future__ import annotations

import os

from servicekit import Service, boots, fake_release, install_launcher, wait_for
from gateway.update import journal as J
from gateway.update import releases as R
from gateway.update.launcher import ask_status


def begin_trial(lay, version, health_s=5.0, previous="0.1.0", probation_s=0.0):
    """The journal lines apply_bundle writes up to the restart, and the switch."""
    j = J.Journal(lay.journal_path)
    base = {"update": "t" + version, "by": "test", "version": version}
    for step in ("received", "verified", "installing", "installed"):
        j.append({**base, "step": step, **({"running": previous} if step == "received" else {})})
    j.append({**base, "step": "switching", "previous": previous, "health_s": health_s,
                 "probation_s": probation_s, "keep": 2})
    R.switch(lay, version)
    j.append({**base, "step": "switched", "previous": previous})
    j.append({**base, "step": "restarting"})
    return j


def last(lay):
    return J.state(J.Journal(lay.journal_path).entries())["last"]


def running(lay):
    try:
        return ask_status(os.path.join(lay.data_dir, "ctl.sock"), timeout=1)["release"]
    except (OSError, ValueError):
        return None


def test_the_launcher_runs_without_the_gateway_package(tmp_path, layout):
    """Copied as install.sh copies it, run by the system python3 with no site-packages of ours:
    it cannot depend on a release (the one it starts may not import)."""
    import subprocess
    from servicekit import PYTHON
    launcher = install_launcher(layout)
    r = subprocess.run([PYTHON, "-I", "-S", launcher, "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for f in ("launcher.py", "journal.py", "releases.py"):
        imports = [line for line in open(os.path.join(os.path.dirname(launcher), f))
                   if line.lstrip().startswith(("import ", "from "))]
        assert not [line for line in imports if "gateway" in line], f


def test_a_release_that_crashes_at_every_start_is_rolled_back(layout):
    fake_release(layout, "0.1.0", "healthy")
    fake_release(layout, "0.2.0", "crash")
    begin_trial(layout, "0.2.0", health_s=30)
    svc = Service(layout).start()
    try:
        wait_for(lambda: running(layout) == "0.1.0", 30, "the previous release running again")
    finally:
        svc.stop()
    assert boots(layout) == ["0.2.0"] * J.MAX_STARTS + ["0.1.0"]
    st = last(layout)
    assert st["outcome"] == "rolled_back" and st["reason"] == "crash"
    assert "started 3 times" in st["message"]
    assert R.current_version(layout) == "0.1.0"


def test_a_release_whose_buses_never_come_up_is_rolled_back(layout):
    fake_release(layout, "0.1.0", "healthy")
    fake_release(layout, "0.2.0", "unhealthy")
    begin_trial(layout, "0.2.0", health_s=2)
    svc = Service(layout).start()
    try:
        wait_for(lambda: last(layout)["outcome"], 20, "the health gate's outcome")
        wait_for(lambda: running(layout) == "0.1.0", 20, "the previous release running again")
    finally:
        svc.stop()
    st = last(layout)
    assert st["outcome"] == "rolled_back" and st["reason"] == "health"
    assert "port not open" in st["message"] and "within 2 s" in st["message"]
    assert boots(layout) == ["0.2.0", "0.1.0"]
    assert R.current_version(layout) == "0.1.0"
    assert R.installed(layout) and "0.2.0" in R.installed(layout)  # kept for a look; pruned by the next update


def test_a_healthy_release_is_kept_and_only_two_remain(layout):
    fake_release(layout, "0.0.9", "healthy")
    fake_release(layout, "0.1.0", "healthy")
    fake_release(layout, "0.2.0", "slow")  # healthy after 1.5 s: the gate waits for it
    begin_trial(layout, "0.2.0", health_s=10)
    svc = Service(layout).start()
    try:
        wait_for(lambda: last(layout)["outcome"], 20, "the health gate's outcome")
        wait_for(lambda: "pruned" == J.Journal(layout.journal_path).entries()[-1]["step"], 5, "the prune")
    finally:
        svc.stop()
    st = J.state(J.Journal(layout.journal_path).entries())
    assert st["last"]["outcome"] == "healthy"
    assert st["previous"] == "0.1.0"
    assert sorted(R.installed(layout)) == ["0.1.0", "0.2.0"]
    assert boots(layout) == ["0.2.0"]
    assert svc.starts == 1


def test_no_trial_no_watcher(layout):
    """An ordinary start execs current and journals nothing."""
    fake_release(layout, "0.1.0", "healthy")
    svc = Service(layout).start()
    try:
        wait_for(lambda: running(layout) == "0.1.0", 20, "0.1.0 running")
    finally:
        svc.stop()
    assert J.Journal(layout.journal_path).entries() == []


def test_exec_condition_rolls_back_a_release_whose_check_fails(layout):
    """The unit's ExecCondition= runs `gateway check` through the launcher: a release on trial that
    cannot check the config (here: it crashes on import) is rolled back at once, and the previous
    release's check lets the start go ahead (a skipped start is never restarted by systemd)."""
    import subprocess
    from servicekit import PYTHON
    fake_release(layout, "0.1.0", "healthy")
    fake_release(layout, "0.2.0", "crash")
    begin_trial(layout, "0.2.0")
    launcher = install_launcher(layout)
    r = subprocess.run([PYTHON, launcher, "--install-root", layout.install_root, "--data-dir", layout.data_dir,
                        "--condition", "--", "check", "-c", "/dev/null"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "configuration is valid" in r.stdout
    st = last(layout)
    assert st["outcome"] == "rolled_back" and st["reason"] == "check"
    assert R.current_version(layout) == "0.1.0"


def test_current_moved_by_hand_during_a_trial_stands(layout):
    """install.sh re-run (or a technician) points current elsewhere during a trial: that choice is
    kept, the trial ends without a switch."""
    fake_release(layout, "0.1.0", "healthy")
    fake_release(layout, "0.2.0", "healthy")
    begin_trial(layout, "0.2.0")
    R.switch(layout, "0.1.0")
    svc = Service(layout).start()
    try:
        wait_for(lambda: running(layout) == "0.1.0", 20, "0.1.0 running")
    finally:
        svc.stop()
    st = last(layout)
    assert st["outcome"] == "rolled_back" and st["reason"] == "moved"
    assert boots(layout) == ["0.1.0"] and R.current_version(layout) == "0.1.0"


def test_the_gate_finds_the_control_socket_the_config_names(tmp_path):
    from gateway.update.launcher import configured_socket
    conf = tmp_path / "etc" / "gateway.toml"
    conf.parent.mkdir()
    conf.write_text('[gateway]\nid = "x"\ncontrol_socket = "../run/ctl.sock"\n')
    assert configured_socket(["run", "-c", str(conf)]) == str(tmp_path / "run" / "ctl.sock")
    conf.write_text('[gateway]\nid = "x"\n')
    assert configured_socket(["run", "-c", str(conf)]) is None
    assert configured_socket(["run"]) is None
