"""Resource scopes from configuration, and per-tool scopes answered with 403 insufficient_scope.

The server runs under uvicorn on 127.0.0.1; tokens are JWTs from oauth2-mock-server carrying
the ``scope`` each test chooses. Raw HTTP shows the exact status and challenge; a fastmcp
client shows what a real MCP client gets.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from mcp.shared.exceptions import MCPError

from alter_mcp.errors import ConfigurationError
from alter_mcp.models import AgentPrincipal
from alter_mcp.server import build_http_app
from alter_mcp.server.scopes import MAX_BODY
from alter_mcp.vault import AlterVault
from tests.peers.mockidp import MockIdpPeer
from tests.peers.process import free_port
from tests.server.conftest import (
    VaultFactory,
    audience,
    audit_text,
    http_server,
    secret_grant,
    user,
)

TOOL_SCOPES = {"list_grants": ["vault:read"], "authenticated_request": ["vault:use"],
               "revoke_grant": ["vault:read", "vault:admin"]}
MCP_HEADERS = {"accept": "application/json, text/event-stream",
               "content-type": "application/json", "mcp-protocol-version": "2025-11-25"}
SECRET = "sk-ant-scope-test-0123456789abcdef"


@pytest.fixture
async def scoped_vault(make_vault: VaultFactory, mockidp: MockIdpPeer) -> AlterVault:
    """A stateless HTTP vault with resource scope ``mcp:tools`` and the tool scopes above."""
    return await make_vault(public_url=f"http://127.0.0.1:{free_port()}",
                            idp_issuer=mockidp.issuer, stateless_http=True,
                            resource_scopes=["mcp:tools"], tool_scopes=TOOL_SCOPES)


def token(idp: MockIdpPeer, vault: AlterVault, scope: str, sub: str = "alice") -> str:
    """Return alice's JWT for ``vault`` carrying ``scope``."""
    return idp.token(sub=sub, aud=audience(vault), scope=scope)


async def call(url: str, bearer: str, body: Any) -> httpx2.Response:
    """POST one raw JSON-RPC body to the MCP endpoint with ``bearer``."""
    async with httpx2.AsyncClient(timeout=10, trust_env=False) as client:
        return await client.post(url + "/mcp", content=body if isinstance(body, bytes)
                                 else json.dumps(body).encode(),
                                 headers={**MCP_HEADERS, "authorization": f"Bearer {bearer}"})


def tool_call(name: str, arguments: dict[str, Any] | None = None, id_: int = 1) -> dict[str, Any]:
    """Return a ``tools/call`` JSON-RPC request."""
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call",
            "params": {"name": name, "arguments": arguments or {}}}


async def test_scopes_metadata_and_401_come_from_resource_scopes(scoped_vault: AlterVault
                                                                 ) -> None:
    """scopes_supported lists the resource and tool scopes, no OpenID ones; the 401 asks for
    the resource scopes."""
    async with http_server(scoped_vault) as url, httpx2.AsyncClient(
            timeout=10, trust_env=False) as client:
        meta = (await client.get(url + "/.well-known/oauth-protected-resource/mcp")).json()
        missing = await client.post(url + "/mcp", json=tool_call("list_grants"),
                                    headers=MCP_HEADERS)
        invalid = await client.post(url + "/mcp", json=tool_call("list_grants"),
                                    headers={**MCP_HEADERS, "authorization": "Bearer x.y.z"})
    assert meta["scopes_supported"] == ["mcp:tools", "vault:read", "vault:use", "vault:admin"]
    assert missing.status_code == invalid.status_code == 401
    assert 'scope="mcp:tools"' in missing.headers["www-authenticate"]
    assert 'scope="mcp:tools"' in invalid.headers["www-authenticate"]


async def test_scopes_default_advertises_no_openid_scopes(make_vault: VaultFactory,
                                                          mockidp: MockIdpPeer) -> None:
    """Without resource scopes the metadata lists none and the 401 names none; the login's
    OpenID scopes are not the resource's."""
    vault = await make_vault(public_url=f"http://127.0.0.1:{free_port()}",
                             idp_issuer=mockidp.issuer)
    async with http_server(vault) as url, httpx2.AsyncClient(timeout=10,
                                                             trust_env=False) as client:
        meta = (await client.get(url + "/.well-known/oauth-protected-resource")).json()
        missing = await client.post(url + "/mcp", json=tool_call("list_grants"),
                                    headers=MCP_HEADERS)
    assert meta["scopes_supported"] == []
    assert vault.settings.idp_scopes == ("openid", "profile", "email", "offline_access")
    assert missing.status_code == 401 and "scope=" not in missing.headers["www-authenticate"]


async def test_tool_scopes_missing_scope_answers_403_listing_every_scope(
        scoped_vault: AlterVault, mockidp: MockIdpPeer) -> None:
    """A call whose token lacks the tool's scope gets 403 insufficient_scope naming the
    resource scope and every scope of the tool; one with them reaches the tool."""
    reader = token(mockidp, scoped_vault, "mcp:tools vault:read")
    async with http_server(scoped_vault) as url:
        allowed = await call(url, reader, tool_call("list_grants"))
        refused = await call(url, reader, tool_call("revoke_grant", {"grant_id": "g1"}))
        use = await call(url, reader, tool_call("authenticated_request", {
            "method": "GET", "url": "https://api.example.test/x", "provider": "anthropic"}))
    assert allowed.status_code == 200 and '"grants"' in allowed.text
    assert refused.status_code == 403 and use.status_code == 403
    challenge = refused.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="insufficient_scope"')
    assert 'scope="mcp:tools vault:read vault:admin"' in challenge
    assert f'resource_metadata="{url}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert refused.json()["error"] == "insufficient_scope"
    assert 'scope="mcp:tools vault:use"' in use.headers["www-authenticate"]


async def test_tool_scopes_refused_call_never_reaches_the_tool(
        scoped_vault: AlterVault, mockidp: MockIdpPeer) -> None:
    """A refused revoke leaves the grant in place, whether sent plainly, hidden in a batch or
    behind a duplicate JSON key; a real MCP client sees the call fail."""
    grant_id = await secret_grant(scoped_vault, user(mockidp.issuer, "alice"), value=SECRET,
                                  label="alice-key")
    reader = token(mockidp, scoped_vault, "mcp:tools vault:read")
    revoke = tool_call("revoke_grant", {"grant_id": grant_id})
    duplicate = (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_grants",'
                 b'"name":"revoke_grant","arguments":{"grant_id":"' + grant_id.encode() + b'"}}}')
    async with http_server(scoped_vault) as url:
        statuses = [(await call(url, reader, body)).status_code for body in (
            revoke, [tool_call("list_grants"), {**revoke, "id": 2}], duplicate)]
        async with Client(StreamableHttpTransport(url + "/mcp", auth=reader)) as client:
            with pytest.raises(MCPError):
                await client.call_tool("revoke_grant", {"grant_id": grant_id})
            grants = (await client.call_tool("list_grants", {})).structured_content["grants"]
    assert statuses == [403, 403, 403]
    assert [(g["grant_id"], g["status"]) for g in grants] == [(grant_id, "active")]
    assert '"revoke_grant"' not in await audit_text(scoped_vault)


async def test_tool_scopes_agent_keys_are_not_scope_checked(scoped_vault: AlterVault) -> None:
    """An agent key (no OAuth scopes) reaches every tool; its own grants still bound it."""
    record, key = await scoped_vault.create_api_key("scope-agent")
    grant_id = await secret_grant(scoped_vault, AgentPrincipal(key_id=record.key_id),
                                  value=SECRET, label="agent-key")
    async with http_server(scoped_vault) as url:
        listed = await call(url, key.reveal(), tool_call("list_grants"))
    assert listed.status_code == 200 and grant_id in listed.text


async def test_tool_scopes_naming_an_unknown_tool_refuse_to_start(
        make_vault: VaultFactory, mockidp: MockIdpPeer) -> None:
    """A tool scope for a misspelt tool stops the app at start, naming the setting."""
    vault = await make_vault(public_url=f"http://127.0.0.1:{free_port()}",
                             idp_issuer=mockidp.issuer, tool_scopes={"list_grant": ["x"]})
    app = build_http_app(vault)
    with pytest.raises(ConfigurationError, match="list_grant") as caught:
        async with app.router.lifespan_context(app):
            pass
    assert caught.value.setting == "ALTER_MCP_TOOL_SCOPES"


async def test_tool_scopes_oversized_body_is_refused_unread(scoped_vault: AlterVault,
                                                            mockidp: MockIdpPeer) -> None:
    """A body larger than the MCP message limit gets 413 rather than an unchecked pass."""
    reader = token(mockidp, scoped_vault, "mcp:tools vault:read")
    padding = "x" * (MAX_BODY + 1)
    async with http_server(scoped_vault) as url:
        response = await call(url, reader, tool_call("revoke_grant", {"grant_id": padding}))
    assert response.status_code == 413
