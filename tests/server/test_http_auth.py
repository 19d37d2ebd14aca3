"""Streamable HTTP as an OAuth protected resource, with JWTs from a real identity provider.

The server runs under uvicorn on 127.0.0.1; tokens come from oauth2-mock-server's token
endpoint with the claims each test chooses, or are forged from such a token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from fastmcp.client.transports import StreamableHttpTransport

from alter_mcp.tokens import JwtVerifier
from alter_mcp.vault import AlterVault
from tests.peers.mockidp import MockIdpPeer
from tests.server.conftest import audience, era_client, http_server

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "raw-test", "version": "0"}}}
MCP_HEADERS = {"accept": "application/json, text/event-stream",
               "content-type": "application/json"}


async def post_init(url: str, headers: dict[str, str] | None = None) -> httpx2.Response:
    """POST an initialize request to the MCP endpoint with ``headers``."""
    async with httpx2.AsyncClient(timeout=10, trust_env=False) as client:
        return await client.post(url + "/mcp", json=INIT, headers={**MCP_HEADERS,
                                                                   **(headers or {})})


async def test_http_without_token_challenges_with_metadata(http_vault: AlterVault) -> None:
    """No credential: 401 whose challenge names the RFC 9728 metadata, served at both URLs."""
    async with http_server(http_vault) as url:
        resp = await post_init(url)
        async with httpx2.AsyncClient(timeout=10, trust_env=False) as client:
            by_path = (await client.get(url + "/.well-known/oauth-protected-resource/mcp")).json()
            at_root = (await client.get(url + "/.well-known/oauth-protected-resource")).json()
    assert resp.status_code == 401
    challenge = resp.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{url}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert by_path == at_root
    assert by_path["resource"] == url + "/mcp"
    assert by_path["authorization_servers"] == [http_vault.settings.idp_issuer]


def _claims(vault: AlterVault, **extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "aud": audience(vault), **extra}


BAD_TOKENS: dict[str, Callable[[MockIdpPeer, AlterVault], str]] = {
    "alg_none": lambda idp, v: idp.forge_none(idp.token(**_claims(v))),
    "hs256_with_public_key": lambda idp, v: idp.forge_hs256(idp.token(**_claims(v))),
    "bad_signature": lambda idp, v: idp.forge_bad_signature(idp.token(**_claims(v))),
    "unknown_kid": lambda idp, v: idp.forge_unknown_key(idp.token(**_claims(v))),
    "expired": lambda idp, v: idp.token(**_claims(v, exp=int(time.time()) - 600,
                                                  iat=int(time.time()) - 4000)),
    "future_nbf": lambda idp, v: idp.token(**_claims(v, nbf=int(time.time()) + 600)),
    "future_iat": lambda idp, v: idp.token(**_claims(v, iat=int(time.time()) + 600)),
    "wrong_aud": lambda idp, v: idp.token(**_claims(v, aud="http://127.0.0.1:1/mcp")),
    "wrong_iss": lambda idp, v: idp.token(**_claims(v, iss="http://127.0.0.1:1")),
    "no_sub": lambda idp, v: idp.token(**_claims(v, sub=None)),
    "not_a_jwt": lambda idp, v: "definitely-not-a-jwt",
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_http_bad_token_is_refused(http_vault: AlterVault, mockidp: MockIdpPeer,
                                         case: str) -> None:
    """Every forged, expired, premature, misaddressed or foreign token gets 401."""
    token = BAD_TOKENS[case](mockidp, http_vault)
    async with http_server(http_vault) as url:
        resp = await post_init(url, {"authorization": f"Bearer {token}"})
    assert resp.status_code == 401, (case, resp.text)
    challenge = resp.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge and "resource_metadata=" in challenge
    assert token not in resp.text and token not in challenge


async def test_http_valid_token_within_leeway_is_accepted(http_vault: AlterVault,
                                                          mockidp: MockIdpPeer) -> None:
    """A token whose nbf is a few seconds ahead (clock skew) is still accepted."""
    token = mockidp.token(**_claims(http_vault, nbf=int(time.time()) + 5))
    async with http_server(http_vault) as url:
        resp = await post_init(url, {"authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text


async def test_http_new_signing_key_is_fetched_on_unknown_kid(http_vault: AlterVault,
                                                              mockidp: MockIdpPeer) -> None:
    """After the IdP rotates keys, a token with the new kid verifies (JWKS re-fetched)."""
    verifier = JwtVerifier.from_settings(http_vault.settings)
    verifier_refetch = JwtVerifier(issuer=verifier.issuer, audience=verifier.audience,
                                   refresh_interval=0.2)
    http_vault.use_jwt_verifier(verifier_refetch)
    async with http_server(http_vault) as url:
        first = await post_init(url, {"authorization":
                                      f"Bearer {mockidp.token(**_claims(http_vault))}"})
        assert first.status_code == 200
        kid = mockidp.rotate()
        for _ in range(4):  # the peer signs round-robin over its keys
            token = mockidp.token(**_claims(http_vault))
            if MockIdpPeer.parts(token)[0]["kid"] == kid:
                break
        assert MockIdpPeer.parts(token)[0]["kid"] == kid
        await asyncio.sleep(0.3)  # unknown kids re-fetch the JWKS at most once per refresh_interval
        resp = await post_init(url, {"authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_http_valid_token_lists_and_calls_tools(http_vault: AlterVault,
                                                      mockidp: MockIdpPeer, era: str) -> None:
    """A verified user reaches the tools over streamable HTTP in both protocol eras."""
    token = mockidp.token(**_claims(http_vault, groups=["eng"]))
    async with http_server(http_vault) as url, era_client(
            StreamableHttpTransport(url + "/mcp", auth=token), era) as client:
        names = {t.name for t in await client.list_tools()}
        result = await client.call_tool("list_grants", {})
    assert "authenticated_request" in names
    assert result.structured_content == {"grants": [], "next_cursor": None}


async def test_http_rejects_foreign_host_and_origin(http_vault: AlterVault) -> None:
    """DNS rebinding: a foreign Host gets 421 and a foreign Origin gets 403."""
    async with http_server(http_vault) as url:
        wrong_host = await post_init(url, {"host": "evil.example"})
        wrong_origin = await post_init(url, {"origin": "http://evil.example"})
        own_origin = await post_init(url, {"origin": url})
    assert wrong_host.status_code == 421
    assert wrong_origin.status_code == 403
    assert own_origin.status_code == 401  # same origin passes the guard, then needs a token


async def test_http_serves_health_and_connect_pages(http_vault: AlterVault) -> None:
    """/health answers without a token, and the connect pages are mounted on the same app."""
    async with http_server(http_vault) as url, httpx2.AsyncClient(
            timeout=10, trust_env=False) as client:
        health = await client.get(url + "/health")
        page = await client.get(url + "/connect/not-a-real-token")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert page.status_code in (400, 404, 410)
    assert page.headers["content-type"].startswith("text/html")
