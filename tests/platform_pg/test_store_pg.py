"""The PostgreSQL engine of the platform store against a real server: idempotent by (gateway, seq),
declared gaps and presence in their own tables, rejected messages kept, migrations."""

from __future__ import annotations

import threading

import pytest

from gateway.platform.stores import Batch, StoreError, open_store
from gateway.platform.stores.base import SCHEMA_VERSION
from gateway.platform.stores.postgres import MIGRATIONS, PostgresStore


def ev(seq, type_="telemetry", gw="gw-a", **fields):
    return {"v": 1, "id": f"{gw}/{seq}", "seq": seq, "ts": "2025-06-01T08:00:00.123Z", "clock_synced": True,
            "boot": "b", "type": type_, "replay": False, **fields}


def test_events_are_stored_once_by_gateway_and_seq(pg_url, pg):
    store = open_store(pg_url)
    try:
        assert store.write(Batch(events=[ev(1), ev(2), ev(2), ev(3, gw="gw-b")])) == [True, True, False, True]
        assert store.write(Batch(events=[ev(2), ev(4), ev(1, gw="gw-b")])) == [False, True, True]
        assert store.add_event(ev(4)) is False
        assert store.duplicates() == 3
        rows = pg.execute("SELECT gateway, seq, id, type, ts, body->>'id' FROM events ORDER BY 1, 2").fetchall()
        assert [(r[0], r[1]) for r in rows] == [("gw-a", 1), ("gw-a", 2), ("gw-a", 4), ("gw-b", 1), ("gw-b", 3)]
        assert rows[0][2] == rows[0][5] == "gw-a/1" and rows[0][4].microsecond == 123000
        assert pg.execute("SELECT gateway, duplicates FROM counters ORDER BY 1").fetchall() == [("gw-a", 3)]
        assert store.gateways() == ["gw-a", "gw-b"] and store.counts("gw-a") == (3, 1, 4)
        assert store.undeclared("gw-a") == [(3, 3)]
    finally:
        store.close()


def test_two_receivers_writing_the_same_events_at_once_store_each_once(pg_url, pg):
    """Two stores (two receivers) meet on the same keys in opposite orders: no deadlock, one row each."""
    a, b = open_store(pg_url), open_store(pg_url)
    results: dict[str, list[bool]] = {}
    events = [ev(s, gw=f"gw-{s % 7}") for s in range(1, 2001)]

    def write(name, store, evs):
        out = []
        for i in range(0, len(evs), 100):
            out += store.write(Batch(events=evs[i:i + 100]))
        results[name] = out

    ta = threading.Thread(target=write, args=("a", a, events))
    tb = threading.Thread(target=write, args=("b", b, events[::-1]))
    ta.start(), tb.start()
    ta.join(60), tb.join(60)
    try:
        assert sum(results["a"]) + sum(results["b"]) == 2000
        assert pg.execute("SELECT count(*), count(DISTINCT (gateway, seq)) FROM events").fetchone() == (2000, 2000)
        assert a.duplicates() == 2000
    finally:
        a.close(), b.close()


def test_gaps_presence_and_invalid_have_their_own_tables(pg_url, pg):
    store = open_store(pg_url)
    try:
        store.write(Batch(events=[ev(1), ev(5, "gap", from_seq=2, to_seq=4, count=3, reason="evicted"),
                                  ev(7, "fault", component="uplink", state="fault", reason="message_refused",
                                     failed_seq=6)],
                          presence=[("gw-a", {"state": "online", "firmware": "1"}), ("gw-a", {"state": "offline"})],
                          invalid=[("city/v1/gw-a/event/alarm", "not JSON", b"\xff{")]))
        store.add_event(ev(5, "gap", from_seq=2, to_seq=4, count=3, reason="evicted"))  # re-sent: not twice
        assert pg.execute("SELECT gateway, from_seq, to_seq, count, declared_by FROM gaps ORDER BY from_seq"
                          ).fetchall() == [("gw-a", 2, 4, 3, "gw-a/5"), ("gw-a", 6, 6, 1, "gw-a/7")]
        assert store.undeclared("gw-a") == []
        assert pg.execute("SELECT gateway, state, body FROM presence").fetchall() == [
            ("gw-a", "offline", {"state": "offline"})]
        assert store.presence("gw-a") == {"state": "offline"}
        (topic, error, body), = pg.execute("SELECT topic, error, body FROM invalid").fetchall()
        assert topic.endswith("/alarm") and error == "not JSON" and body.endswith("{")
    finally:
        store.close()


def test_an_event_postgresql_refuses_is_kept_as_invalid_and_does_not_block_the_batch(pg_url, pg):
    store = open_store(pg_url)
    try:
        # jsonb cannot hold \\u0000; the schema does not forbid it in a string
        assert store.write(Batch(events=[ev(1), ev(2, note="a\u0000b"), ev(3)])) == [True, False, True]
        assert [r[0] for r in pg.execute("SELECT seq FROM events ORDER BY seq")] == [1, 3]
        assert "refused by PostgreSQL" in pg.execute("SELECT error FROM invalid").fetchone()[0]
    finally:
        store.close()


def test_schema_is_migrated_from_version_1_keeping_the_rows(pg_url, pg):
    PostgresStore(pg_url, upto=1).close()  # what a version-1 receiver left
    pg.execute("INSERT INTO events VALUES ('gw-a/1', 'gw-a', 1, 'telemetry', now(), false, now(), '{}'), "
               "('gw-a/3', 'gw-a', 3, 'telemetry', now(), false, now(), '{}')")
    pg.execute("INSERT INTO gaps VALUES ('gw-a', 2, 2, 1, 'gw-a/3')")
    assert pg.execute("SELECT max(version) FROM schema_version").fetchone() == (1,)
    store = open_store(pg_url)
    try:
        assert store.schema_version() == SCHEMA_VERSION == 2
        assert [r[0] for r in pg.execute("SELECT version FROM schema_version ORDER BY 1")] == [1, 2]
        pk = pg.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'events_pkey'").fetchone()
        assert pk == ("PRIMARY KEY (gateway, seq)",)
        assert store.write(Batch(events=[ev(1), ev(4)])) == [False, True]  # the old row still counts
        assert store.counts("gw-a") == (3, 1, 4) and store.undeclared("gw-a") == []
        assert pg.execute("SELECT seq FROM events WHERE stored IS NOT NULL").fetchall() == [(4,)]
    finally:
        store.close()
    open_store(pg_url).close()  # opening a current schema again changes nothing
    assert pg.execute("SELECT count(*) FROM schema_version").fetchone() == (2,)


def test_receivers_starting_together_migrate_once(pg_url, pg):
    errors, stores = [], []
    barrier = threading.Barrier(6)

    def open_one():
        barrier.wait()
        try:
            stores.append(open_store(pg_url))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    assert not errors and len(stores) == 6
    assert [r[0] for r in pg.execute("SELECT version FROM schema_version ORDER BY 1")] == list(MIGRATIONS)


def test_a_newer_schema_is_refused_with_what_to_do(pg_url, pg):
    open_store(pg_url).close()
    pg.execute("INSERT INTO schema_version (version) VALUES (99)")
    with pytest.raises(StoreError, match="schema version 99.*upgrade the receiver"):
        open_store(pg_url)


def test_an_unreachable_server_is_a_store_error_without_the_password():
    with pytest.raises(StoreError, match="cannot connect") as e:
        open_store("postgresql://city:s3cret@127.0.0.1:1/city")
    assert "s3cret" not in str(e.value)


def test_a_presence_postgresql_refuses_is_kept_as_invalid_too(pg_url, pg):
    store = open_store(pg_url)
    try:
        store.write(Batch(events=[ev(1, note="\u0000")], presence=[("gw-a", {"state": "online", "firmware": "x\u0000"}),
                                                                    ("gw-b", {"state": "offline"})]))
        assert pg.execute("SELECT gateway FROM presence").fetchall() == [("gw-b",)]
        assert sorted(r[0] for r in pg.execute("SELECT topic FROM invalid")) == [
            "(stored as) gw-a/1", "(stored as) presence of gw-a"]
    finally:
        store.close()


def test_a_seq_past_bigint_or_a_lone_surrogate_is_kept_as_invalid_too(pg_url, pg):
    """The same rows the SQLite store refuses (test_store_sqlite.py): neither blocks the batch."""
    store = open_store(pg_url)
    try:
        big = ev(2 ** 63)
        got = store.write(Batch(events=[ev(1), big, ev(3, note="\ud800"), ev(4)]))
        assert got == [True, False, False, True]
        assert [r[0] for r in pg.execute("SELECT seq FROM events ORDER BY seq")] == [1, 4]
        assert pg.execute("SELECT count(*) FROM invalid").fetchone()[0] == 2
    finally:
        store.close()
