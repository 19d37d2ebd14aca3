"""Revocation: at the provider (RFC 7009) when the catalogue has an endpoint, always locally."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from alter_mcp.errors import GrantNotFoundError
from alter_mcp.models import GrantStatus
from tests.oauth.conftest import (
    ALICE,
    BOB,
    VaultFactory,
    audit_dump,
    connect_in_browser,
    oidc_entry,
    stored_tokens,
)
from tests.peers.fixtures import CONF_APP, CONF_APP_SECRET
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer
from tests.peers.recorder import RequestRecorder

pytestmark = pytest.mark.peers


async def test_revoke_grant_revokes_at_provider_and_deletes_credential(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, oidc_peer: OidcProviderPeer,
) -> None:
    """After revoke_grant the server's introspection reports both tokens inactive."""
    vault = await make_vault(identity=ALICE)
    grant = await connect_in_browser(vault, browser_agent)
    tokens, _ = await stored_tokens(vault, grant.grant_id)
    assert tokens.refresh_token is not None
    result = await vault.revoke_grant(grant.grant_id, reason="cleanup")
    assert result.provider_revocation == "revoked" and result.provider_detail is None
    for token in (tokens.access_token, tokens.refresh_token):
        report = await oidc_peer.aintrospect(token.reveal(), CONF_APP, CONF_APP_SECRET)
        assert report["active"] is False
    assert (await oidc_peer.astats())["revocation"] == 2
    assert await vault.store.get_credential(grant.grant_id) is None
    revoked = await vault.store.get_grant(grant.grant_id)
    assert revoked is not None and revoked.status is GrantStatus.REVOKED
    event = [e for e in await audit_dump(vault) if e["action"] == "grant.revoke"][-1]
    assert event["outcome"] == "allowed" and event["reason"] == "cleanup"
    assert event["detail"]["provider_revocation"] == "revoked"
    with pytest.raises(GrantNotFoundError):
        await vault.revoke_grant(grant.grant_id)
    with pytest.raises(GrantNotFoundError):
        await vault._credential_for(revoked)


async def test_revoke_grant_provider_failure_still_revokes_locally(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, oidc_peer: OidcProviderPeer,
    recorder_factory: Callable[..., RequestRecorder],
) -> None:
    """A revocation endpoint answering 503 is reported as failed; the credential still goes."""
    broken = recorder_factory(status=503, body=b'{"error": "temporarily_unavailable"}')
    vault = await make_vault(entry=oidc_entry(oidc_peer, revocation_url=broken.url("/revoke")))
    grant = await connect_in_browser(vault, browser_agent)
    result = await vault.revoke_grant(grant.grant_id)
    assert result.provider_revocation == "failed"
    assert result.provider_detail and "HTTP 503" in result.provider_detail
    assert await vault.store.get_credential(grant.grant_id) is None
    assert (await vault.get_grant(grant.grant_id)).status is GrantStatus.REVOKED
    request = broken.requests[0]
    assert request.method == "POST" and (request.header("authorization") or "").startswith(
        "Basic ")


async def test_revoke_grant_without_endpoint_reports_not_supported(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, oidc_peer: OidcProviderPeer,
) -> None:
    """A provider without a revocation endpoint is revoked locally only."""
    vault = await make_vault(entry=oidc_entry(oidc_peer, revocation=False))
    grant = await connect_in_browser(vault, browser_agent)
    result = await vault.revoke_grant(grant.grant_id)
    assert result.provider_revocation == "not_supported"
    assert (await oidc_peer.astats())["revocation"] == 0
    assert await vault.store.get_credential(grant.grant_id) is None


async def test_revoke_grant_of_another_principal_is_not_found(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, oidc_peer: OidcProviderPeer,
) -> None:
    """Bob cannot revoke Alice's grant, and learns nothing about it; nothing is revoked."""
    vault = await make_vault(identity=ALICE)
    grant = await connect_in_browser(vault, browser_agent)
    with pytest.raises(GrantNotFoundError):
        await vault.with_identity(BOB).revoke_grant(grant.grant_id)
    assert (await oidc_peer.astats())["revocation"] == 0
    assert await vault.store.get_credential(grant.grant_id) is not None
    denied = [e for e in await audit_dump(vault) if e["action"] == "grant.revoke"]
    assert [(e["outcome"], e["principal"]) for e in denied] == [
        ("denied", BOB.principal.key)]
