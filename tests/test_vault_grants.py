"""Grant operations of the vault core: managed secrets, listing, paging, revoking, auditing."""

from __future__ import annotations

from datetime import UTC

import pytest

from alter_mcp.config import Settings
from alter_mcp.errors import (
    GrantNotFoundError,
    InvalidInputError,
    PolicyViolationError,
    ProviderNotFoundError,
    SecretNotFoundError,
)
from alter_mcp.models import (
    GrantKind,
    GrantStatus,
    Identity,
    SystemPrincipal,
    UserPrincipal,
)
from alter_mcp.vault import AlterVault

ALICE = UserPrincipal(issuer="https://idp.test", subject="alice", label="alice-openai")


async def test_vault_managed_secret_grant_round_trip(vault: AlterVault) -> None:
    """A managed secret granted to the system principal is listed and readable by it."""
    secret = await vault.create_managed_secret("openai", {"api_key": "sk-test-1234"},
                                               label="prod")
    grant = await vault.create_managed_secret_grant(secret.secret_id,
                                                    principal=SystemPrincipal())
    assert grant.kind is GrantKind.MANAGED_SECRET and grant.principal_type == "system"
    page = await vault.list_grants()
    assert [g.grant_id for g in page.grants] == [grant.grant_id]
    assert (await vault.get_grant(grant.grant_id)).secret_id == secret.secret_id
    values = await vault._secret_values(secret.secret_id)
    assert values["api_key"].reveal() == "sk-test-1234"


async def test_vault_list_grants_pages_with_cursor(vault: AlterVault) -> None:
    """list_grants returns every grant once across pages and stops with no cursor."""
    secret = await vault.create_managed_secret("openai", {"api_key": "sk-x-0000"}, label="p")
    made = [
        (await vault.create_managed_secret_grant(secret.secret_id,
                                                 principal=SystemPrincipal())).grant_id
        for _ in range(7)
    ]
    seen, cursor = [], None
    while True:
        page = await vault.list_grants(limit=3, cursor=cursor)
        seen.extend(g.grant_id for g in page.grants)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(made) and len(seen) == 7


async def test_vault_list_grants_rejects_bad_arguments(vault: AlterVault) -> None:
    """Bad limit, status, cursor or provider give typed errors naming the field."""
    with pytest.raises(InvalidInputError) as exc:
        await vault.list_grants(limit=0)
    assert exc.value.field == "limit"
    with pytest.raises(InvalidInputError) as exc:
        await vault.list_grants(status="sleeping")
    assert exc.value.field == "status"
    with pytest.raises(InvalidInputError) as exc:
        await vault.list_grants(cursor="not-a-cursor!")
    assert exc.value.field == "cursor"
    with pytest.raises(ProviderNotFoundError):
        await vault.list_grants(provider_id="nope")


async def test_vault_revoke_grant_once(vault: AlterVault) -> None:
    """Revoking marks the grant revoked; revoking again is GrantNotFoundError."""
    secret = await vault.create_managed_secret("openai", {"api_key": "sk-x-0001"}, label="p")
    grant = await vault.create_managed_secret_grant(secret.secret_id,
                                                    principal=SystemPrincipal())
    result = await vault.revoke_grant(grant.grant_id, reason="cleanup")
    assert result.grant_id == grant.grant_id
    assert (await vault.get_grant(grant.grant_id)).status is GrantStatus.REVOKED
    with pytest.raises(GrantNotFoundError):
        await vault.revoke_grant(grant.grant_id)
    assert (await vault.list_grants(status="active")).grants == ()


async def test_vault_managed_secret_fields_validated(vault: AlterVault) -> None:
    """Unknown, missing, multi-line fields and OAuth providers are refused by name."""
    with pytest.raises(InvalidInputError) as exc:
        await vault.create_managed_secret("openai", {"apikey": "x"}, label="p")
    assert exc.value.field == "fields.apikey"
    with pytest.raises(InvalidInputError) as exc:
        await vault.create_managed_secret("openai", {}, label="p")
    assert exc.value.field == "fields.api_key"
    with pytest.raises(InvalidInputError) as exc:
        await vault.create_managed_secret("openai", {"api_key": "a\r\nX-Evil: 1"}, label="p")
    assert exc.value.field == "fields.api_key"
    with pytest.raises(InvalidInputError) as exc:
        await vault.create_managed_secret("github", {"api_key": "x"}, label="p")
    assert exc.value.field == "provider_id"
    with pytest.raises(SecretNotFoundError):
        await vault.create_managed_secret_grant("missing", principal=SystemPrincipal())


async def test_vault_user_grant_needs_label(vault: AlterVault) -> None:
    """A managed-secret grant to a user without any label is refused."""
    secret = await vault.create_managed_secret("openai", {"api_key": "sk-x-0002"}, label="p")
    with pytest.raises(InvalidInputError) as exc:
        await vault.create_managed_secret_grant(
            secret.secret_id, principal=UserPrincipal(issuer="https://idp.test", subject="u"))
    assert exc.value.field == "label"


async def test_vault_admin_actions_need_system_principal(vault: AlterVault) -> None:
    """A user identity cannot create or grant managed secrets."""
    as_alice = vault.with_identity(Identity(principal=ALICE))
    with pytest.raises(PolicyViolationError) as exc:
        await as_alice.create_managed_secret("openai", {"api_key": "sk-1"}, label="p")
    assert exc.value.rule == "admin_only"


async def test_vault_every_action_is_audited(vault: AlterVault) -> None:
    """Allowed and denied actions each leave an audit event, and the chain verifies."""
    secret = await vault.create_managed_secret("openai", {"api_key": "sk-x-0003"}, label="p")
    grant = await vault.create_managed_secret_grant(secret.secret_id,
                                                    principal=SystemPrincipal())
    await vault.list_grants()
    with pytest.raises(GrantNotFoundError):
        await vault.get_grant("nope")
    await vault.revoke_grant(grant.grant_id)
    from alter_mcp.store import AuditFilter

    events = await vault.audit_log.events(AuditFilter())
    assert [(e.action, e.outcome.value) for e in events] == [
        ("secret.create", "allowed"),
        ("secret.grant", "allowed"),
        ("grant.list", "allowed"),
        ("grant.get", "denied"),
        ("grant.revoke", "allowed"),
    ]
    assert all(e.caller == "tests" and e.principal == "system" for e in events)
    assert (await vault.verify_audit()).ok


async def test_vault_audit_failure_fails_the_action(vault: AlterVault) -> None:
    """When the audit table cannot be written, the revoke fails and the grant stays active."""
    secret = await vault.create_managed_secret("openai", {"api_key": "sk-x-0004"}, label="p")
    grant = await vault.create_managed_secret_grant(secret.secret_id,
                                                    principal=SystemPrincipal())
    import sqlite3

    path = vault.store.path  # type: ignore[attr-defined]
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TRIGGER no_audit BEFORE INSERT ON audit_events "
                    "BEGIN SELECT RAISE(ABORT, 'audit disk full'); END")
    from alter_mcp.errors import AlterError

    with pytest.raises(AlterError):
        await vault.revoke_grant(grant.grant_id)
    with sqlite3.connect(path) as raw:
        raw.execute("DROP TRIGGER no_audit")
    assert (await vault.get_grant(grant.grant_id)).status is GrantStatus.ACTIVE


async def test_vault_prune_audit_keeps_chain_verifiable(settings: Settings) -> None:
    """An operator prune behind a signed checkpoint leaves a chain that still verifies."""
    from datetime import datetime, timedelta

    from alter_mcp.errors import ConfigurationError

    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    async with AlterVault(settings, clock=lambda: now[0]) as vault:
        for _ in range(5):
            await vault.list_grants()
        with pytest.raises(ConfigurationError) as missing:
            await vault.prune_audit()
        assert missing.value.setting == "ALTER_MCP_AUDIT_RETENTION_DAYS"
        now[0] += timedelta(days=3)
        await vault.list_grants()
        result = await vault.prune_audit(timedelta(days=1))
        assert result.deleted == 6 and result.checkpoint is not None
        report = await vault.verify_audit()
        assert report.ok and report.checkpoint_seq == result.checkpoint.seq
        as_user = vault.with_identity(Identity(principal=ALICE))
        with pytest.raises(PolicyViolationError):
            await as_user.prune_audit(timedelta(days=1))
