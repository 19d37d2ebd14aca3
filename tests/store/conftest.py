"""The store suite runs against every backend listed in ``BACKENDS``.

The PostgreSQL backend runs on a private throwaway cluster (``tests.peers.postgres``), started
once per session on first use, with a fresh database per test.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from alter_mcp.store import Store
from alter_mcp.store.sqlite import SQLiteStore
from tests.peers.postgres import postgres_cluster, postgres_url

__all__ = ["BACKENDS", "RawSQL", "postgres_cluster", "postgres_url", "raw_sql", "store"]

#: Runs one SQL statement on the store's database behind its back (to tamper with it).
RawSQL = Callable[[str], Awaitable[None]]

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.peers)]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Yield an open, empty store of each backend."""
    backend: Store
    if request.param == "sqlite":
        backend = SQLiteStore(tmp_path / "vault.db")
    elif request.param == "postgres":
        from alter_mcp.store.postgres import PostgresStore

        backend = PostgresStore(request.getfixturevalue("postgres_url"))
    else:  # pragma: no cover - more backends join here
        raise AssertionError(request.param)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
def raw_sql(store: Store, request: pytest.FixtureRequest) -> RawSQL:
    """Return a function that runs a statement on the test's database outside the store."""
    if isinstance(store, SQLiteStore):
        path = store.path

        async def run_sqlite(statement: str) -> None:
            with contextlib.closing(sqlite3.connect(path)) as db, db:
                db.execute(statement)

        return run_sqlite
    import asyncpg

    url = request.getfixturevalue("postgres_url")

    async def run_postgres(statement: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    return run_postgres
