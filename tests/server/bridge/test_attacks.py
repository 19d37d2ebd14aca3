"""Attacks on the authorization bridge, each refused: redirect URIs, codes, PKCE, resources,
one client's consent or code used by another, and a bridge token shown to another server."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx2
import pytest

from alter_mcp.models import Outcome
from alter_mcp.store import AuditFilter
from tests.peers.oidc import BrowserlessAgent, callback_params, pkce_pair
from tests.server.bridge.conftest import (
    CLIENT_REDIRECT,
    Bridge,
    BridgeFactory,
    RawHost,
    approve,
)
from tests.server.conftest import http_server
from tests.server.test_http_auth import post_init

pytestmark = pytest.mark.peers

EVIL = "https://evil.example/callback"


async def _mcp_status(url: str, token: str) -> int:
    return (await post_init(url, {"Authorization": f"Bearer {token}"})).status_code


async def test_bridge_registration_refuses_a_redirect_uri_not_allowed(
    bridge: Bridge, raw_host: RawHost,
) -> None:
    """Registering an https redirect URI on a host nobody listed is refused."""
    async with http_server(bridge.vault):
        response = await raw_host.register([EVIL])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_redirect_uri"


async def test_bridge_authorize_never_redirects_to_an_unregistered_uri(
    bridge: Bridge, raw_host: RawHost,
) -> None:
    """An authorization request naming another redirect URI gets an error page, no redirect."""
    async with http_server(bridge.vault):
        client_id = await raw_host.client_id()
        _, challenge = pkce_pair()
        url = await raw_host.authorize_url(client_id, challenge, redirect_uri=EVIL)
        response = await raw_host.http.get(url)
    assert response.status_code == 400
    assert "evil.example" not in response.headers.get("location", "")


async def test_bridge_code_is_single_use(bridge: Bridge, raw_host: RawHost) -> None:
    """A code exchanged once is refused, and audited as refused, the second time."""
    async with http_server(bridge.vault):
        verifier, challenge = pkce_pair()
        client_id = await raw_host.client_id()
        code = await raw_host.code(client_id, challenge)
        first = await raw_host.exchange(client_id, code, verifier)
        again = await raw_host.exchange(client_id, code, verifier)
    assert first.status_code == 200, first.text
    # The SDK's token handler answers invalid_grant with 401 (RFC 6749 says 400).
    assert again.status_code in (400, 401)
    assert again.json()["error"] == "invalid_grant"
    events = await bridge.vault.store.list_audit(AuditFilter(action="bridge.token", limit=10))
    assert [(e.outcome, e.error, e.detail["client_id"]) for e in events] == [
        (Outcome.ALLOWED, None, client_id), (Outcome.DENIED, "invalid_grant", client_id)]


@pytest.mark.parametrize("verifier", [None, "wrong-verifier-" + "x" * 40])
async def test_bridge_code_needs_the_right_pkce_verifier(
    bridge: Bridge, raw_host: RawHost, verifier: str | None,
) -> None:
    """A code exchanged without its PKCE verifier, or with a wrong one, gives no token."""
    async with http_server(bridge.vault):
        _, challenge = pkce_pair()
        client_id = await raw_host.client_id()
        code = await raw_host.code(client_id, challenge)
        refused = await raw_host.exchange(client_id, code, verifier)
    assert refused.status_code in (400, 401)
    assert refused.json()["error"] in ("invalid_grant", "invalid_request")
    assert "access_token" not in refused.text


async def test_bridge_refuses_an_authorization_for_another_resource(
    bridge: Bridge, raw_host: RawHost,
) -> None:
    """Asking for a token bound to another resource server ends in invalid_target, no code."""
    async with http_server(bridge.vault):
        _, challenge = pkce_pair()
        client_id = await raw_host.client_id()
        url = await raw_host.authorize_url(client_id, challenge,
                                           resource="http://127.0.0.1:9/mcp")
        response = await raw_host.http.get(url)
    assert response.is_redirect
    location = response.headers["location"]
    assert location.startswith(CLIENT_REDIRECT)
    params = callback_params(location)
    assert params["error"] == "invalid_target" and "code" not in params


async def test_bridge_code_of_client_a_is_refused_to_client_b(
    bridge: Bridge, raw_host: RawHost,
) -> None:
    """A code issued to client A, presented by client B with A's verifier, gives no token."""
    async with http_server(bridge.vault):
        verifier, challenge = pkce_pair()
        client_a = await raw_host.client_id()
        client_b = await raw_host.client_id()
        code = await raw_host.code(client_a, challenge)
        stolen = await raw_host.exchange(client_b, code, verifier)
    assert stolen.status_code in (400, 401)
    assert "access_token" not in stolen.text


async def test_bridge_consent_for_client_a_does_not_approve_client_b(
    bridge: Bridge, raw_host: RawHost, browser_agent: BrowserlessAgent,
) -> None:
    """After the user approved client A, client B still meets the consent page."""
    async with http_server(bridge.vault):
        _, challenge = pkce_pair()
        client_a = await raw_host.client_id()
        client_b = await raw_host.client_id()
        await raw_host.code(client_a, challenge)
        url = await raw_host.authorize_url(client_b, challenge)
        page = await browser_agent.follow_response(url, stop_at_prefix=CLIENT_REDIRECT)
    assert page.status_code == 200
    assert "consentForm" in page.text


async def test_bridge_consent_form_of_client_a_cannot_finish_client_b(
    bridge: Bridge, raw_host: RawHost, browser_agent: BrowserlessAgent,
) -> None:
    """Client A's consent page, approved, yields a code only for client A."""
    async with http_server(bridge.vault):
        verifier, challenge = pkce_pair()
        client_a = await raw_host.client_id()
        client_b = await raw_host.client_id()
        url = await raw_host.authorize_url(client_a, challenge)
        landed = await approve(browser_agent, url, stop_at=CLIENT_REDIRECT,
                               upstream=raw_host.upstream)
        code = callback_params(landed)["code"]
        as_b = await raw_host.exchange(client_b, code, verifier)
        as_a = await raw_host.exchange(client_a, code, verifier)
    assert as_b.status_code in (400, 401) and "access_token" not in as_b.text
    assert as_a.status_code in (200, 400)


async def test_bridge_token_is_refused_by_another_resource_server(
    make_bridge: BridgeFactory, browser_agent: BrowserlessAgent,
) -> None:
    """A bridge token for one deployment is refused by another, even with the same signing key."""
    first = await make_bridge(bridge_signing_key="shared-signing-key-0123456789")
    second = await make_bridge(bridge_signing_key="shared-signing-key-0123456789")
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        host = RawHost(first.url, first.upstream.issuer, browser_agent, http)
        async with http_server(first.vault) as url_a, http_server(second.vault) as url_b:
            tokens = await host.tokens()
            assert await _mcp_status(url_a, tokens["access_token"]) == 200
            assert await _mcp_status(url_b, tokens["access_token"]) == 401


@pytest.mark.parametrize(("uri", "allowed"), [
    ("https://claude.ai/api/mcp/auth_callback", True),
    ("http://claude.ai/api/mcp/auth_callback", False),      # not https
    ("https://claude.ai.evil.example/callback", False),     # a look-alike host
    ("https://evil.example/claude.ai/callback", False),     # the name in the path
    ("https://user@claude.ai/callback", False),             # userinfo tricks
])
async def test_bridge_accepts_https_redirects_only_on_listed_hosts(
    make_bridge: BridgeFactory, browser_agent: BrowserlessAgent, uri: str, allowed: bool,
) -> None:
    """With claude.ai listed, only https redirect URIs on exactly that host may register."""
    bridge = await make_bridge(bridge_redirect_hosts=["claude.ai"])
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        host = RawHost(bridge.url, bridge.upstream.issuer, browser_agent, http)
        async with http_server(bridge.vault):
            response = await host.register([uri])
    assert response.status_code == (201 if allowed else 400), response.text


@pytest.mark.parametrize("change", [{"code_challenge": None},
                                    {"code_challenge_method": "plain"}])
async def test_bridge_authorize_requires_an_s256_pkce_challenge(
    bridge: Bridge, raw_host: RawHost, change: dict[str, str | None],
) -> None:
    """An authorization request without a PKCE challenge, or with plain, issues no code."""
    async with http_server(bridge.vault):
        client_id = await raw_host.client_id()
        _, challenge = pkce_pair()
        url = await raw_host.authorize_url(client_id, challenge)
        parts = urlsplit(url)
        query = {k: v for k, v in parse_qsl(parts.query) if change.get(k, "") is not None}
        query.update({k: v for k, v in change.items() if v is not None})
        response = await raw_host.http.get(parts._replace(query=urlencode(query)).geturl())
    assert response.is_redirect
    params = callback_params(response.headers["location"])
    assert response.headers["location"].startswith(CLIENT_REDIRECT)
    assert params["error"] == "invalid_request" and "code" not in params
