"""Fixtures of the PostgreSQL platform tests: a database of their own on a real server, a broker.

The server is PLATFORM_PG_URL (default postgresql://postgres@127.0.0.1:5432/postgres, trust auth, as
`make deps` sets one up); each test gets a database with a random name, dropped after it. With no
server answering the tests skip and say so; `make test` (and so .ci/run) starts one first.
"""

from __future__ import annotations

import os
import uuid

import pytest

from tests.mosquitto import Mosquitto

SERVER = os.environ.get("PLATFORM_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin():
    import psycopg

    return psycopg.connect(SERVER, autocommit=True, connect_timeout=3)


@pytest.fixture(scope="session")
def pg_server() -> str:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[test]')")
    try:
        with _admin() as conn:
            conn.execute("SELECT 1")
    except Exception as e:  # noqa: BLE001 - any failure to reach it is the reason given
        pytest.skip(f"no PostgreSQL answers at {SERVER} ({str(e).strip().splitlines()[0] if str(e) else e}); "
                    f"`make deps` installs and starts one")
    return SERVER


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh database of this test's own (random name), dropped afterwards."""
    name = f"cgw_test_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = pg_server.rpartition("/")
    yield f"{base}/{name}"
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg(pg_url):
    """A plain connection to the test's database, for assertions in SQL."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker", persistence=True).start()
    yield b
    b.close()
