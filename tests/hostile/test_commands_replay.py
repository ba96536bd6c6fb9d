"""Replay protection that survives losing its file (issue 12, item 4).

Before: with command-nonces.json deleted (a full disk, a moved data_dir, a technician's cleanup) a
captured command was accepted again for the rest of its validity window, and nobody was told. Now the
newest issue time accepted per platform key is kept in a second file, anything not newer is refused
while the nonce file is missing, and the loss is a fault event."""

from __future__ import annotations

import json
import time

import pytest

from gateway.commands.issue_times import FILE_NAME as ISSUED
from gateway.commands.nonces import FILE_NAME as NONCES
from gateway.platform import cli as platform_cli
from gateway.platform.sign import IssueFile, issue_time, sign_command
from test_commands import GW, Site, assert_rejected


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.stop()


def restarted(site):
    faults = []
    return site.new_handler(fault=faults.append), faults


def test_a_captured_command_is_refused_after_the_nonce_file_is_deleted(site):
    captured = json.dumps(sign_command(site.key, GW, "status", {})).encode()
    assert site.handler.handle("status", captured)["ok"]
    (site.root / "var" / NONCES).unlink()
    handler, faults = restarted(site)
    assert_rejected(site, handler.handle("status", captured), "replayed")
    assert "not issued after the newest one accepted" in site.replies[-1]["message"]
    assert [(f["component"], f["state"], f["reason"]) for f in faults] == [
        ("commands", "fault", "nonce_store_missing")]
    fresh = json.dumps(sign_command(site.key, GW, "status", {})).encode()
    assert handler.handle("status", fresh)["ok"], "a new command is newer: accepted at once"


def test_an_older_command_captured_earlier_is_refused_too(site):
    older = sign_command(site.key, GW, "status", {})
    newer = sign_command(site.key, GW, "status", {})
    assert site.handler.handle("status", json.dumps(newer).encode())["ok"]
    (site.root / "var" / NONCES).unlink()
    handler, _ = restarted(site)
    assert_rejected(site, handler.handle("status", json.dumps(older).encode()), "replayed")


def test_a_corrupt_nonce_file_is_reported(site):
    assert site.handler.handle("status", json.dumps(sign_command(site.key, GW, "status")).encode())["ok"]
    (site.root / "var" / NONCES).write_bytes(b"\x00" * 40)
    _, faults = restarted(site)
    assert [f["reason"] for f in faults] == ["nonce_store_unreadable"]


def test_a_first_start_is_not_a_loss(tmp_path):
    s = Site(tmp_path)
    try:
        _, faults = restarted(s)
        assert faults == [] and (tmp_path / "var" / NONCES).exists()
        assert not (tmp_path / "var" / ISSUED).exists()
    finally:
        s.stop()


def test_issue_times_only_grow_per_key(site):
    times = [issue_time(site.key) for _ in range(50)]
    assert times == sorted(set(times)), "strictly increasing, even within one millisecond"
    wire = [sign_command(site.key, GW, "status")["issued_at"] for _ in range(50)]
    assert wire == sorted(set(wire)), "and so is what goes on the wire"
    assert issue_time(site.key, now=time.time() - 3600) > times[-1], "a clock stepped back changes nothing"
    assert issue_time(site.key, after=time.time() + 10) > time.time() + 9.9, "another run's later one counts"


def test_send_keeps_the_last_issue_time_beside_the_key(site, tmp_path, monkeypatch):
    key_path = str(site.root / "keys" / "platform.key")
    future = time.time() + 120  # the last run's clock was ahead: this run must still issue after it
    IssueFile(key_path).save(future)
    sent = []
    monkeypatch.setattr("gateway.platform.sign.send_command", lambda host, port, cmd, **kw: sent.append(cmd) or
                        [{"id": cmd["id"], "ok": True}])
    assert platform_cli.main(["send", GW, "status", "--key", key_path]) == 0
    from gateway.commands.signing import parse_utc
    assert parse_utc(sent[0]["issued_at"]) > future
    assert IssueFile(key_path).last() == parse_utc(sent[0]["issued_at"])


def test_gateway_run_records_the_loss_as_a_fault_event(tmp_path):
    """Wired as `gateway run` wires it: the fault is in the outbox, on its way to the platform."""
    from drivers.gpio.sim import SimGpio
    from gateway.service.daemon import Daemon
    from gateway.service.process import CurrentDaemon, _command_handler
    from test_commands import wait_for

    s = Site(tmp_path)
    assert s.handler.handle("status", json.dumps(sign_command(s.key, GW, "status")).encode())["ok"]
    s.stop()
    (tmp_path / "var" / NONCES).unlink()
    d = Daemon(s.cfg, gpio=SimGpio())
    handler = _command_handler(CurrentDaemon(d))  # before start, as run_daemon does: the event waits
    d.start()
    try:
        wait_for(lambda: any(e["type"] == "fault" and e.get("component") == "commands" for e in d.events.snapshot()[0]),
                 what="the fault event")
        assert d.recorder.flush(5)
        rows = d.outbox.db.execute("SELECT body FROM events WHERE type = 'fault'").fetchall()
        assert any('"reason":"nonce_store_missing"' in r[0] for r in rows), rows
    finally:
        handler.close()
        d.stop()
