"""`gateway status` shows the release, the previous one and the last update's outcome (from the journal)."""

from __future__ import annotations

from gateway.cli.status_screen import format_status
from gateway.update import journal as J
from gateway.update.health import release_status


def test_release_fields_from_the_journal(tmp_path):
    j = J.Journal(str(tmp_path / "update" / "journal"))
    for step in ("received", "verified", "installing", "installed", "switching", "switched", "restarting"):
        j.append({"update": "u1", "by": "cli:bob[7]", "step": step, "version": "0.2.0", "running": "0.1.0",
                  "previous": "0.1.0"})
    st = release_status(str(tmp_path))
    assert st["previous"] is None and st["last_update"]["outcome"] == "in progress (restarting)"
    j.append({"update": "u1", "by": "launcher", "step": "healthy", "version": "0.2.0"})
    j.append({"update": "u2", "by": "cli:bob[8]", "step": "received", "running": "0.2.0"})
    j.append({"update": "u2", "by": "cli:bob[8]", "step": "refused", "reason": "signature",
              "message": "the bundle is not signed by a pinned release key"})
    st = release_status(str(tmp_path))
    assert st["previous"] == "0.1.0"
    assert st["last_update"]["outcome"] == "refused" and st["last_update"]["reason"] == "signature"
    line = [x for x in format_status({**st, "release": "0.2.0", "verdict": "OK"}).splitlines() if x.startswith("release")]
    assert line == ["release 0.2.0 (previous 0.1.0); last update: refused (signature: the bundle is not signed "
                    "by a pinned release key)"]
