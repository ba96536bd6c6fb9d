"""A config push whose watch a power cut interrupted (issue 11 item 1: config `.previous`).

Before: the watch lived only in the daemon's memory. A push applied, then power lost inside the watch
window: the gateway booted into the pushed config with nobody watching it, so a config that had cut
the uplink stayed for good (the gateway stranded until a truck rolls). Now the watch is marked on disk
(`<config>.push-watch`) before the reload, and the next start resumes it with a full window; the
`.previous` it would roll back to is validated first, and a bad one, or a bad marker, is moved aside as
`NAME.corrupt-<time>` and reported as a fault, never stopping the daemon."""

from __future__ import annotations

import json

from gateway.commands.config_push import ConfigPush
from test_commands_push import GOOD, NEW, ReloadingDaemon, site  # noqa: F401 - site is a fixture


def power_cut_during_watch(path):
    """Push NEW with a gateway that never turns healthy, and lose power before the watch ends."""
    daemon = ReloadingDaemon(str(path))
    push = ConfigPush(daemon, healthy=lambda h: False, report=lambda f: None, watch_s=3600, poll_s=0.02)
    push.start(NEW, "cmd-cut")
    push._cancel.set()  # the process dies: its thread ends, no outcome, no file touched after this
    push.wait(5.0)
    assert path.read_text() == NEW


def restart(path, healthy, watch_s=0.3):
    daemon = ReloadingDaemon(str(path))
    outcomes, faults = [], []
    push = ConfigPush(daemon, healthy=healthy, report=outcomes.append, watch_s=watch_s, poll_s=0.02,
                      fault=faults.append)
    resumed = push.resume()
    assert push.wait(5.0)
    return push, daemon, outcomes, faults, resumed


def test_a_watch_cut_by_a_power_loss_resumes_at_start_and_rolls_back(site):
    _, path = site
    power_cut_during_watch(path)
    assert (path.parent / "gateway.toml.push-watch").exists()
    _, daemon, outcomes, faults, resumed = restart(path, healthy=lambda h: False)
    assert resumed
    assert [o["outcome"] for o in outcomes] == ["rolled_back"] and outcomes[0]["command_id"] == "cmd-cut"
    assert path.read_text() == GOOD and len(daemon.reloads) == 1
    assert not (path.parent / "gateway.toml.push-watch").exists() and faults == []


def test_a_resumed_watch_that_turns_healthy_is_applied(site):
    _, path = site
    power_cut_during_watch(path)
    _, _, outcomes, _, _ = restart(path, healthy=lambda h: True)
    assert [o["outcome"] for o in outcomes] == ["applied"]
    assert path.read_text() == NEW and not (path.parent / "gateway.toml.push-watch").exists()


def test_a_corrupt_previous_is_moved_aside_and_reported_not_rolled_back_to(site):
    _, path = site
    power_cut_during_watch(path)
    (path.parent / "gateway.toml.previous").write_text("[gateway\nid = ")  # torn by a bad card
    _, daemon, outcomes, faults, resumed = restart(path, healthy=lambda h: False)
    assert not resumed and outcomes == [] and daemon.reloads == []
    assert path.read_text() == NEW, "the running config stays: there is nothing sound to go back to"
    assert [f["reason"] for f in faults] == ["previous_config_corrupt"]
    assert list(path.parent.glob("gateway.toml.previous.corrupt-*"))
    assert not (path.parent / "gateway.toml.previous").exists()
    assert not (path.parent / "gateway.toml.push-watch").exists()


def test_a_corrupt_marker_is_moved_aside_and_reported(site):
    _, path = site
    for junk in (b"\x00\xff{", b'["not", "a", "dict"]', b'{"command_id": 3}'):
        (path.parent / "gateway.toml.push-watch").write_bytes(junk)
        _, daemon, outcomes, faults, resumed = restart(path, healthy=lambda h: False)
        assert not resumed and outcomes == [] and daemon.reloads == []
        assert [f["reason"] for f in faults] == ["push_watch_corrupt"], junk
        assert not (path.parent / "gateway.toml.push-watch").exists()
    assert len(list(path.parent.glob("gateway.toml.push-watch.corrupt-*"))) >= 1


def test_a_marker_for_another_config_is_dropped(site):
    """A technician replaced the file on site after the cut: that file is theirs, not the push's."""
    _, path = site
    power_cut_during_watch(path)
    path.write_text(GOOD.replace("poll_s = 1.0", "poll_s = 3.0"))
    _, daemon, outcomes, faults, resumed = restart(path, healthy=lambda h: False)
    assert not resumed and outcomes == [] and daemon.reloads == [] and faults == []
    assert not (path.parent / "gateway.toml.push-watch").exists()


def test_the_marker_names_the_push(site):
    _, path = site
    power_cut_during_watch(path)
    mark = json.loads((path.parent / "gateway.toml.push-watch").read_text())
    assert mark["command_id"] == "cmd-cut" and len(mark["sha256"]) == 64
