"""Audit retention: pruning behind a signed checkpoint keeps the chain verifiable, and tampering
with the checkpoint or the rows around it is detected and located (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alter_mcp.audit import AuditEntry, AuditLog, ChainReport
from alter_mcp.audit_retention import (
    check_checkpoint,
    checkpoint_key_id,
    retention_cutoff,
    sign_checkpoint,
)
from alter_mcp.config import load_settings
from alter_mcp.crypto import KeyEncryptionKey, Keyring, derive_subkey
from alter_mcp.errors import ConfigurationError, InvalidInputError
from alter_mcp.models import AuditEvent, Outcome
from alter_mcp.store import AuditFilter, Checkpoint, Store
from tests.store.conftest import RawSQL, postgres_url, raw_sql, store

__all__ = ["postgres_url", "raw_sql", "store"]

T0 = datetime(2026, 1, 1, tzinfo=UTC)
#: Six events one day apart (seq 1..6 on days 0..5), pruned on day 10 with a week's retention:
#: seq 1..3 go behind a checkpoint at seq 3; 4..6 stay, and the prune's own event is seq 7.
DAYS = 6
NOW = T0 + timedelta(days=10)
WEEK = timedelta(days=7)


class Clock:
    """A settable clock for the audit log."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def new_keyring() -> Keyring:
    return Keyring(KeyEncryptionKey(os.urandom(32)))


async def filled(store: Store, days: int = DAYS, keyring: Keyring | None = None
                 ) -> tuple[AuditLog, Clock, list[AuditEvent]]:
    """Return a log holding one event per day from T0, its clock set to NOW."""
    clock = Clock(T0)
    log = AuditLog(store, clock=clock, keyring=keyring)
    for day in range(days):
        clock.now = T0 + timedelta(days=day)
        await log.record(AuditEntry(f"act{day}", Outcome.ALLOWED, grant_id=f"g{day}"))
    clock.now = NOW
    return log, clock, await store.list_audit(AuditFilter())


async def pruned(store: Store, keyring: Keyring) -> tuple[AuditLog, Clock, list[AuditEvent]]:
    """Return a log pruned with a week's retention (checkpoint at seq 3), and its events."""
    log, clock, events = await filled(store, keyring=keyring)
    await log.prune(WEEK, keyring=keyring)
    return log, clock, events


def located(report: ChainReport) -> tuple[bool, int | None, str]:
    return report.ok, report.first_bad_seq, report.problem or ""


# -- signing ------------------------------------------------------------------------------------
def test_checkpoint_signature_uses_derived_subkey_naming_kek() -> None:
    """The signature is an HMAC under an HKDF subkey of the active KEK (not the KEK), naming it."""
    ring = new_keyring()
    kek = ring.active
    cp = sign_checkpoint(ring, seq=3, hash="ab" * 32, created_at=T0)
    message = f"hmac-sha256:v1\n{kek.id}\n3\n{'ab' * 32}\n{round(T0.timestamp() * 1000)}"
    subkey = derive_subkey(kek, b"alter-mcp audit checkpoint")
    expected = hmac.new(subkey, message.encode(), hashlib.sha256).hexdigest()
    raw = hmac.new(kek.material, message.encode(), hashlib.sha256).hexdigest()
    assert cp.signature == f"hmac-sha256:v1:{kek.id}:{expected}" and expected != raw
    assert checkpoint_key_id(cp) == kek.id and check_checkpoint(ring, cp) is None


def test_checkpoint_time_kept_to_the_millisecond() -> None:
    """The checkpoint's time is cut to whole milliseconds, which every backend stores exactly."""
    cp = sign_checkpoint(new_keyring(), seq=1, hash="0" * 64,
                         created_at=T0.replace(microsecond=123_456))
    assert cp.created_at == T0.replace(microsecond=123_000)


@pytest.mark.parametrize("signature", ["", "hmac-sha256:v1:kek_x", "v0:kek_x:" + "a" * 64,
                                       "hmac-sha256:v1:kek_x:" + "é" * 64])
def test_checkpoint_malformed_signature_rejected(signature: str) -> None:
    """A signature not in the v1 format is reported as malformed, not crashed on."""
    cp = Checkpoint(seq=3, hash="0" * 64, created_at=T0, signature=signature)
    assert "malformed" in (check_checkpoint(new_keyring(), cp) or "")


# -- retention setting --------------------------------------------------------------------------
@pytest.mark.parametrize("older_than", [timedelta(hours=23), timedelta(0), timedelta(days=-3),
                                        NOW - timedelta(hours=1), datetime(2026, 1, 1), 30])
def test_retention_below_one_day_refused(older_than: Any) -> None:
    """A retention under a day, a naive cutoff or a non-time value raises InvalidInputError."""
    with pytest.raises(InvalidInputError) as exc:
        retention_cutoff(older_than, now=NOW)
    assert exc.value.field == "older_than" and exc.value.hint


def test_retention_cutoff_from_days_or_time() -> None:
    """A timedelta counts back from now; an aware datetime is the cutoff itself."""
    assert retention_cutoff(WEEK, now=NOW) == NOW - WEEK
    assert retention_cutoff(timedelta(days=1), now=NOW) == NOW - timedelta(days=1)
    assert retention_cutoff(T0, now=NOW) == T0


def test_retention_days_setting_validated() -> None:
    """ALTER_MCP_AUDIT_RETENTION_DAYS is optional, a whole number of days, at least 1."""
    assert load_settings({}).audit_retention_days is None
    assert load_settings({"ALTER_MCP_AUDIT_RETENTION_DAYS": "90"}).audit_retention_days == 90
    for bad in ("0", "-1", "ninety"):
        with pytest.raises(ConfigurationError) as exc:
            load_settings({"ALTER_MCP_AUDIT_RETENTION_DAYS": bad})
        assert exc.value.setting == "ALTER_MCP_AUDIT_RETENTION_DAYS"


async def test_prune_refused_retention_changes_nothing(store: Store) -> None:
    """A refused prune deletes nothing and writes neither a checkpoint nor an event."""
    log, _, events = await filled(store)
    with pytest.raises(InvalidInputError):
        await log.prune(timedelta(hours=1), keyring=new_keyring())
    assert await store.list_audit(AuditFilter()) == events
    assert await log.checkpoints() == []


# -- pruning ------------------------------------------------------------------------------------
async def test_prune_then_verify_ok(store: Store) -> None:
    """After pruning, the rest of the chain verifies from the signed checkpoint."""
    ring = new_keyring()
    log, _, events = await filled(store)
    result = await log.prune(WEEK, keyring=ring)
    assert result.deleted == 3
    assert result.checkpoint is not None
    assert (result.checkpoint.seq, result.checkpoint.hash) == (3, events[2].hash)
    assert await log.checkpoints() == [result.checkpoint]
    remaining = await store.list_audit(AuditFilter())
    assert [e.seq for e in remaining] == [4, 5, 6, 7]
    assert remaining[-1].action == "audit.prune"
    assert remaining[-1].detail == {"deleted": 3, "checkpoint_seq": 3,
                                    "before": (NOW - WEEK).isoformat()}
    report = await log.verify(keyring=ring)
    assert report == ChainReport(ok=True, checked=4, checkpoint_seq=3)


async def test_prune_twice_idempotent_then_moves_checkpoint(store: Store) -> None:
    """Pruning again with the same cutoff deletes nothing; a later cutoff adds a checkpoint."""
    ring = new_keyring()
    log, clock, _ = await filled(store)
    await log.prune(WEEK, keyring=ring)
    again = await log.prune(WEEK, keyring=ring)
    assert (again.deleted, again.checkpoint) == (0, None)
    assert [cp.seq for cp in await log.checkpoints()] == [3]
    last = (await store.list_audit(AuditFilter()))[-1]
    assert (last.seq, last.detail["deleted"], last.detail["checkpoint_seq"]) == (8, 0, None)
    clock.now = NOW + timedelta(days=2)
    later = await log.prune(WEEK, keyring=ring)
    assert later.deleted == 2 and later.checkpoint is not None and later.checkpoint.seq == 5
    assert [cp.seq for cp in await log.checkpoints()] == [3, 5]
    assert (await log.verify(keyring=ring)).ok


async def test_prune_all_but_newest_keeps_chain_head(store: Store) -> None:
    """When every event is old, all but the newest go and the chain still verifies."""
    ring = new_keyring()
    log, clock, _ = await filled(store)
    clock.now = T0 + timedelta(days=400)
    result = await log.prune(timedelta(days=1), keyring=ring)
    assert result.deleted == DAYS - 1
    assert [e.seq for e in await store.list_audit(AuditFilter())] == [DAYS, DAYS + 1]
    assert await log.verify(keyring=ring) == ChainReport(True, 2, checkpoint_seq=DAYS - 1)


async def test_prune_append_continues_chain(store: Store) -> None:
    """Events recorded after a prune extend the same chain, which still verifies."""
    ring = new_keyring()
    log, _, _ = await pruned(store, ring)
    event = await log.record(AuditEntry("after", Outcome.ALLOWED))
    prune_event = (await store.list_audit(AuditFilter(action="audit.prune")))[0]
    assert (event.seq, event.prev_hash) == (8, prune_event.hash)
    assert await log.verify(keyring=ring) == ChainReport(True, 5, checkpoint_seq=3)


async def test_prune_verify_walks_pages_across_checkpoint(store: Store) -> None:
    """Verification in small batches starts after the checkpoint and checks every event."""
    ring = new_keyring()
    log, _, _ = await filled(store, days=9)
    await log.prune(WEEK, keyring=ring)
    assert await log.verify(keyring=ring, batch=2) == ChainReport(True, 7, checkpoint_seq=3)


async def test_prune_verify_restarts_when_pruned_mid_walk(store: Store) -> None:
    """A prune that commits while verify walks the chain does not make verify report a break."""
    ring = new_keyring()
    log, clock, _ = await filled(store, days=9)

    class PruningMidWalk:
        """The real store, with one prune slipped in after verify's first page."""

        def __init__(self) -> None:
            self.pages = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        async def list_audit(self, flt: AuditFilter) -> list[AuditEvent]:
            page = await store.list_audit(flt)
            self.pages += 1
            if self.pages == 2:
                clock.now = NOW + timedelta(days=4)
                await log.prune(WEEK, keyring=ring)
            return page

    walker = AuditLog(PruningMidWalk(), clock=clock)  # type: ignore[arg-type]
    report = await walker.verify(keyring=ring, batch=2)
    assert report.ok and report.checkpoint_seq == 7, report


# -- tampering ----------------------------------------------------------------------------------
async def test_tamper_checkpoint_hash_edited_located(store: Store, raw_sql: RawSQL) -> None:
    """A checkpoint whose hash is replaced no longer matches its signature, reported at its seq."""
    ring = new_keyring()
    log, _, events = await pruned(store, ring)
    await raw_sql(f"UPDATE audit_checkpoints SET hash = '{events[1].hash}'")
    ok, seq, problem = located(await log.verify(keyring=ring))
    assert not ok and seq == 3 and "does not match its signature" in problem


async def test_tamper_checkpoint_signature_edited_located(store: Store, raw_sql: RawSQL) -> None:
    """A checkpoint whose signature is altered by one digit is reported at its seq."""
    ring = new_keyring()
    log, _, _ = await pruned(store, ring)
    [cp] = await log.checkpoints()
    flipped = cp.signature[:-1] + ("0" if cp.signature[-1] != "0" else "1")
    await raw_sql(f"UPDATE audit_checkpoints SET signature = '{flipped}'")
    ok, seq, problem = located(await log.verify(keyring=ring))
    assert not ok and seq == 3 and "does not match its signature" in problem


async def test_tamper_checkpoint_forged_with_foreign_key_located(
    store: Store, raw_sql: RawSQL
) -> None:
    """Rows hidden behind a checkpoint signed with a key not in the keyring are reported."""
    ring, attacker = new_keyring(), new_keyring()
    log, _, events = await pruned(store, ring)
    forged = sign_checkpoint(attacker, seq=5, hash=events[4].hash, created_at=NOW)
    await raw_sql("DELETE FROM audit_events WHERE seq <= 5")
    await raw_sql(f"UPDATE audit_checkpoints SET seq = 5, hash = '{forged.hash}', "
                  f"signature = '{forged.signature}'")
    ok, seq, problem = located(await log.verify(keyring=ring))
    assert not ok and seq == 5
    assert attacker.active.id in problem and "not in the keyring" in problem


async def test_tamper_first_row_after_checkpoint_deleted_located(
    store: Store, raw_sql: RawSQL
) -> None:
    """Deleting the event right after the checkpoint is reported at the missing seq."""
    ring = new_keyring()
    log, _, _ = await pruned(store, ring)
    await raw_sql("DELETE FROM audit_events WHERE seq = 4")
    ok, seq, problem = located(await log.verify(keyring=ring))
    assert not ok and seq == 4
    assert "expected seq 4 after the checkpoint at seq 3" in problem and "missing" in problem


async def test_tamper_first_row_relinked_located(store: Store, raw_sql: RawSQL) -> None:
    """An event after the checkpoint whose link is rewritten is reported at that event."""
    ring = new_keyring()
    log, _, _ = await pruned(store, ring)
    await raw_sql(f"UPDATE audit_events SET prev_hash = '{'f' * 64}' WHERE seq = 4")
    ok, seq, problem = located(await log.verify(keyring=ring))
    assert not ok and seq == 4 and "does not link to the checkpoint" in problem


async def test_tamper_checkpoint_deleted_after_prune_located(
    store: Store, raw_sql: RawSQL
) -> None:
    """Deleting the checkpoint of a pruned log leaves a start no checkpoint covers."""
    ring = new_keyring()
    log, _, _ = await pruned(store, ring)
    await raw_sql("DELETE FROM audit_checkpoints")
    ok, seq, problem = located(await log.verify(keyring=ring))
    assert not ok and seq == 1
    assert "events 1 to 3 are missing and no signed checkpoint covers them" in problem


async def test_tamper_rows_deleted_without_checkpoint_located(
    store: Store, raw_sql: RawSQL
) -> None:
    """Deleting the oldest row of a never-pruned log is reported at seq 1."""
    log, _, _ = await filled(store)
    await raw_sql("DELETE FROM audit_events WHERE seq = 1")
    ok, seq, problem = located(await log.verify(keyring=new_keyring()))
    assert not ok and seq == 1 and "event 1 is missing" in problem


async def test_tamper_every_row_after_checkpoint_deleted_located(
    store: Store, raw_sql: RawSQL
) -> None:
    """A checkpoint with no event after it (a prune always leaves one) is reported."""
    ring = new_keyring()
    log, _, _ = await pruned(store, ring)
    await raw_sql("DELETE FROM audit_events")
    ok, seq, problem = located(await log.verify(keyring=ring))
    assert not ok and seq == 4 and "no event follows the checkpoint at seq 3" in problem


async def test_prune_verify_without_keyring_says_so(store: Store) -> None:
    """Verifying a pruned log without the keyring fails at the checkpoint and says why."""
    await pruned(store, new_keyring())
    ok, seq, problem = located(await AuditLog(store).verify())
    assert not ok and seq == 3 and "keyring" in problem


# -- key rotation -------------------------------------------------------------------------------
async def test_rotation_checkpoint_verifies_with_previous_key_only(store: Store) -> None:
    """A checkpoint signed under key A verifies once B is active with A kept as previous,
    and is reported (naming A) once A is dropped from the keyring."""
    ring_a = new_keyring()
    key_a = ring_a.active
    log, _, _ = await pruned(store, ring_a)
    ring_b = ring_a.with_new_active(KeyEncryptionKey(os.urandom(32)))
    assert await log.verify(keyring=ring_b) == ChainReport(True, 4, checkpoint_seq=3)
    ok, seq, problem = located(await log.verify(keyring=ring_b.without(key_a.id)))
    assert not ok and seq == 3
    assert key_a.id in problem and "not in the keyring" in problem
    assert "ALTER_MCP_PREVIOUS_KEYS" in problem


async def test_rotation_new_checkpoints_signed_by_active_key(store: Store) -> None:
    """After rotation, a new prune signs its checkpoint with the new active key."""
    ring_a = new_keyring()
    log, clock, _ = await pruned(store, ring_a)
    ring_b = ring_a.with_new_active(KeyEncryptionKey(os.urandom(32)))
    clock.now = NOW + timedelta(days=2)
    result = await log.prune(WEEK, keyring=ring_b)
    assert result.checkpoint is not None
    assert checkpoint_key_id(result.checkpoint) == ring_b.active.id
    assert (await log.verify(keyring=ring_b.without(ring_a.active.id))).ok
