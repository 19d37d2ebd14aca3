"""Opaque access tokens verified by RFC 7662 introspection at a real oidc-provider.

oidc-provider issues opaque access tokens for the MCP resource (``accessTokenFormat:
"opaque"``) to a public MCP host client through a real authorization-code + PKCE flow; alter-mcp
introspects them as its own confidential client. A fastmcp client over streamable HTTP to
uvicorn plays the MCP host.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from pydantic import SecretStr

from alter_mcp.errors import AuthenticationError
from alter_mcp.tokens import IntrospectionVerifier
from alter_mcp.vault import AlterVault
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer, node_binary
from tests.peers.process import PeerProcess, free_port
from tests.server.conftest import (
    VaultFactory,
    audience,
    audit_text,
    http_server,
    secret_grant,
    user,
)
from tests.server.test_http_auth import MCP_HEADERS, post_init
from tests.server.test_transports import ALTER_MCP, _inspector

HOST_CLIENT = "mcp-host"
HOST_REDIRECT = "http://127.0.0.1:9/callback"
RS_CLIENT = "alter-rs"
RS_SECRET = "alter-rs-secret-0123456789abcdefghij"
OTHER_RESOURCE = "http://127.0.0.1:1/other"
SECRET = "sk-ant-introspection-0123456789abcdef"


@pytest.fixture(scope="module")
def opaque_idp() -> Iterator[OidcProviderPeer]:
    """oidc-provider issuing opaque access tokens for every resource, with a static public MCP
    host client and alter-mcp's confidential introspection client."""
    if node_binary() is None:
        pytest.skip("`node` is not installed: the oidc-provider peer needs Node.js")
    config = {
        "clients": [
            {"client_id": HOST_CLIENT, "token_endpoint_auth_method": "none",
             "redirect_uris": [HOST_REDIRECT], "grant_types": ["authorization_code",
                                                               "refresh_token"],
             "response_types": ["code"]},
            {"client_id": RS_CLIENT, "client_secret": RS_SECRET,
             "token_endpoint_auth_method": "client_secret_basic", "redirect_uris": [],
             "grant_types": [], "response_types": []},
        ],
        "scopes": ["vault:read"],
        "resources": {"*": {"scope": "vault:read", "accessTokenFormat": "opaque"}},
        "ttl": {"AccessToken": 300, "RefreshToken": 600},
    }
    with OidcProviderPeer().start(config) as peer:
        yield peer


async def host_tokens(idp: OidcProviderPeer, resource: str, login: str = "alice"
                      ) -> dict[str, Any]:
    """Return the MCP host's token response after a real code + PKCE flow for ``resource``."""
    async with BrowserlessAgent() as agent:
        return await idp.code_flow(agent, client_id=HOST_CLIENT, redirect_uri=HOST_REDIRECT,
                                   scope="openid vault:read", login_hint=login,
                                   resource=resource)


async def introspecting_vault(make_vault: VaultFactory, idp: OidcProviderPeer,
                              **values: Any) -> AlterVault:
    """Return an HTTP vault on a free port verifying tokens by introspection at ``idp``."""
    values.setdefault("idp_introspection_client_secret", RS_SECRET)
    return await make_vault(public_url=f"http://127.0.0.1:{free_port()}", idp_issuer=idp.issuer,
                            idp_introspection_client_id=RS_CLIENT, **values)


async def with_token(url: str, token: str) -> httpx2.Response:
    """POST an initialize request to the MCP endpoint with bearer ``token``."""
    return await post_init(url, {"authorization": f"Bearer {token}"})


async def test_introspection_opaque_token_reaches_tools_as_the_user(
        make_vault: VaultFactory, opaque_idp: OidcProviderPeer,
        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """An opaque token from a real code flow lets an MCP client list the user's own grants;
    repeated requests are answered from the cache; the token and this server's secret appear
    in no log, audit event or file."""
    caplog.set_level(logging.DEBUG)
    vault = await introspecting_vault(make_vault, opaque_idp)  # endpoint discovered
    grant_id = await secret_grant(vault, user(opaque_idp.issuer, "alice"), value=SECRET,
                                  label="alice-key")
    await secret_grant(vault, user(opaque_idp.issuer, "bob"), value=SECRET + "b", label="bob")
    token = (await host_tokens(opaque_idp, audience(vault)))["access_token"]
    assert token.count(".") != 2  # opaque, not a JWT
    await opaque_idp.areset_stats()
    async with http_server(vault) as url, Client(
            StreamableHttpTransport(url + "/mcp", auth=token)) as client:
        first = (await client.call_tool("list_grants", {})).structured_content
        second = (await client.call_tool("list_grants", {})).structured_content
    assert [g["grant_id"] for g in first["grants"]] == [grant_id] and first == second
    assert (await opaque_idp.astats())["introspection"] == 1
    assert token not in caplog.text and token not in await audit_text(vault)
    assert RS_SECRET not in caplog.text
    for path in (p for p in tmp_path.rglob("*") if p.is_file()):
        content = path.read_bytes()
        assert token.encode() not in content and RS_SECRET.encode() not in content, path


async def test_introspection_scopes_of_an_opaque_token_gate_tools(
        make_vault: VaultFactory, opaque_idp: OidcProviderPeer) -> None:
    """The introspected ``scope`` decides the tools: vault:read lists, revoking needs
    vault:admin and gets 403 insufficient_scope."""
    vault = await introspecting_vault(make_vault, opaque_idp, stateless_http=True,
                                      tool_scopes={"list_grants": ["vault:read"],
                                                   "revoke_grant": ["vault:admin"]})
    token = (await host_tokens(opaque_idp, audience(vault)))["access_token"]
    calls = [{"jsonrpc": "2.0", "id": 1, "method": "tools/call",
              "params": {"name": name, "arguments": arguments}}
             for name, arguments in (("list_grants", {}), ("revoke_grant", {"grant_id": "g"}))]
    async with http_server(vault) as url, httpx2.AsyncClient(timeout=10,
                                                             trust_env=False) as client:
        answers = [await client.post(url + "/mcp", json=call, headers={
            **MCP_HEADERS, "mcp-protocol-version": "2025-11-25",
            "authorization": f"Bearer {token}"}) for call in calls]
    assert [a.status_code for a in answers] == [200, 403]
    assert 'scope="vault:admin"' in answers[1].headers["www-authenticate"]


async def test_introspection_inspector_cli_calls_tools_with_an_opaque_token(
        opaque_idp: OidcProviderPeer, tmp_path: Path, master_key: str) -> None:
    """The MCP Inspector CLI, against a real ``alter-mcp serve`` in introspection mode, calls
    a tool with an opaque token and is refused one whose scope the token lacks; the server's
    output never shows the token."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "ALTER_MCP_DATA_DIR": str(tmp_path / "data"), "ALTER_MCP_MASTER_KEY": master_key,
           "ALTER_MCP_CONNECT_PORT": "0", "ALTER_MCP_PUBLIC_URL": url,
           "ALTER_MCP_IDP_ISSUER": opaque_idp.issuer,
           "ALTER_MCP_IDP_INTROSPECTION_CLIENT_ID": RS_CLIENT,
           "ALTER_MCP_IDP_INTROSPECTION_CLIENT_SECRET": RS_SECRET,
           "ALTER_MCP_TOOL_SCOPES": '{"list_grants": ["vault:read"], '
                                    '"revoke_grant": ["vault:admin"]}'}
    token = (await host_tokens(opaque_idp, url + "/mcp"))["access_token"]
    header = ["--header", f"Authorization: Bearer {token}"]
    proc = PeerProcess([ALTER_MCP, "serve", "--transport", "http", "--host", "127.0.0.1",
                        "--port", str(port)], name="alter-mcp-http", env=env)
    proc.start(port=port, timeout=30)
    try:
        listed = _inspector([url + "/mcp", *header, "--method", "tools/call", "--tool-name",
                             "list_grants"], tmp_path)
        refused = _inspector([url + "/mcp", *header, "--method", "tools/call", "--tool-name",
                              "revoke_grant", "--tool-arg", "grant_id=g1"], tmp_path)
    finally:
        proc.stop()
    assert listed[0] == 0, listed[2]
    assert listed[1]["result"]["structuredContent"] == {"grants": [], "next_cursor": None}
    said = refused[2] + str(refused[1])  # the Inspector read the 403's scope challenge
    assert refused[0] != 0 and "Insufficient scope" in said and "vault:admin" in said
    assert token not in proc.stderr and "Traceback" not in proc.stderr


async def test_introspection_refuses_other_audience_and_refresh_tokens(
        make_vault: VaultFactory, opaque_idp: OidcProviderPeer) -> None:
    """A token for another resource and a refresh token get 401; a refusal is cached briefly."""
    vault = await introspecting_vault(make_vault, opaque_idp,
                                      idp_introspection_url=opaque_idp.introspection_endpoint)
    other = (await host_tokens(opaque_idp, resource=OTHER_RESOURCE))["access_token"]
    refresh = (await host_tokens(opaque_idp, audience(vault)))["refresh_token"]
    await opaque_idp.areset_stats()
    async with http_server(vault) as url:
        answers = [await with_token(url, t) for t in (other, other, refresh)]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert "another audience" in answers[0].headers["www-authenticate"]
    assert (await opaque_idp.astats())["introspection"] == 2  # the repeat was cached


async def test_introspection_revoked_token_is_refused_without_cache(
        make_vault: VaultFactory, opaque_idp: OidcProviderPeer) -> None:
    """With caching off, a token revoked at the provider is refused on the next request."""
    vault = await introspecting_vault(make_vault, opaque_idp, idp_introspection_cache_ttl=0)
    token = (await host_tokens(opaque_idp, audience(vault)))["access_token"]
    async with http_server(vault) as url:
        before = await with_token(url, token)
        async with httpx2.AsyncClient(timeout=10, trust_env=False) as client:
            revoked = await client.post(opaque_idp.revocation_endpoint, data={
                "token": token, "client_id": HOST_CLIENT})
        after = await with_token(url, token)
    assert before.status_code == 200 and revoked.status_code == 200
    assert after.status_code == 401 and "not active" in after.headers["www-authenticate"]


@pytest.mark.parametrize("setup", ["port_closed", "wrong_client_secret"])
async def test_introspection_outage_answers_503_not_401(
        make_vault: VaultFactory, opaque_idp: OidcProviderPeer, setup: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """An unreachable endpoint or one refusing this server's client is an outage (503 with
    Retry-After), never a verdict on the token; the token is not logged."""
    values: dict[str, Any] = {}
    if setup == "port_closed":
        values["idp_introspection_url"] = f"http://127.0.0.1:{free_port()}/introspect"
    else:
        values["idp_introspection_client_secret"] = "not-the-secret"
    vault = await introspecting_vault(make_vault, opaque_idp, **values)
    token = (await host_tokens(opaque_idp, audience(vault)))["access_token"]
    async with http_server(vault) as url:
        response = await with_token(url, token)
    assert response.status_code == 503 and response.headers["retry-after"]
    assert "www-authenticate" not in response.headers
    assert token not in caplog.text and RS_SECRET not in caplog.text


async def test_introspection_concurrent_requests_ask_once(opaque_idp: OidcProviderPeer) -> None:
    """Twenty concurrent verifications of a new token make one introspection request."""
    resource = "http://127.0.0.1:9/mcp"
    verifier = IntrospectionVerifier(
        issuer=opaque_idp.issuer, audience=resource, client_id=RS_CLIENT,
        client_secret=SecretStr(RS_SECRET), introspection_url=opaque_idp.introspection_endpoint)
    token = (await host_tokens(opaque_idp, resource))["access_token"]
    await opaque_idp.areset_stats()
    results = await asyncio.gather(*(verifier.verify(token) for _ in range(20)))
    assert {r.identity.principal.key for r in results} == {results[0].identity.principal.key}
    assert (await opaque_idp.astats())["introspection"] == 1


async def test_introspection_cache_is_bounded_by_the_token_expiry(
        opaque_idp: OidcProviderPeer) -> None:
    """A cached answer ends at the token's exp: past it the token is asked about again and
    refused as expired, even with a long cache TTL."""
    now = [0.0]
    resource = "http://127.0.0.1:9/mcp"
    verifier = IntrospectionVerifier(
        issuer=opaque_idp.issuer, audience=resource, client_id=RS_CLIENT,
        client_secret=SecretStr(RS_SECRET), introspection_url=opaque_idp.introspection_endpoint,
        cache_ttl=3600, leeway=0, clock=lambda: now[0])
    token = (await host_tokens(opaque_idp, resource))["access_token"]
    now[0] = time.time()
    verified = await verifier.verify(token)
    await opaque_idp.areset_stats()
    now[0] = verified.expires_at - 1
    assert (await verifier.verify(token)).identity == verified.identity
    assert (await opaque_idp.astats())["introspection"] == 0
    now[0] = verified.expires_at + 1
    with pytest.raises(AuthenticationError, match="expired"):
        await verifier.verify(token)
    assert (await opaque_idp.astats())["introspection"] == 1
    assert token not in repr(verified)
