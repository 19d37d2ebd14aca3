"""Audit verify sees every tamper: any column edit, deletion, reorder or anchor edit, located.

Each test builds a real chain in the store under test (SQLite, and PostgreSQL where its peer is
installed), tampers with it by plain SQL behind the store's back, and checks that verify fails
naming the first bad seq and what is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import sqlite3

import pytest

from alter_mcp.audit import AuditEntry, AuditLog, ChainReport
from alter_mcp.audit_head import check_head, head_signer
from alter_mcp.crypto import KeyEncryptionKey, Keyring, derive_subkey
from alter_mcp.errors import StoreError
from alter_mcp.models import CallerType, Identity, Outcome, UserPrincipal
from alter_mcp.store import AuditFilter, Store
from alter_mcp.store.base import AuditHead
from alter_mcp.store.sqlite import SQLiteStore
from tests.store.conftest import RawSQL, postgres_url, raw_sql, store

__all__ = ["postgres_url", "raw_sql", "store"]

FFF = "f" * 64
MALLORY = UserPrincipal(issuer="https://idp.test", subject="mallory")
ALICE = Identity(principal=UserPrincipal(issuer="https://idp.test", subject="alice"),
                 caller="bot", caller_type=CallerType.AGENT)


def new_keyring() -> Keyring:
    return Keyring(KeyEncryptionKey(os.urandom(32)))


async def chain(store: Store, ring: Keyring, n: int = 6) -> AuditLog:
    """Record ``n`` events (event 3 denied), each with every indexed column set."""
    log = AuditLog(store, keyring=ring)
    for i in range(n):
        await log.record(AuditEntry(
            f"act{i}", Outcome.DENIED if i == 2 else Outcome.ALLOWED, identity=ALICE,
            grant_id=f"g{i}", provider_id="github", reason=f"r{i}"))
    return log


def located(report: ChainReport) -> tuple[bool, int | None, str]:
    return report.ok, report.first_bad_seq, report.problem or ""


async def columns_of(store: Store, request: pytest.FixtureRequest) -> set[str]:
    """Return the column names of ``audit_events`` as the database has them."""
    if isinstance(store, SQLiteStore):
        with contextlib.closing(sqlite3.connect(store.path)) as db:
            return {row[1] for row in db.execute("PRAGMA table_info(audit_events)")}
    import asyncpg

    conn = await asyncpg.connect(request.getfixturevalue("postgres_url"))
    try:
        rows = await conn.fetch("SELECT column_name FROM information_schema.columns "
                                "WHERE table_name = 'audit_events'")
    finally:
        await conn.close()
    return {row["column_name"] for row in rows}


#: One real edit of event 3 per stored column (and one of a value both data and a column hold).
EDITS: dict[str, str] = {
    "seq": "seq = 100",
    "time": "time = time + 1",
    "principal": f"principal = '{MALLORY.key}'",
    "grant_id": "grant_id = 'g-forged'",
    "provider_id": "provider_id = 'gitlab'",
    "outcome": "outcome = 'allowed'",
    "action": "action = 'grant.list'",
    "data": """data = replace(data, '"reason":"r2"', '"reason":"r9"')""",
    "data:action": """data = replace(data, '"action":"act2"', '"action":"grant.list"')""",
    "data:garbage": "data = '[1]'",
    "prev_hash": f"prev_hash = '{FFF}'",
    "hash": f"hash = '{FFF}'",
    "caller": "caller = 'someone-else'",
}


# -- intact chains pass ---------------------------------------------------------------------------
async def test_verify_untouched_chain_passes(store: Store) -> None:
    """An untouched chain verifies, every event checked, its newest event the signed head."""
    ring = new_keyring()
    log = await chain(store, ring)
    assert await log.verify() == ChainReport(True, 6)
    head = await store.audit_head()
    newest = (await store.list_audit(AuditFilter()))[-1]
    assert head is not None and (head.seq, head.hash) == (6, newest.hash)
    assert check_head(ring, head) is None


async def test_verify_empty_new_log_passes(store: Store) -> None:
    """A new store with no events verifies: its unsigned head at seq 0 anchors nothing."""
    assert await AuditLog(store).verify(keyring=new_keyring()) == ChainReport(True, 0)
    assert await store.audit_head() == AuditHead(seq=0, hash="", signature="")


async def test_verify_group_commits_pass(store: Store) -> None:
    """Events written by group commits verify, the head advanced to the last of each batch."""
    ring = new_keyring()
    log = AuditLog(store, keyring=ring)

    async def action(n: int) -> None:
        with log.in_flight():
            await asyncio.sleep(0)
            await log.record(AuditEntry(f"batch.{n}", Outcome.ALLOWED))

    for _ in range(3):
        await asyncio.gather(*(action(n) for n in range(20)))
    assert await log.verify() == ChainReport(True, 60)
    head = await store.audit_head()
    assert head is not None and head.seq == 60 and check_head(ring, head) is None


async def test_verify_head_signed_once_per_transaction(store: Store) -> None:
    """A batch of 25 events in one transaction signs the head once, for its last event."""
    ring = new_keyring()
    sign = head_signer(ring)
    calls: list[int] = []

    def counting(seq: int, digest: str) -> str:
        calls.append(seq)
        return sign(seq, digest)

    log = AuditLog(store, keyring=ring)
    entries = [AuditEntry(f"e{n}", Outcome.ALLOWED) for n in range(25)]
    await store.append_audit_many([log.sealer(e, signer=counting) for e in entries])
    assert calls == [25]
    assert await log.verify() == ChainReport(True, 25)


async def test_verify_after_prune_passes_and_still_sees_tail_deletion(
    store: Store, raw_sql: RawSQL
) -> None:
    """After a prune behind a checkpoint the chain verifies; deleting its newest event shows."""
    ring = new_keyring()
    log = await chain(store, ring)
    await raw_sql("UPDATE audit_events SET time = time - 30 * 86400 WHERE seq <= 3")
    from datetime import timedelta

    result = await log.prune(timedelta(days=7), keyring=ring)
    assert result.checkpoint is not None and result.checkpoint.seq == 3
    assert await log.verify() == ChainReport(True, 4, checkpoint_seq=3)
    await raw_sql("DELETE FROM audit_events WHERE seq = 7")
    ok, seq, problem = located(await log.verify())
    assert not ok and seq == 7 and "newest events were deleted" in problem


# -- every column ---------------------------------------------------------------------------------
async def test_verify_edits_cover_every_column(store: Store, request: pytest.FixtureRequest
                                               ) -> None:
    """The column edits below name every column the audit table has, no more, no fewer."""
    assert {name.split(":")[0] for name in EDITS} == await columns_of(store, request)


@pytest.mark.parametrize("column", list(EDITS))
async def test_verify_column_edit_located(store: Store, raw_sql: RawSQL, column: str) -> None:
    """Editing any one column of event 3 with a real UPDATE is reported at seq 3."""
    ring = new_keyring()
    log = await chain(store, ring)
    await raw_sql(f"UPDATE audit_events SET {EDITS[column]} WHERE seq = 3")
    ok, seq, problem = located(await log.verify())
    assert not ok and seq == 3, problem
    if column == "seq":
        assert "expected seq 3, found 4: rows missing" in problem
    else:
        assert problem.startswith("event 3 was modified after it was written")
    if column in ("principal", "grant_id", "provider_id", "outcome", "action", "time",
                  "prev_hash", "caller"):
        assert f"its {column} column disagrees with its hashed data" in problem


async def test_verify_column_edit_is_what_filters_see(store: Store, raw_sql: RawSQL) -> None:
    """A row whose outcome column was edited reads back with the edited value, flagged."""
    log = await chain(store, new_keyring())
    await raw_sql("UPDATE audit_events SET outcome = 'allowed' WHERE seq = 3")
    assert await store.list_audit(AuditFilter(outcome="denied")) == []
    [event] = await store.list_audit(AuditFilter(after_seq=2, limit=1))
    assert event.outcome is Outcome.ALLOWED
    assert event.mismatch == "its outcome column disagrees with its hashed data"
    assert not (await log.verify()).ok


async def test_verify_rows_in_older_data_format_pass(store: Store, raw_sql: RawSQL) -> None:
    """Rows whose data lacks seq, time and prev_hash (the older format) read and verify, and
    an edit of those columns is still caught by the hash."""
    log = await chain(store, new_keyring())
    for event in await store.list_audit(AuditFilter()):
        old = json.dumps(event.model_dump(mode="json", exclude={"seq", "time", "prev_hash",
                                                                "hash"}),
                         sort_keys=True, separators=(",", ":"))
        await raw_sql(f"UPDATE audit_events SET data = '{old}' WHERE seq = {event.seq}")
    assert await log.verify() == ChainReport(True, 6)
    await raw_sql("UPDATE audit_events SET time = time + 1 WHERE seq = 4")
    ok, seq, problem = located(await log.verify())
    assert not ok and seq == 4 and "event 4 was modified" in problem


# -- deletions and reordering ---------------------------------------------------------------------
@pytest.mark.parametrize(("where", "seq", "words"), [
    ("seq = 6", 6, "event 6 is missing: the newest events were deleted"),
    ("seq >= 5", 5, "events 5 to 6 are missing: the newest events were deleted"),
    ("seq = 3", 3, "expected seq 3, found 4: rows missing"),
    ("seq = 1", 1, "event 1 is missing and no signed checkpoint covers them"),
])
async def test_verify_deleted_rows_located(store: Store, raw_sql: RawSQL, where: str, seq: int,
                                           words: str) -> None:
    """Deleting the newest event, the newest two, one in the middle or the first is located."""
    log = await chain(store, new_keyring())
    await raw_sql(f"DELETE FROM audit_events WHERE {where}")
    ok, found, problem = located(await log.verify())
    assert not ok and found == seq and words in problem, problem


async def test_verify_tail_deletion_stays_visible_after_new_events(
    store: Store, raw_sql: RawSQL
) -> None:
    """Events recorded after the newest ones were deleted chain past the gap, which stays."""
    log = await chain(store, new_keyring())
    await raw_sql("DELETE FROM audit_events WHERE seq >= 5")
    event = await log.record(AuditEntry("after", Outcome.ALLOWED))
    assert event.seq == 7
    ok, seq, problem = located(await log.verify())
    assert not ok and seq == 5 and "expected seq 5, found 7: rows missing" in problem


async def test_verify_swapped_rows_located(store: Store, raw_sql: RawSQL) -> None:
    """Swapping events 2 and 3 (every column moved) is reported at seq 2."""
    log = await chain(store, new_keyring())
    await raw_sql("UPDATE audit_events SET seq = 1000 WHERE seq = 2")
    await raw_sql("UPDATE audit_events SET seq = 2 WHERE seq = 3")
    await raw_sql("UPDATE audit_events SET seq = 3 WHERE seq = 1000")
    ok, seq, problem = located(await log.verify())
    assert not ok and seq == 2 and "its seq column disagrees with its hashed data" in problem


# -- the head anchor ------------------------------------------------------------------------------
async def test_verify_anchor_edits_located(store: Store, raw_sql: RawSQL) -> None:
    """An anchor moved back, given another hash or signature, or another key id is reported."""
    ring = new_keyring()
    log = await chain(store, ring)
    head = await store.audit_head()
    assert head is not None
    other = new_keyring().active.id
    for edit, seq in ((f"seq = 5, hash = '{(await store.list_audit(AuditFilter()))[4].hash}'", 5),
                      (f"hash = '{FFF}'", 6),
                      (f"signature = '{head.signature[:-1]}0'" if head.signature[-1] != "0"
                       else f"signature = '{head.signature[:-1]}1'", 6),
                      (f"signature = '{head.signature.replace(ring.active.id, other)}'", 6)):
        await raw_sql(f"UPDATE audit_head SET {edit}")
        ok, found, problem = located(await log.verify())
        assert not ok and found == seq, (edit, problem)
        assert ("does not match its signature" in problem or other in problem), problem
        await raw_sql(f"UPDATE audit_head SET seq = 6, hash = '{head.hash}', "
                      f"signature = '{head.signature}'")
        assert (await log.verify()).ok


async def test_verify_anchor_replayed_after_tail_deletion_located(
    store: Store, raw_sql: RawSQL
) -> None:
    """Deleting event 6 and setting the head to event 5 without its key fails the signature."""
    ring = new_keyring()
    log = await chain(store, ring)
    fifth = (await store.list_audit(AuditFilter()))[4]
    forged = head_signer(new_keyring())(5, fifth.hash)
    await raw_sql("DELETE FROM audit_events WHERE seq = 6")
    await raw_sql(f"UPDATE audit_head SET seq = 5, hash = '{fifth.hash}', signature = '{forged}'")
    ok, seq, problem = located(await log.verify())
    assert not ok and seq == 5 and "not in the keyring" in problem


async def test_verify_deleted_anchor_located_and_appends_refused(
    store: Store, raw_sql: RawSQL
) -> None:
    """Without its head anchor the log fails verify and refuses appends, writing nothing."""
    log = await chain(store, new_keyring())
    await raw_sql("DELETE FROM audit_head")
    ok, seq, problem = located(await log.verify())
    assert not ok and seq == 7 and "the signed head is missing" in problem
    with pytest.raises(StoreError, match="audit head anchor is missing"):
        await store.append_audit(log.sealer(AuditEntry("after", Outcome.ALLOWED)))
    assert [e.seq for e in await store.list_audit(AuditFilter())] == [1, 2, 3, 4, 5, 6]


async def test_verify_keyless_append_leaves_head_unsigned(store: Store) -> None:
    """An event written without the key leaves the head unsigned until a keyed append."""
    ring = new_keyring()
    log = await chain(store, ring, n=4)
    keyless = AuditLog(store)
    await keyless.record(AuditEntry("unsigned", Outcome.ALLOWED))
    ok, seq, problem = located(await log.verify())
    assert not ok and seq == 5 and "is unsigned" in problem
    await log.record(AuditEntry("signed", Outcome.ALLOWED))
    assert await log.verify() == ChainReport(True, 6)


async def test_verify_old_anchor_restored_located(store: Store, raw_sql: RawSQL) -> None:
    """Putting back an older genuine anchor while its later events remain is reported."""
    ring = new_keyring()
    log = await chain(store, ring, n=5)
    old = await store.audit_head()
    assert old is not None
    await log.record(AuditEntry("later", Outcome.ALLOWED))
    await raw_sql(f"UPDATE audit_head SET seq = {old.seq}, hash = '{old.hash}', "
                  f"signature = '{old.signature}'")
    ok, seq, problem = located(await log.verify())
    assert not ok and seq == 6 and "after the signed head at seq 5" in problem


async def test_verify_without_keyring_says_so(store: Store) -> None:
    """Verify without a keyring cannot check the signed head, and says so at its seq."""
    await chain(store, new_keyring())
    ok, seq, problem = located(await AuditLog(store).verify())
    assert not ok and seq == 6 and "needs the keyring" in problem


def test_head_signature_uses_derived_subkey_naming_kek() -> None:
    """The head's MAC is keyed by its own HKDF subkey of the active KEK and names the KEK."""
    ring = new_keyring()
    kek = ring.active
    signature = head_signer(ring)(4, "ab" * 32)
    message = f"hmac-sha256:v1:head\n{kek.id}\n4\n{'ab' * 32}".encode()
    expected = hmac.new(derive_subkey(kek, b"alter-mcp audit head"), message,
                        hashlib.sha256).hexdigest()
    checkpoint_key = derive_subkey(kek, b"alter-mcp audit checkpoint")
    assert signature == f"hmac-sha256:v1:{kek.id}:{expected}"
    assert expected != hmac.new(checkpoint_key, message, hashlib.sha256).hexdigest()
    assert check_head(ring, AuditHead(4, "ab" * 32, signature)) is None
    assert check_head(ring, AuditHead(5, "ab" * 32, signature)) is not None


# -- key rotation and upgrades --------------------------------------------------------------------
async def test_verify_head_signed_before_rotation_verifies_with_previous_key(
    store: Store,
) -> None:
    """A head signed under key A verifies with B active and A previous, names A once A is
    dropped, and the next append signs it with B."""
    ring_a = new_keyring()
    log = await chain(store, ring_a, n=3)
    ring_b = ring_a.with_new_active(KeyEncryptionKey(os.urandom(32)))
    assert await log.verify(keyring=ring_b) == ChainReport(True, 3)
    ok, seq, problem = located(await log.verify(keyring=ring_b.without(ring_a.active.id)))
    assert not ok and seq == 3 and ring_a.active.id in problem and "previous key" in problem
    await AuditLog(store, keyring=ring_b).record(AuditEntry("after", Outcome.ALLOWED))
    assert (await log.verify(keyring=ring_b.without(ring_a.active.id))).ok


async def test_verify_upgraded_chain_signed_by_first_append(
    store: Store, raw_sql: RawSQL, request: pytest.FixtureRequest
) -> None:
    """A chain from before signed heads gets an unsigned head at its newest event on upgrade,
    which verify reports until the first append signs it."""
    ring = new_keyring()
    await chain(store, ring, n=3)
    newest = (await store.list_audit(AuditFilter()))[-1]
    # Back to schema v1: the migrations from 2 on (the head, the key checks) run again.
    await raw_sql("DROP TABLE audit_head")
    await raw_sql("DROP TABLE key_checks")
    await raw_sql("DROP TABLE bridge_state")
    await raw_sql("ALTER TABLE grants DROP COLUMN connection")
    await raw_sql("ALTER TABLE managed_secrets DROP COLUMN connection")
    for index in ("audit_limit_grant", "audit_limit_caller", "audit_limit_principal"):
        await raw_sql(f"DROP INDEX {index}")
    await raw_sql("ALTER TABLE audit_events DROP COLUMN caller")
    await raw_sql("DELETE FROM schema_migrations WHERE version >= 2")
    reopened = await _reopen(store, request)
    try:
        assert await reopened.audit_head() == AuditHead(3, newest.hash, "")
        ok, seq, problem = located(await AuditLog(reopened).verify(keyring=ring))
        assert not ok and seq == 3 and "is unsigned" in problem
        upgraded = AuditLog(reopened, keyring=ring)
        await upgraded.record(AuditEntry("after", Outcome.ALLOWED))
        assert await upgraded.verify() == ChainReport(True, 4)
    finally:
        await reopened.close()


async def _reopen(store: Store, request: pytest.FixtureRequest) -> Store:
    """Open a second store on the same database (running any pending migration)."""
    other: Store
    if isinstance(store, SQLiteStore):
        other = SQLiteStore(store.path)
    else:
        from alter_mcp.store.postgres import PostgresStore

        other = PostgresStore(request.getfixturevalue("postgres_url"))
    await other.open()
    return other
