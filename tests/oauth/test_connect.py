"""Connect end to end against the real oidc-provider: link, provider, callback, grant."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from alter_mcp.errors import ConnectFlowError
from alter_mcp.models import ConnectSessionStatus, GrantStatus
from alter_mcp.oauth import ConnectResult
from alter_mcp.vault import AlterVault
from tests.oauth.conftest import (
    ALICE,
    PROVIDER,
    VaultFactory,
    connect_in_browser,
    oidc_entry,
    stored_tokens,
)
from tests.peers.fixtures import CONF_POST, CONF_POST_SECRET, PUBLIC_APP
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer

pytestmark = pytest.mark.peers


async def test_connect_creates_grant_with_account_and_granted_scopes(
    vault: AlterVault, browser_agent: BrowserlessAgent, oidc_peer: OidcProviderPeer,
) -> None:
    """A connect through the routes exchanges the code once and stores an active grant."""
    grant = await connect_in_browser(vault, browser_agent)
    assert grant.status is GrantStatus.ACTIVE
    assert grant.provider_id == PROVIDER
    assert grant.account_identifier == "alice@example.test"
    assert set(grant.scopes) >= {"openid", "email"}
    assert grant.principal_type == "system"
    tokens, version = await stored_tokens(vault, grant.grant_id)
    assert version == 1 and tokens.refresh_token is not None and tokens.expires_at is not None
    assert (await oidc_peer.astats())["token"] == {"authorization_code": 1}


@pytest.mark.parametrize(
    ("client", "auth"),
    [({"client_id": PUBLIC_APP}, "none"),
     ({"client_id": CONF_POST, "client_secret": CONF_POST_SECRET}, "client_secret_post")],
)
async def test_connect_authenticates_client_as_catalogue_says(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, oidc_peer: OidcProviderPeer,
    client: dict[str, str], auth: str,
) -> None:
    """Public (PKCE only) and client_secret_post clients both complete the exchange."""
    vault = await make_vault(client=client, entry=oidc_entry(oidc_peer, auth=auth))
    grant = await connect_in_browser(vault, browser_agent)
    assert grant.status is GrantStatus.ACTIVE
    await vault._credential_for(grant, force_refresh=True)
    assert (await oidc_peer.astats())["token"] == {"authorization_code": 1, "refresh_token": 1}


async def test_connect_authorization_request_uses_pkce_s256_and_login_hint(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent,
) -> None:
    """The redirect to the provider carries an S256 challenge, the state and the hint."""
    vault = await make_vault(identity=ALICE)
    link = await vault.create_connect_session(allowed_providers=[PROVIDER],
                                              account_hint="carol")
    response = await browser_agent.get(link.connect_url)
    assert response.status_code == 303
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert query["login_hint"] == ["carol"]
    assert query["state"][0].startswith(link.session_id + ".")
    assert query["redirect_uri"][0].endswith("/oauth/callback")


async def test_connect_keeps_several_accounts_per_principal(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent,
) -> None:
    """Two accounts of one provider give two grants; reconnecting one updates it in place."""
    vault = await make_vault(identity=ALICE)
    first = await connect_in_browser(vault, browser_agent, account_hint="alice")
    second = await connect_in_browser(vault, BrowserlessAgent(), account_hint="dave")
    again = await connect_in_browser(vault, BrowserlessAgent(), account_hint="alice")
    assert first.account_identifier == "alice@example.test"
    assert second.account_identifier == "dave@example.test"
    assert again.grant_id == first.grant_id
    page = await vault.list_grants(provider_id=PROVIDER)
    assert sorted(g.account_identifier or "" for g in page.grants) == [
        "alice@example.test", "dave@example.test"]
    assert all(g.owner == ALICE.principal for g in page.grants)
    _, version = await stored_tokens(vault, first.grant_id)
    assert version == 2


async def test_connect_picker_lists_allowed_providers(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, oidc_peer: OidcProviderPeer,
) -> None:
    """A link for several providers shows a picker; a choice outside it is refused."""
    vault = await make_vault(more={"second-idp": oidc_entry(oidc_peer) | {"name": "Second"}})
    link = await vault.create_connect_session(allowed_providers=[PROVIDER, "second-idp"])
    picker = await browser_agent.get(link.connect_url)
    assert picker.status_code == 200
    assert "?provider=second-idp" in picker.text and "OIDC test" in picker.text
    refused = await browser_agent.get(link.connect_url + "?provider=github")
    assert refused.status_code == 400 and "not offered" in refused.text
    page = await browser_agent.follow_response(link.connect_url + "?provider=second-idp")
    assert page.status_code == 200 and "Second connected" in page.text
    session = await vault.connect_status(link.session_id)
    assert (await vault.get_grant(session.grant_ids[0])).provider_id == "second-idp"


async def test_connect_headless_returns_one_result_per_provider(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent,
) -> None:
    """``connect`` shows the link to an opener, waits for the callback, returns the grant."""
    vault = await make_vault(identity=ALICE)
    opened: list[str] = []

    async def opener(url: str) -> None:
        opened.append(url)
        await browser_agent.follow_response(url)

    results = await vault.connect([PROVIDER], timeout=20, open_browser=opener)
    assert len(results) == 1 and isinstance(results[0], ConnectResult)
    grant = await vault.get_grant(results[0].grant_id)
    assert grant.account_identifier == results[0].account_identifier == "alice@example.test"
    assert opened and opened[0].startswith("http://127.0.0.1:")


async def test_connect_headless_reports_denial_without_waiting_for_timeout(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent,
) -> None:
    """A user who refuses at the provider ends the headless connect with access_denied."""
    vault = await make_vault(identity=ALICE)

    async def opener(url: str) -> None:
        await browser_agent.follow_response(url)

    with pytest.raises(ConnectFlowError) as caught:
        await vault.connect([PROVIDER], timeout=20, open_browser=opener, account_hint="deny")
    assert caught.value.reason == "access_denied"
    assert (await vault.list_grants()).grants == ()


async def test_connect_headless_times_out_with_clear_error(make_vault: VaultFactory) -> None:
    """Nobody opening the link ends the headless connect with reason ``timeout``."""
    vault = await make_vault()
    with pytest.raises(ConnectFlowError) as caught:
        await vault.connect([PROVIDER], timeout=0.3, open_browser=lambda url: None)
    assert caught.value.reason == "timeout"


async def test_connect_return_url_redirects_after_success(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent,
) -> None:
    """A session with a return URL sends the browser there once the grant is stored."""
    vault = await make_vault()
    link = await vault.create_connect_session(allowed_providers=[PROVIDER],
                                              return_url="http://127.0.0.1:9/done")
    callback = await browser_agent.follow(link.connect_url, stop_at_prefix="http://127.0.0.1:9/")
    assert callback == "http://127.0.0.1:9/done"
    session = await vault.connect_status(link.session_id)
    assert session.status is ConnectSessionStatus.COMPLETED
