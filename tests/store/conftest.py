"""The store suite runs against every backend listed in ``BACKENDS``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alter_mcp.store import Store
from alter_mcp.store.sqlite import SQLiteStore

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Yield an open, empty store of each backend."""
    backend: Store
    if request.param == "sqlite":
        backend = SQLiteStore(tmp_path / "vault.db")
    else:  # pragma: no cover - more backends join here
        raise AssertionError(request.param)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()
