"""Every journal line becomes one audit event in the daemon, once: lines the launcher wrote while no
daemon ran are audited by the next one, and a restart neither repeats nor loses any."""

from __future__ import annotations

from gateway.update import journal as J
from gateway.update.audit import UpdateAudit


def test_each_line_audited_once_across_restarts(tmp_path):
    j = J.Journal(str(tmp_path / "update" / "journal"))
    got = []
    record = lambda fields, ts: got.append(fields)  # noqa: E731
    j.append({"update": "u1", "step": "received", "by": "cli:alice[42]", "running": "0.1.0"})
    j.append({"update": "u1", "step": "verified", "by": "cli:alice[42]", "version": "0.2.0"})
    a = UpdateAudit(str(tmp_path), record)
    assert a.poll() == 2 and a.poll() == 0
    assert got[0] == {"action": "update", "actor": "cli:alice[42]", "result": "received",
                      "detail": {"update": "u1", "running": "0.1.0"}}
    j.append({"update": "u1", "step": "started", "by": "launcher", "version": "0.2.0", "attempt": 1})
    j.append({"update": "u1", "step": "healthy", "by": "launcher", "version": "0.2.0"})
    b = UpdateAudit(str(tmp_path), record)  # the next daemon
    assert b.poll() == 2
    assert [g["result"] for g in got] == ["received", "verified", "started", "healthy"]
    assert got[-1]["actor"] == "launcher"


def test_a_torn_last_line_is_skipped_and_the_next_line_stands_alone(tmp_path):
    j = J.Journal(str(tmp_path / "update" / "journal"))
    j.append({"update": "u1", "step": "received", "by": "x"})
    with open(j.path, "ab") as f:
        f.write(b'{"update": "u1", "step": "veri')  # the power went mid-write
    j.append({"update": "u1", "step": "refused", "by": "x", "reason": "signature"})
    assert [e["step"] for e in j.entries()] == ["received", "refused"]
    assert J.state(j.entries())["last"]["outcome"] == "refused"
