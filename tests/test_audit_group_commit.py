"""Group commit: concurrent audit events share a transaction, and none is answered early."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from alter_mcp.audit import AuditEntry, AuditLog
from alter_mcp.crypto import KeyEncryptionKey, Keyring
from alter_mcp.errors import AuditWriteError
from alter_mcp.models import AuditEvent, Outcome
from alter_mcp.store.base import AuditFilter, AuditSealer
from alter_mcp.store.sqlite import SQLiteStore

ALL = AuditFilter(limit=10_000)
RING = Keyring(KeyEncryptionKey(bytes(range(32))))


class CountingStore:
    """A real SQLite store that counts the transactions audit appends take."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.batches: list[int] = []

    async def append_audit_many(self, seals: Sequence[AuditSealer]) -> list[AuditEvent]:
        self.batches.append(len(seals))
        return await self.store.append_audit_many(seals)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    """Yield an open counting store on a fresh file."""
    inner = SQLiteStore(tmp_path / "a.db")
    await inner.open()
    try:
        yield CountingStore(inner)
    finally:
        await inner.close()


async def _request(log: AuditLog, n: int, pause: asyncio.Event) -> AuditEvent:
    with log.in_flight():
        await pause.wait()
        return await log.record(AuditEntry(f"request.{n}", Outcome.ALLOWED))


async def test_concurrent_events_share_one_transaction(store: CountingStore) -> None:
    """40 requests finishing together take one transaction; each gets its own event."""
    log = AuditLog(store, keyring=RING)  # type: ignore[arg-type]
    go = asyncio.Event()
    tasks = [asyncio.create_task(_request(log, n, go)) for n in range(40)]
    await asyncio.sleep(0)
    go.set()
    events = await asyncio.gather(*tasks)
    assert store.batches == [40]
    assert [e.action for e in events] == [f"request.{n}" for n in range(40)]
    assert sorted(e.seq for e in events) == list(range(1, 41))
    assert (await log.verify()).ok


async def test_event_alone_is_written_without_waiting(store: CountingStore) -> None:
    """Sequential events each commit at once, one transaction each, and read back in order."""
    log = AuditLog(store, keyring=RING)  # type: ignore[arg-type]
    for n in range(5):
        event = await log.record(AuditEntry(f"a{n}", Outcome.ALLOWED))
        # Committed before record returned: a reader sees it now.
        assert (await store.list_audit(ALL))[-1] == event
    assert store.batches == [1] * 5


async def test_failed_group_commit_fails_every_caller(store: CountingStore) -> None:
    """When the batch's transaction fails, every caller in it raises and nothing is written."""
    log = AuditLog(store, keyring=RING)  # type: ignore[arg-type]
    await log.record(AuditEntry("before", Outcome.ALLOWED))
    with sqlite3.connect(store.store.path) as db:
        db.execute("CREATE TRIGGER no_audit BEFORE INSERT ON audit_events "
                   "WHEN NEW.action LIKE 'request.%' BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    go = asyncio.Event()
    tasks = [asyncio.create_task(_request(log, n, go)) for n in range(10)]
    await asyncio.sleep(0)
    go.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, AuditWriteError) for r in results), results
    assert [e.action for e in await store.list_audit(ALL)] == ["before"]


async def test_cancelled_first_caller_still_writes_the_batch(store: CountingStore) -> None:
    """Cancelling the caller that opened a batch neither loses its event nor strands the rest."""
    log = AuditLog(store, keyring=RING)  # type: ignore[arg-type]
    go = asyncio.Event()
    tasks = [asyncio.create_task(_request(log, n, go)) for n in range(5)]
    await asyncio.sleep(0)
    go.set()
    # One turn: every task records (the first opens the batch, the rest join) and waits.
    await asyncio.sleep(0)
    assert store.batches == []
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert all(isinstance(r, AuditEvent) for r in results[1:]), results
    assert store.batches == [5]
    written = [e.action for e in await store.list_audit(ALL)]
    assert sorted(written) == [f"request.{n}" for n in range(5)]
