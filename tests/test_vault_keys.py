"""``AlterVault.rotate_keys``: re-wrap under the active key, never overwrite, report the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from alter_mcp.config import Settings
from alter_mcp.crypto import Envelope, Keyring, generate_key
from alter_mcp.errors import InvalidInputError, PolicyViolationError
from alter_mcp.models import Identity, UserPrincipal
from alter_mcp.store import AuditFilter, EncryptedField, EncryptedRef
from alter_mcp.vault import AlterVault, secret_binding
from alter_mcp.vault.keys import binding_of


async def add_secrets(vault: AlterVault, count: int) -> list[str]:
    """Create ``count`` managed secrets and return their ids."""
    made = [await vault.create_managed_secret("openai", {"api_key": f"sk-{i:04d}-abcdefgh"},
                                              label=f"s{i}") for i in range(count)]
    return [m.secret_id for m in made]


async def rotated(settings: Settings, old: Keyring) -> AlterVault:
    """Open a vault whose active key is new and whose keyring still holds ``old``'s keys."""
    return AlterVault(settings, keyring=old.with_new_active(generate_key()), caller="tests")


async def test_rotate_keys_rewraps_everything_and_reports_progress(
        vault: AlterVault, settings: Settings) -> None:
    """Every blob moves to the active key in batches; progress counts up to the total."""
    ids = await add_secrets(vault, 7)
    seen: list[tuple[int, int | None]] = []
    async with await rotated(settings, vault.envelope.keyring) as fresh:
        report = await fresh.rotate_keys(batch=3, progress=lambda d, t: seen.append((d, t)))
        assert report.complete and report.rewrapped == 7 and report.batches == 3
        assert seen == [(0, 7), (3, 7), (6, 7), (7, 7)]
        assert await fresh.pending_rewrap() == 0
        only_new = Envelope(Keyring(fresh.envelope.keyring.active))
        for secret_id in ids:
            found = await fresh.store.get_secret(secret_id)
            assert found is not None
            assert only_new.open_json(found[1], aad=secret_binding(secret_id))["api_key"]
        [event] = await fresh.audit_log.events(AuditFilter(action="key.rotate"))
        assert event.detail["rewrapped"] == 7 and event.detail["left"] == 0


async def test_rotate_keys_reports_blobs_that_cannot_be_opened_and_moves_the_rest(
        vault: AlterVault, settings: Settings) -> None:
    """A blob that does not open (copied from another record) is reported, left, not looped on."""
    await add_secrets(vault, 4)
    ref = (await vault.store.blobs_not_under("none", limit=1))[0]
    # A vault whose keyring lacks a blob's key no longer opens at all (tests/vault/
    # test_keycheck.py); a blob moved from another record is what rotation can still meet.
    foreign = vault.envelope.seal_json({"api_key": "x" * 20},
                                       aad=binding_of(ref.location, "another-record"))
    assert await vault.store.replace_blob(ref, foreign, vault.envelope.keyring.active.id)
    async with await rotated(settings, vault.envelope.keyring) as fresh:
        report = await fresh.rotate_keys(batch=1)
    assert report.rewrapped == 3 and report.left == 1 and not report.complete
    [failure] = report.failures
    assert failure.record_id == ref.record_id and failure.error == "decryption_failed"
    assert "failed authentication" in failure.message


async def test_rotate_keys_never_overwrites_a_blob_changed_meanwhile(
        vault: AlterVault, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record rewritten between read and write loses the swap and is re-wrapped afresh."""
    [secret_id] = await add_secrets(vault, 1)
    old_envelope = vault.envelope
    async with await rotated(settings, vault.envelope.keyring) as fresh:
        store = fresh.store
        original = store.replace_blob
        raced: list[bytes] = []

        async def racing(ref: EncryptedRef, blob: bytes, key_id: str) -> bool:
            if not raced:  # another process re-seals the record with the old key first
                newer = old_envelope.seal_json({"api_key": "sk-newer-value-123"},
                                               aad=secret_binding(secret_id))
                raced.append(newer)
                assert await original(ref, newer, old_envelope.keyring.active.id)
            return await original(ref, blob, key_id)

        monkeypatch.setattr(store, "replace_blob", racing)
        report = await fresh.rotate_keys()
        assert report.raced == 1 and report.rewrapped == 1 and report.complete
        found = await store.get_secret(secret_id)
        assert found is not None
        assert fresh.envelope.open_json(found[1], aad=secret_binding(secret_id)) == {
            "api_key": "sk-newer-value-123"}


async def test_rotate_keys_is_for_operators_with_a_sane_batch(vault: AlterVault,
                                                              tmp_path: Path) -> None:
    """An end user may not rotate keys, and a batch outside 1..10000 is refused."""
    user = vault.with_identity(Identity(principal=UserPrincipal(issuer="https://i", subject="a")))
    with pytest.raises(PolicyViolationError):
        await user.rotate_keys()
    with pytest.raises(InvalidInputError):
        await vault.rotate_keys(batch=0)
    with pytest.raises(InvalidInputError):
        await vault.rotate_keys(max_batches=0)


def test_binding_of_names_every_encrypted_column() -> None:
    """Each sealed column has the binding its sealing code uses."""
    assert {binding_of(f, "r").table for f in EncryptedField} == {
        "credentials", "managed_secrets", "connect_sessions", "provider_configs", "bridge_state"}
