"""The embedded engine keeps the same interface and versions: a file the first receiver wrote
(version 1, no schema_version table) is migrated in place when a receiver opens it."""

from __future__ import annotations

import sqlite3

import pytest

from gateway.platform.store import Store
from gateway.platform.stores import Batch, StoreError, open_store
from gateway.platform.stores.sqlite import V1


def ev(seq, gw="gw-a"):
    return {"v": 1, "id": f"{gw}/{seq}", "seq": seq, "ts": "2025-06-01T08:00:00.000Z", "type": "telemetry"}


def test_a_version_1_file_is_migrated_keeping_its_rows(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # exactly what the first receiver created and wrote
        db.executescript(V1)
        db.execute("INSERT INTO events VALUES ('gw-a/1', 'gw-a', 1, 'telemetry', NULL, 0, 1.0, '{}')")
    store = open_store(f"sqlite:///{path}")  # sqlite:/// + an absolute path = 4 slashes
    try:
        assert store.schema_version() == 2
        assert store.write(Batch(events=[ev(1), ev(2)])) == [False, True]
        idx = store.db.execute("SELECT sql FROM sqlite_master WHERE name = 'events_gateway_seq'").fetchone()[0]
        assert "UNIQUE" in idx and "(gateway, seq)" in idx
    finally:
        store.close()
    again = Store(str(path))
    assert [r[0] for r in again.db.execute("SELECT version FROM schema_version ORDER BY 1")] == [1, 2]
    again.close()


def test_store_urls_choose_the_engine(tmp_path):
    assert open_store(None).url == ":memory:" and open_store("sqlite:///:memory:").url == ":memory:"
    with pytest.raises(StoreError, match="sqlite:///relative"):
        open_store("sqlite://x.db")
