"""WAL checkpoints run on their own thread: the WAL stays bounded and the data stays put."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from alter_mcp.audit import AuditEntry, AuditLog
from alter_mcp.crypto import KeyEncryptionKey, Keyring
from alter_mcp.models import Outcome
from alter_mcp.store.base import AuditFilter
from alter_mcp.store.sqlite import SQLiteStore

RING = Keyring(KeyEncryptionKey(bytes(range(32))))


async def test_writer_leaves_checkpoints_to_the_thread(tmp_path: Path) -> None:
    """The thread checkpoints, and under a steady stream of commits the WAL stays bounded."""
    store = SQLiteStore(tmp_path / "a.db")
    await store.open()
    log = AuditLog(store, keyring=RING)
    try:
        assert store._writer is not None
        # The writer's own checkpoint stays on: it is what lets the WAL restart under load.
        assert store._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
        # Each commit appends ~3 pages to the WAL: 1,500 commits would leave ~18 MB unchecked.
        for n in range(1500):
            await log.record(AuditEntry(f"e{n}", Outcome.ALLOWED, grant_id=f"g{n % 7}"))
        checkpointer = store._checkpointer
        assert checkpointer is not None
        deadline = time.monotonic() + 10
        while checkpointer.checkpoints == 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the thread has no event to await
        assert checkpointer.checkpoints > 0
        wal = tmp_path / "a.db-wal"
        # A WAL that restarts stays near 1,000 pages (4 MB); unchecked it would be ~18 MB.
        assert wal.stat().st_size < 10 * 1024 * 1024, wal.stat().st_size
        thread = checkpointer._thread
    finally:
        await store.close()
    assert not thread.is_alive()
    # Closing folds the WAL into the file: another connection reads every event from it alone.
    with sqlite3.connect(tmp_path / "a.db") as db:
        assert db.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0] == 1500
    reopened = SQLiteStore(tmp_path / "a.db")
    await reopened.open()
    try:
        assert (await AuditLog(reopened).verify(keyring=RING)).checked == 1500
        assert len(await reopened.list_audit(AuditFilter(limit=2000))) == 1500
    finally:
        await reopened.close()
