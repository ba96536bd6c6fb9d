"""Where the reference receiver keeps what it received: one interface, one file per engine.

    open_store("platform.sqlite")                       # embedded default (a plain path)
    open_store("sqlite:////var/lib/platform.sqlite")    # the same as a URL (SQLAlchemy spelling: 4 slashes = absolute)
    open_store("postgresql://postgres@127.0.0.1/city")  # PostgreSQL through psycopg 3 (`platform` extra)

Both engines keep the same tables (docs/fleet-platform.md): `events` unique by (gateway, seq),
`gaps` (declared by the gateway), `presence` (the last status per gateway), `invalid` (rejected
messages, kept), `counters` (duplicates per gateway) and `schema_version`. The schema is created or
migrated when a store opens; a batch (`write`) is one transaction, so the receiver acknowledges a
message to the broker only once everything it carried is committed.
"""

from __future__ import annotations

from gateway.platform.stores.base import Batch, Store, StoreError

__all__ = ["Batch", "Store", "StoreError", "open_store", "describe_url"]


def open_store(where: str | None = None) -> Store:
    """A store for `where`: a postgresql:// URL, a sqlite:/// URL, a path, or None / ":memory:"."""
    where = where or ":memory:"
    if where.startswith(("postgresql://", "postgres://")):
        from gateway.platform.stores.postgres import PostgresStore  # psycopg only where it is used

        return PostgresStore(where)
    from gateway.platform.stores.sqlite import SqliteStore

    if where.startswith("sqlite:"):
        # SQLAlchemy's spelling: sqlite:///relative.db, sqlite:////absolute/path.db, sqlite:///:memory:
        rest = where[len("sqlite:"):]
        if not rest.startswith("///"):
            raise StoreError(f"--store {where!r}: a SQLite URL is sqlite:///relative/path or "
                             f"sqlite:////absolute/path")
        where = rest[3:] or ":memory:"
    return SqliteStore(where)


def describe_url(where: str | None) -> str:
    """`where` without a password, for log lines and the CLI's banner."""
    where = where or ":memory:"
    if "://" in where and "@" in where.split("://", 1)[1]:
        scheme, rest = where.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
    return where
