"""Refresh against the real oidc-provider: rotation, single flight, reuse, scopes, waiting."""

from __future__ import annotations

import anyio
import httpx2
import pytest

from alter_mcp.errors import (
    ReAuthRequiredError,
    ScopeReauthRequiredError,
    TokenRefreshInProgressError,
)
from alter_mcp.models import GrantStatus
from alter_mcp.redaction import Secret
from tests.oauth.conftest import (
    Clock,
    VaultFactory,
    assert_absent,
    audit_dump,
    connect_in_browser,
    dumps,
    stored_tokens,
)
from tests.peers.fixtures import CONF_APP, CONF_APP_SECRET
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer

pytestmark = pytest.mark.peers

HOUR = 3600.0


async def test_refresh_rotates_and_persists_new_refresh_token(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, clock: Clock,
    oidc_peer: OidcProviderPeer,
) -> None:
    """An expired token is refreshed once; the rotated refresh token replaces the old one."""
    vault = await make_vault()
    grant = await connect_in_browser(vault, browser_agent)
    old, _ = await stored_tokens(vault, grant.grant_id)
    assert (await vault._credential_for(grant))["access_token"] == old.access_token
    clock.advance(HOUR)
    fresh = (await vault._credential_for(grant))["access_token"]
    new, version = await stored_tokens(vault, grant.grant_id)
    assert fresh == new.access_token != old.access_token and version == 2
    assert new.refresh_token is not None and old.refresh_token is not None
    assert new.refresh_token != old.refresh_token
    assert (await oidc_peer.astats())["token"] == {"authorization_code": 1, "refresh_token": 1}
    used = await oidc_peer.aintrospect(old.refresh_token.reveal(), CONF_APP, CONF_APP_SECRET)
    live = await oidc_peer.aintrospect(new.access_token.reveal(), CONF_APP, CONF_APP_SECRET)
    assert used["active"] is False and live["active"] is True
    refreshes = [e for e in await audit_dump(vault) if e["action"] == "grant.refresh"]
    assert [(e["outcome"], e["detail"]["rotated"]) for e in refreshes] == [("allowed", True)]


async def test_refresh_storm_of_200_uses_makes_one_request(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, clock: Clock,
    oidc_peer: OidcProviderPeer,
) -> None:
    """200 concurrent uses of an expired grant cause exactly one refresh at the provider."""
    vault = await make_vault()
    grant = await connect_in_browser(vault, browser_agent)
    clock.advance(HOUR)
    seen: list[Secret] = []

    async def use() -> None:
        seen.append((await vault._credential_for(grant))["access_token"])

    async with anyio.create_task_group() as group:
        for _ in range(200):
            group.start_soon(use)
    assert len(seen) == 200 and len(set(seen)) == 1
    assert (await oidc_peer.astats())["token"].get("refresh_token") == 1


async def test_refresh_reuse_detection_needs_reauth_and_repair_keeps_grant_id(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, clock: Clock,
    oidc_peer: OidcProviderPeer,
) -> None:
    """A reused refresh token kills the family: needs_reauth, a repair URL, same grant id."""
    vault = await make_vault()
    grant = await connect_in_browser(vault, browser_agent)
    stolen, _ = await stored_tokens(vault, grant.grant_id)
    assert stolen.refresh_token is not None
    clock.advance(HOUR)
    await vault._credential_for(grant)
    # Someone replays the rotated-out refresh token: the server revokes the whole grant.
    async with httpx2.AsyncClient() as client:
        replay = await client.post(oidc_peer.token_endpoint, auth=(CONF_APP, CONF_APP_SECRET),
                                   data={"grant_type": "refresh_token",
                                         "refresh_token": stolen.refresh_token.reveal()})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    current, _ = await stored_tokens(vault, grant.grant_id)
    clock.advance(HOUR)
    with pytest.raises(ReAuthRequiredError) as caught:
        await vault._credential_for(grant)
    error = caught.value
    assert error.grant_id == grant.grant_id and error.connect_url
    assert error.connect_url in str(error)
    assert_absent([s.reveal() for s in [*stolen.secrets(), *current.secrets()]],
                  str(error), repr(error), dumps(error.to_dict()), dumps(await audit_dump(vault)))
    stored = await vault.get_grant(grant.grant_id)
    assert stored.status is GrantStatus.NEEDS_REAUTH
    with pytest.raises(ReAuthRequiredError):
        await vault._credential_for(stored)
    page = await BrowserlessAgent().follow_response(error.connect_url)
    assert page.status_code == 200 and "re-authorized" in page.text
    repaired = await vault.get_grant(grant.grant_id)
    assert repaired.status is GrantStatus.ACTIVE
    assert repaired.created_at == grant.created_at
    fresh = (await vault._credential_for(repaired))["access_token"]
    assert fresh not in (stolen.access_token, current.access_token)
    assert len((await vault.list_grants()).grants) == 1


async def test_refresh_held_elsewhere_raises_in_progress_after_bounded_wait(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, clock: Clock,
    oidc_peer: OidcProviderPeer,
) -> None:
    """While another worker holds the refresh lease, a caller waits briefly then gets an error."""
    vault = await make_vault(refresh_wait=0.3)
    grant = await connect_in_browser(vault, browser_agent)
    clock.advance(HOUR)
    assert await vault.store.acquire_refresh_lease(grant.grant_id, "another-worker", 30)
    started = anyio.current_time()
    with pytest.raises(TokenRefreshInProgressError) as caught:
        await vault._credential_for(grant)
    assert 0.25 < anyio.current_time() - started < 2.0
    assert caught.value.grant_id == grant.grant_id
    await vault.store.release_refresh_lease(grant.grant_id, "another-worker")
    await vault._credential_for(grant)
    assert (await oidc_peer.astats())["token"].get("refresh_token") == 1


async def test_refresh_not_due_makes_no_request(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, oidc_peer: OidcProviderPeer,
) -> None:
    """A token far from expiry is used as stored, with no request to the token endpoint."""
    vault = await make_vault()
    grant = await connect_in_browser(vault, browser_agent)
    for _ in range(5):
        await vault._credential_for(grant)
    assert (await oidc_peer.astats())["token"] == {"authorization_code": 1}


async def test_scopes_grown_in_config_require_reauth_until_repaired(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent,
) -> None:
    """A newly configured scope makes use raise ScopeReauthRequiredError until repaired."""
    vault = await make_vault()
    grant = await connect_in_browser(vault, browser_agent)
    wider = await make_vault(client={
        "client_id": CONF_APP, "client_secret": CONF_APP_SECRET,
        "scopes": ["openid", "offline_access", "email", "profile"]})
    with pytest.raises(ScopeReauthRequiredError) as caught:
        await wider._credential_for(grant)
    assert caught.value.missing_scopes == ["profile"]
    assert caught.value.connect_url and "profile" in str(caught.value)
    page = await BrowserlessAgent().follow_response(caught.value.connect_url)
    assert page.status_code == 200
    repaired = await wider.get_grant(grant.grant_id)
    assert "profile" in repaired.scopes
    assert (await wider._credential_for(repaired))["access_token"]


async def test_refresh_storm_on_dead_grant_spends_refresh_token_once(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, clock: Clock,
    oidc_peer: OidcProviderPeer,
) -> None:
    """200 uses of a grant the provider revoked: one refresh attempt, one shared repair link."""
    vault = await make_vault()
    grant = await connect_in_browser(vault, browser_agent)
    tokens, _ = await stored_tokens(vault, grant.grant_id)
    assert tokens.refresh_token is not None
    await oidc_peer.areset_stats()
    async with httpx2.AsyncClient() as client:  # the user revokes access at the provider
        await client.post(oidc_peer.revocation_endpoint, auth=(CONF_APP, CONF_APP_SECRET),
                          data={"token": tokens.refresh_token.reveal()})
    clock.advance(HOUR)
    links: set[str] = set()

    async def use() -> None:
        with pytest.raises(ReAuthRequiredError) as caught:
            await vault._credential_for(grant)
        links.add(str(caught.value.connect_url))

    async with anyio.create_task_group() as group:
        for _ in range(200):
            group.start_soon(use)
    assert (await oidc_peer.astats())["token"] == {"refresh_token": 1}
    assert len(links) == 1
    denied = [e for e in await audit_dump(vault)
              if e["action"] == "grant.refresh" and e["outcome"] == "denied"]
    assert len(denied) == 1 and denied[0]["error"] == "invalid_grant"
