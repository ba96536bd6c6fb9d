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


def test_a_row_sqlite_cannot_take_is_kept_as_invalid_and_does_not_block_the_batch():
    """A seq past 2**63 - 1 is an OverflowError in sqlite3 and a lone surrogate a UnicodeEncodeError:
    neither is a sqlite3.Error, so the write used to raise them as they were and the receiver's writer
    retried the same batch for ever (review-wire). Now the row is refused, kept in `invalid`, and the
    rest of the batch is committed — as the PostgreSQL store does with what the server refuses."""
    store = open_store(None)
    try:
        big = {**ev(2), "id": f"gw-a/{2 ** 63}", "seq": 2 ** 63}
        surrogate = {**ev(3), "note": "\ud800"}
        got = store.write(Batch(events=[ev(1), big, surrogate, ev(4)],
                                presence=[("gw-a", {"state": "online", "firmware": "x\udfff"})],
                                invalid=[("city/v1/x/event/alarm", "quotes \ud800", b"\xff")]))
        assert got == [True, False, False, True]
        assert [r[0] for r in store.db.execute("SELECT seq FROM events ORDER BY seq")] == [1, 4]
        rows = list(store.db.execute("SELECT topic, error FROM invalid ORDER BY rowid"))
        assert [t for t, _ in rows] == [f"(stored as) gw-a/{2 ** 63}", "(stored as) gw-a/3",
                                        "(stored as) presence of gw-a", "city/v1/x/event/alarm"]
        assert "OverflowError" in rows[0][1] and "UnicodeEncodeError" in rows[1][1]
        assert store.presence("gw-a") is None and store.duplicates() == 0
        assert store.write(Batch(events=[ev(5)])) == [True]  # the store goes on
    finally:
        store.close()
