"""The audit chain: tampering with the SQLite file is detected and located."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from alter_mcp.audit import AuditEntry, AuditLog
from alter_mcp.crypto import KeyEncryptionKey, Keyring
from alter_mcp.models import Outcome
from alter_mcp.store.sqlite import SQLiteStore

RING = Keyring(KeyEncryptionKey(bytes(range(32))))


@pytest.fixture
async def log_path(tmp_path: Path) -> Path:
    """Return a database file holding a chain of six audit events."""
    store = SQLiteStore(tmp_path / "a.db")
    await store.open()
    log = AuditLog(store, keyring=RING)
    for n in range(6):
        await log.record(AuditEntry(f"act{n}", Outcome.DENIED if n == 2 else Outcome.ALLOWED,
                                    grant_id=f"g{n}", reason=f"r{n}"))
    await store.close()
    return tmp_path / "a.db"


async def _verify(path: Path) -> tuple[bool, int | None, str | None]:
    store = SQLiteStore(path)
    await store.open()
    try:
        report = await AuditLog(store).verify(keyring=RING)
    finally:
        await store.close()
    return report.ok, report.first_bad_seq, report.problem


async def test_audit_intact_chain_verifies(log_path: Path) -> None:
    """An untouched chain verifies."""
    assert await _verify(log_path) == (True, None, None)


async def test_audit_edited_row_detected(log_path: Path) -> None:
    """Changing a field of event 3 is reported at event 3."""
    with sqlite3.connect(log_path) as db:
        data = json.loads(db.execute("SELECT data FROM audit_events WHERE seq=3").fetchone()[0])
        data["outcome"] = "allowed"
        db.execute("UPDATE audit_events SET data=?, outcome='allowed' WHERE seq=3",
                   (json.dumps(data),))
    ok, seq, problem = await _verify(log_path)
    assert not ok and seq == 3 and "modified" in (problem or "")


async def test_audit_deleted_row_detected(log_path: Path) -> None:
    """Deleting event 4 is reported at seq 4, the missing one."""
    with sqlite3.connect(log_path) as db:
        db.execute("DELETE FROM audit_events WHERE seq=4")
    ok, seq, problem = await _verify(log_path)
    assert not ok and seq == 4 and "missing" in (problem or "")


async def test_audit_reordered_rows_detected(log_path: Path) -> None:
    """Swapping events 2 and 3 is reported at event 2."""
    with sqlite3.connect(log_path) as db:
        db.execute("UPDATE audit_events SET seq=-2 WHERE seq=2")
        db.execute("UPDATE audit_events SET seq=2 WHERE seq=3")
        db.execute("UPDATE audit_events SET seq=3 WHERE seq=-2")
    ok, seq, _ = await _verify(log_path)
    assert not ok and seq == 2
