"""The store on each engine, for tests that must hold on both: a fresh SQLite file and a
fresh database on the run's PostgreSQL server (``pg_url`` in the conftest)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.lab.statestore import StateStore, open_store

ENGINES = ["sqlite", "postgresql"]


@pytest.fixture(params=ENGINES)
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store on each engine (a fresh file; a fresh database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lab.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    with contextlib.closing(open_store(state_url)) as opened:
        yield opened


def postgres_at_version(url: str, versions: int) -> None:
    """Bring an empty PostgreSQL database to the first ``versions`` migrations only, as an
    older release left it (the tests of upgrading a live store start from here)."""
    import psycopg

    from service.lab.migrations import migrations

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for version, name, sql in migrations()[:versions]:
            conn.execute(sql.encode())
            conn.execute("INSERT INTO schema_version VALUES (%s, %s)", (version, name))
