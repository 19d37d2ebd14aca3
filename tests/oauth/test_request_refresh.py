"""vault.request with real OAuth tokens: a provider 401 refreshes once and retries once.

The "API" is the oidc-provider peer's own userinfo endpoint, which checks access tokens for
real: revoking only the access token there makes the next call answer 401, exactly as a
provider does when it drops a token early.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anyio
import httpx2
import pytest

from alter_mcp.store import AuditFilter
from tests.oauth.conftest import Clock, VaultFactory, connect_in_browser, oidc_entry
from tests.peers.fixtures import CONF_APP, CONF_APP_SECRET, DEFAULT_TTL, default_oidc_config
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer

pytestmark = pytest.mark.peers


def api_entry(peer: OidcProviderPeer) -> dict[str, object]:
    """Return the peer as a provider whose API host is the peer itself (as localhost)."""
    entry = oidc_entry(peer)
    entry.update(api_hosts=["localhost"], api_ports=[peer.port])
    return entry


def userinfo_url(peer: OidcProviderPeer) -> str:
    """Return the peer's userinfo endpoint under the provider's API host name."""
    return peer.userinfo_endpoint.replace("127.0.0.1", "localhost")


async def revoke_access_token(peer: OidcProviderPeer, token: str) -> None:
    """Revoke one access token at the peer (RFC 7009), leaving the refresh token alive."""
    async with httpx2.AsyncClient() as client:
        answer = await client.post(peer.revocation_endpoint, auth=(CONF_APP, CONF_APP_SECRET),
                                   data={"token": token, "token_type_hint": "access_token"})
    assert answer.status_code == 200


async def test_request_401_refreshes_and_retries_once(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, clock: Clock,
    oidc_factory: Callable[[Mapping[str, Any]], OidcProviderPeer],
) -> None:
    """A GET answered 401 gets one refresh at the real token endpoint and one retry that works.

    With one connection slot per origin, the retry must run in the slot the first send took.
    """
    from tests.oauth.conftest import stored_tokens

    config = default_oidc_config(ttl={**DEFAULT_TTL, "AccessToken": 2})
    peer = oidc_factory({**config, "clockTolerance": 0})
    vault = await make_vault(peer=peer, entry=api_entry(peer), allow_insecure_http=True,
                             provider_max_connections=1, provider_pool_timeout=0.5)
    grant = await connect_in_browser(vault, browser_agent)
    first = await vault.request("GET", userinfo_url(peer), grant_id=grant.grant_id)
    assert first.status == 200 and not first.retried and first.json()["sub"]
    tokens, version = await stored_tokens(vault, grant.grant_id)
    # The provider's token expires while the vault's clock says it is still fresh, so the
    # vault does not refresh ahead of time: the provider answers 401.
    await anyio.sleep(3)
    clock.advance(-3)
    await peer.areset_stats()
    again = await vault.request("GET", userinfo_url(peer), grant_id=grant.grant_id)
    assert again.status == 200 and again.retried
    assert (await peer.astats())["token"].get("refresh_token") == 1
    fresh, new_version = await stored_tokens(vault, grant.grant_id)
    assert new_version > version
    assert fresh.access_token.reveal() != tokens.access_token.reveal()
    events = await vault.store.list_audit(AuditFilter(action="request", grant_id=grant.grant_id))
    assert events[-1].outcome.value == "allowed" and events[-1].detail.get("retried") is True


async def test_request_401_on_post_is_not_retried(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, oidc_peer: OidcProviderPeer,
) -> None:
    """A non-idempotent request answered 401 is neither refreshed nor retried, and says so."""
    from tests.oauth.conftest import stored_tokens

    vault = await make_vault(entry=api_entry(oidc_peer), allow_insecure_http=True)
    grant = await connect_in_browser(vault, browser_agent)
    tokens, _ = await stored_tokens(vault, grant.grant_id)
    await revoke_access_token(oidc_peer, tokens.access_token.reveal())
    await oidc_peer.areset_stats()
    answer = await vault.request("POST", userinfo_url(oidc_peer), grant_id=grant.grant_id)
    assert answer.status == 401 and not answer.retried
    assert answer.notes and "not retried" in answer.notes[0]
    assert (await oidc_peer.astats())["token"].get("refresh_token", 0) == 0
