"""The store suite runs against every backend listed in ``BACKENDS``.

The PostgreSQL backend runs on a private throwaway cluster (``tests.peers.postgres``), started
once per session on first use, with a fresh database per test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alter_mcp.store import Store
from alter_mcp.store.sqlite import SQLiteStore
from tests.peers.postgres import postgres_cluster, postgres_url

__all__ = ["BACKENDS", "postgres_cluster", "postgres_url", "store"]

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
