"""``AlterVault.authenticate()``: a browser OIDC login (public client, PKCE, loopback redirect)
against the real oidc-provider peer, then tools act as the signed-in user."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from alter_mcp.errors import AuthenticationError
from alter_mcp.models import UserPrincipal
from alter_mcp.vault import AlterVault
from tests.peers.fixtures import PUBLIC_APP
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer
from tests.server.conftest import VaultFactory, era_client, secret_grant, server_for, user


def playing(agent: BrowserlessAgent, urls: list[str]) -> Any:
    """Return an opener that plays the browser through the login to the loopback callback."""
    async def opener(url: str) -> None:
        urls.append(url)
        asyncio.get_running_loop().create_task(agent.follow_response(url))

    return opener


async def test_authenticate_signs_in_and_tools_act_as_user(
    make_vault: VaultFactory, oidc_peer: OidcProviderPeer, browser_agent: BrowserlessAgent
) -> None:
    """The login returns the profile; afterwards every tool call acts as that user."""
    vault = await make_vault(idp_issuer=oidc_peer.issuer, idp_client_id=PUBLIC_APP)
    mine = await secret_grant(vault, user(oidc_peer.issuer, "alice"),
                              value="sk-ant-login-0123456789", label="alice")
    urls: list[str] = []
    result = await vault.authenticate(open_browser=playing(browser_agent, urls), timeout=20)
    assert result.user_info["sub"] == "alice"
    assert result.user_info["email"] == "alice@example.test"
    assert "code_challenge_method=S256" in urls[0] and "redirect_uri=http%3A%2F%2F127.0.0.1" \
        in urls[0]
    assert (await vault.current_identity()).principal == UserPrincipal(
        issuer=oidc_peer.issuer, subject="alice", label="alice@example.test")
    async with era_client(server_for(vault), "legacy") as client:
        page = (await client.call_tool("list_grants", {})).structured_content
    assert [g["grant_id"] for g in page["grants"]] == [mine]
    sealed = (vault.settings.data_dir / "login.sealed").read_bytes()
    assert b"eyJ" not in sealed  # the cached tokens are encrypted, not stored as JWTs


async def test_authenticate_reuses_the_sealed_login(
    make_vault: VaultFactory, oidc_peer: OidcProviderPeer, browser_agent: BrowserlessAgent
) -> None:
    """A second vault on the same data restores the login without opening a browser."""
    first = await make_vault(idp_issuer=oidc_peer.issuer, idp_client_id=PUBLIC_APP)
    await first.authenticate(open_browser=playing(browser_agent, []), timeout=20)
    second = await make_vault(idp_issuer=oidc_peer.issuer, idp_client_id=PUBLIC_APP)

    async def no_browser(url: str) -> None:
        raise AssertionError("the browser should not be needed")

    result = await second.authenticate(open_browser=no_browser, timeout=5)
    assert result.user_info["sub"] == "alice"


async def test_authenticate_refused_login_is_an_error(
    make_vault: VaultFactory, oidc_peer: OidcProviderPeer, browser_agent: BrowserlessAgent
) -> None:
    """When the user denies the login, authenticate raises and the identity is unchanged."""
    vault = await make_vault(idp_issuer=oidc_peer.issuer, idp_client_id=PUBLIC_APP)

    async def deny(url: str) -> None:
        asyncio.get_running_loop().create_task(
            browser_agent.follow_response(url + "&login_hint=deny"))

    with pytest.raises(AuthenticationError) as info:
        await vault.authenticate(open_browser=deny, timeout=20, reuse=False)
    assert info.value.details["reason"] == "access_denied"
    assert (await vault.current_identity()).principal.type == "system"


async def test_authenticate_replaces_the_user_token_getter(
    make_vault: VaultFactory, oidc_peer: OidcProviderPeer, browser_agent: BrowserlessAgent
) -> None:
    """After authenticate(), the constructor's user_token_getter is no longer asked."""
    opened = await make_vault(idp_issuer=oidc_peer.issuer, idp_client_id=PUBLIC_APP,
                              idp_audience="http://127.0.0.1:9/mcp")
    asked: list[int] = []

    def getter() -> str:
        asked.append(1)
        return "not-a-jwt"

    vault = AlterVault(opened.settings, caller="my-agent", user_token_getter=getter)
    with pytest.raises(AuthenticationError, match="well-formed"):
        await vault.current_identity()
    await vault.authenticate(open_browser=playing(browser_agent, []), timeout=20)
    ident = await vault.current_identity()
    await vault.close()
    assert ident.principal == UserPrincipal(issuer=oidc_peer.issuer, subject="alice",
                                            label="alice@example.test")
    assert asked == [1]
