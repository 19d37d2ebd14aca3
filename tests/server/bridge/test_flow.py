"""The authorization bridge end to end: a real MCP OAuth client (the ``mcp`` package's) with no
token given in advance discovers alter-mcp from the 401, registers, runs PKCE, logs the user in
at oidc-provider (which allows no registration), and then acts as that user."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from alter_mcp.models import UserPrincipal
from tests.peers.httpbin import HttpbinPeer
from tests.peers.oidc import BrowserlessAgent
from tests.server.bridge.conftest import API_KEY, HTTPBIN, Bridge, McpUser
from tests.server.conftest import http_server

pytestmark = pytest.mark.peers


async def _grant_for(bridge: Bridge, subject: str) -> str:
    """Give the upstream user ``subject`` a grant of httpbin's key; return its id."""
    vault = bridge.vault
    secret = await vault.create_managed_secret(HTTPBIN, {"api_key": API_KEY}, label="hb")
    owner = UserPrincipal(issuer=bridge.upstream.issuer, subject=subject, label=subject)
    grant = await vault.create_managed_secret_grant(secret.secret_id, principal=owner,
                                                    label=f"{subject}-hb")
    return grant.grant_id


async def _call(client: Client[Any], tool: str, args: dict[str, Any]) -> Any:
    result = await client.call_tool(tool, args, raise_on_error=False)
    assert not result.is_error, result.content
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


async def test_bridge_registered_client_lists_grants_and_calls_api_as_the_upstream_user(
    bridge: Bridge, browser_agent: BrowserlessAgent, httpbin_peer: HttpbinPeer
) -> None:
    """A client registered by RFC 7591 logs alice in upstream and uses only alice's grant."""
    alice_grant = await _grant_for(bridge, "alice")
    bob_grant = await _grant_for(bridge, "bob")
    user = McpUser(browser_agent)
    async with http_server(bridge.vault) as url:
        mcp_url = url + "/mcp"
        async with httpx2.AsyncClient(trust_env=False) as plain:
            refused = await plain.post(mcp_url, json={})
        assert refused.status_code == 401
        assert "resource_metadata=" in refused.headers["www-authenticate"]
        async with Client(StreamableHttpTransport(mcp_url, auth=user.oauth(mcp_url))) as client:
            listed = await _call(client, "list_grants", {})
            ids = {g["grant_id"] for g in listed["grants"]}
            assert alice_grant in ids and bob_grant not in ids
            echoed = await _call(client, "authenticated_request", {
                "method": "GET", "url": httpbin_peer.url("/headers"), "grant_id": alice_grant})
    assert echoed["status"] == 200
    # Injected by the vault, echoed by httpbin, and redacted before the model sees it.
    assert echoed["body"]["headers"]["X-Api-Key"] == "[redacted]"
    assert user.storage.client is not None and user.storage.client.client_id
    assert user.storage.tokens is not None and user.storage.tokens.refresh_token
