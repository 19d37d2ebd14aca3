"""Each quirk hook against a sandbox that behaves as the provider's documentation says.

Every case takes the shipped catalogue entry (its quirks, its refresh and exchange endpoints
moved to the sandbox) and shows both sides: with the quirk the connect, refresh or identity
works; without it the sandbox refuses exactly where the real provider would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from alter_mcp.config import load_settings
from alter_mcp.errors import AlterError, ReAuthRequiredError
from alter_mcp.models import ConnectSessionStatus, Grant
from alter_mcp.oauth.quirks import Hooks, _hooks
from alter_mcp.providers import OAuthQuirk, load_catalog
from alter_mcp.testing import Dialect, SandboxProvider
from alter_mcp.vault import AlterVault
from tests.oauth.conftest import Clock, stored_tokens

SHIPPED = load_catalog()
DAY = 86400.0

OpenVault = Callable[..., Awaitable[AlterVault]]


def entry_for(sandbox: SandboxProvider, provider_id: str, **oauth: Any) -> dict[str, Any]:
    """Return a catalogue override moving the shipped entry's endpoints to the sandbox."""
    shipped = SHIPPED.get(provider_id).oauth
    assert shipped is not None
    entry = sandbox.catalog_entry()
    del entry["injection"]  # the shipped injection rule stays
    moved = {"refresh_url": shipped.refresh_url and sandbox.issuer + "/v1/oauth/refresh",
             "exchange_url": shipped.exchange_url and sandbox.issuer + "/access_token"}
    if provider_id == "instagram":
        moved["refresh_url"] = sandbox.issuer + "/refresh_access_token"
    entry["oauth"] = {**entry["oauth"], **moved, **oauth}
    return entry


@pytest.fixture
def clock() -> Clock:
    """Return the clock the vault and the sandbox share."""
    return Clock()


@pytest.fixture
async def open_vault(tmp_path: Path, master_key: str, clock: Clock
                     ) -> AsyncIterator[OpenVault]:
    """``await open_vault(sandbox, provider_id, **oauth)``: a vault knowing that entry."""
    async with _vaults(tmp_path, master_key, clock) as opener:
        yield opener


@asynccontextmanager
async def _vaults(tmp_path: Path, master_key: str, clock: Clock) -> AsyncIterator[OpenVault]:
    opened: list[AlterVault] = []

    async def open_one(sandbox: SandboxProvider, provider_id: str, **oauth: Any) -> AlterVault:
        settings = load_settings(
            {"ALTER_MCP_MASTER_KEY": master_key}, data_dir=tmp_path / str(len(opened)),
            connect_port=0, allow_insecure_http=True,
            catalog={provider_id: entry_for(sandbox, provider_id, **oauth)},
            providers={provider_id: sandbox.client_config()})
        vault = AlterVault(settings, caller="quirk-tests", clock=clock)
        await vault.open()
        opened.append(vault)
        return vault

    try:
        yield open_one
    finally:
        for vault in opened:
            await vault.close()


def sandbox_for(clock: Clock, provider_id: str, dialect: Dialect, **kwargs: Any
                ) -> SandboxProvider:
    """Return a sandbox named like the provider, on the shared clock."""
    return SandboxProvider(provider_id=provider_id, dialect=dialect,
                           clock=lambda: clock().timestamp(), **kwargs)


async def connect_long_lived(vault: AlterVault, sandbox: SandboxProvider) -> Grant:
    """Connect and return the grant, checking the vault holds a long-lived token for it."""
    grant, _ = await connect(vault, sandbox)
    assert grant is not None
    tokens, _ = await stored_tokens(vault, grant.grant_id)
    assert sandbox.auth.tokens[tokens.access_token.reveal()].long_lived
    assert tokens.refresh_token is None
    return grant


async def connect(vault: AlterVault, sandbox: SandboxProvider) -> tuple[Grant | None, str]:
    """Play the browser through one connect; return the grant (None if it failed) and status."""
    link = await vault.create_connect_session(allowed_providers=[sandbox.provider_id])
    await sandbox.approve(link.connect_url)
    session = await vault.connect_status(link.session_id)
    grant = await vault.get_grant(session.grant_ids[0]) if session.grant_ids else None
    return grant, session.status.value


async def test_quirks_client_key_is_what_tiktok_accepts(
    clock: Clock, open_vault: OpenVault,
) -> None:
    """TikTok's client_key connects; the same client sent as client_id is refused."""
    async with sandbox_for(clock, "tiktok", Dialect(client_param="client_key")) as sandbox:
        vault = await open_vault(sandbox, "tiktok")
        grant, status = await connect(vault, sandbox)
        assert status == ConnectSessionStatus.COMPLETED.value and grant is not None
        assert sandbox.stats["token"] == {"authorization_code": 1}

        plain = await open_vault(sandbox, "tiktok", quirks=[])
        link = await plain.create_connect_session(allowed_providers=["tiktok"])
        page = await sandbox.approve(link.connect_url)
        assert page.status_code == 400 and "Unknown client" in page.text
        assert sandbox.stats["token"] == {"authorization_code": 1}


async def test_quirks_json_token_request_is_what_notion_accepts(
    clock: Clock, open_vault: OpenVault,
) -> None:
    """Notion's token endpoint takes JSON: the quirk connects, a form body is refused."""
    async with sandbox_for(clock, "notion", Dialect(json_token_requests=True)) as sandbox:
        grant, _ = await connect(await open_vault(sandbox, "notion"), sandbox)
        assert grant is not None
        grant, status = await connect(await open_vault(sandbox, "notion", quirks=[]), sandbox)
        assert grant is None and status == ConnectSessionStatus.FAILED.value


async def test_quirks_figma_refreshes_at_its_own_endpoint(
    clock: Clock, open_vault: OpenVault,
) -> None:
    """An expired Figma token is refreshed at refresh_url; the token endpoint would refuse."""
    dialect = Dialect(refresh_path="/v1/oauth/refresh")
    async with sandbox_for(clock, "figma", dialect, access_token_ttl=3600) as sandbox:
        vault = await open_vault(sandbox, "figma")
        grant, _ = await connect(vault, sandbox)
        assert grant is not None
        clock.advance(2 * 3600)
        answer = await vault.request("GET", sandbox.api_url + "/me", grant_id=grant.grant_id)
        assert answer.status == 200 and sandbox.stats["refreshed"] == 1

        plain = await open_vault(sandbox, "figma", refresh_url=None)
        grant, _ = await connect(plain, sandbox)
        assert grant is not None
        clock.advance(2 * 3600)
        with pytest.raises(AlterError):
            await plain.request("GET", sandbox.api_url + "/me", grant_id=grant.grant_id)
        assert sandbox.stats["refreshed"] == 1


async def test_quirks_instagram_trades_and_extends_the_short_lived_token(
    clock: Clock, open_vault: OpenVault,
) -> None:
    """Instagram's one-hour token is traded at connect and extended before its 60 days end."""
    dialect = Dialect(long_lived="instagram")
    async with sandbox_for(clock, "instagram", dialect, access_token_ttl=3600) as sandbox:
        vault = await open_vault(sandbox, "instagram")
        grant = await connect_long_lived(vault, sandbox)
        clock.advance(2 * 3600)  # every short-lived token is dead now
        assert all(t.long_lived or sandbox.token(v) is None
                   for v, t in sandbox.auth.tokens.items() if t.kind == "access")
        answer = await vault.request("GET", sandbox.api_url + "/me", grant_id=grant.grant_id)
        assert answer.status == 200 and sandbox.stats["refreshed"] == 0
        clock.advance(60 * DAY - 2 * 3600 - 30)  # inside the refresh leeway of the 60 days
        answer = await vault.request("GET", sandbox.api_url + "/me", grant_id=grant.grant_id)
        assert answer.status == 200 and sandbox.stats["refreshed"] == 1

        plain = await open_vault(sandbox, "instagram", quirks=[])
        grant, _ = await connect(plain, sandbox)
        assert grant is not None
        clock.advance(2 * 3600)
        with pytest.raises(ReAuthRequiredError):
            await plain.request("GET", sandbox.api_url + "/me", grant_id=grant.grant_id)


async def test_quirks_facebook_trades_the_short_lived_token(
    clock: Clock, open_vault: OpenVault,
) -> None:
    """Facebook's short-lived user token becomes a 60-day one with fb_exchange_token."""
    dialect = Dialect(long_lived="facebook")
    async with sandbox_for(clock, "facebook", dialect, access_token_ttl=3600) as sandbox:
        vault = await open_vault(sandbox, "facebook")
        grant = await connect_long_lived(vault, sandbox)
        clock.advance(30 * DAY)
        answer = await vault.request("GET", sandbox.api_url + "/me", grant_id=grant.grant_id)
        assert answer.status == 200


async def test_quirks_launchpad_type_is_what_basecamp_accepts(
    clock: Clock, open_vault: OpenVault,
) -> None:
    """Basecamp's token requests carry type=web_server, then type=refresh; none is refused."""
    dialect = Dialect(launchpad_type=True)
    async with sandbox_for(clock, "basecamp", dialect, access_token_ttl=3600) as sandbox:
        vault = await open_vault(sandbox, "basecamp")
        grant, _ = await connect(vault, sandbox)
        assert grant is not None
        clock.advance(2 * 3600)
        answer = await vault.request("GET", sandbox.api_url + "/me", grant_id=grant.grant_id)
        assert answer.status == 200 and sandbox.stats["refreshed"] == 1
        grant, status = await connect(await open_vault(sandbox, "basecamp", quirks=[]), sandbox)
        assert grant is None and status == ConnectSessionStatus.FAILED.value


async def test_quirks_github_revokes_the_app_grant(
    clock: Clock, open_vault: OpenVault,
) -> None:
    """GitHub revokes by DELETE of the app's grant; an RFC 7009 POST gets nowhere."""
    async with sandbox_for(clock, "github", Dialect(github_revocation=True)) as sandbox:
        where = {"revocation_url": sandbox.issuer + "/applications/{client_id}/grant"}
        for quirks, outcome, live in ((["no_expiry"], "failed", True),
                                      (["no_expiry", "github_grant_revocation"], "revoked",
                                       False)):
            vault = await open_vault(sandbox, "github", quirks=quirks, **where)
            grant, _ = await connect(vault, sandbox)
            assert grant is not None
            tokens, _ = await stored_tokens(vault, grant.grant_id)
            result = await vault.revoke_grant(grant.grant_id)
            assert result.provider_revocation == outcome
            assert (sandbox.token(tokens.access_token.reveal()) is not None) is live


@pytest.mark.parametrize("provider_id", ["linear", "monday"])
async def test_quirks_graphql_identity_names_the_account(
    clock: Clock, open_vault: OpenVault, provider_id: str,
) -> None:
    """Linear and monday identify the account by a GraphQL query; a userinfo GET cannot."""
    shipped = SHIPPED.get(provider_id).oauth
    assert shipped is not None
    async with sandbox_for(clock, provider_id, Dialect(graphql=True)) as sandbox:
        where = {"userinfo_url": sandbox.issuer + "/graphql",
                 "account_field": shipped.account_field}
        grant, _ = await connect(await open_vault(sandbox, provider_id, **where), sandbox)
        assert grant is not None and grant.account_identifier == sandbox.account
        others = [q.value for q in shipped.quirks if q.value != "graphql_identity"]
        grant, status = await connect(
            await open_vault(sandbox, provider_id, quirks=others, **where), sandbox)
        assert grant is None and status == ConnectSessionStatus.FAILED.value


@pytest.mark.parametrize("quirk", list(OAuthQuirk))
def test_quirks_every_label_has_code(quirk: OAuthQuirk) -> None:
    """No quirk label without a hook: each one registers at least one function."""
    assert _hooks(quirk) != Hooks()
