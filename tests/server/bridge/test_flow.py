"""The authorization bridge end to end: a real MCP OAuth client (the ``mcp`` package's) with no
token given in advance discovers alter-mcp from the 401, registers, runs PKCE, logs the user in
at oidc-provider (which allows no registration), and then acts as that user."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from alter_mcp.crypto import generate_key
from alter_mcp.models import Outcome, UserPrincipal
from alter_mcp.store import AuditFilter
from alter_mcp.vault import AlterVault
from alter_mcp.vault.keys import bridge_state_binding
from tests.peers.httpbin import HttpbinPeer
from tests.peers.oidc import BrowserlessAgent
from tests.server.bridge.conftest import (
    API_KEY,
    BRIDGE_SECRET,
    HTTPBIN,
    Bridge,
    BridgeFactory,
    McpUser,
    RawHost,
)
from tests.server.conftest import audit_text, http_server
from tests.server.test_http_auth import post_init

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
    assert result.structured_content is not None, result.content
    return result.structured_content


@pytest.mark.parametrize("login", ["alice", "bob"])
async def test_bridge_registered_client_lists_grants_and_calls_api_as_the_upstream_user(
    bridge: Bridge, browser_agent: BrowserlessAgent, httpbin_peer: HttpbinPeer, login: str,
) -> None:
    """A client registered by RFC 7591 logs a user in upstream and uses only their grant."""
    grants = {name: await _grant_for(bridge, name) for name in ("alice", "bob")}
    own = grants[login]
    other = grants["bob" if login == "alice" else "alice"]
    user = McpUser(browser_agent, bridge.upstream.issuer, login_hint=login)
    async with http_server(bridge.vault) as url:
        mcp_url = url + "/mcp"
        async with httpx2.AsyncClient(trust_env=False) as plain:
            refused = await plain.post(mcp_url, json={})
        assert refused.status_code == 401
        assert "resource_metadata=" in refused.headers["www-authenticate"]
        async with Client(StreamableHttpTransport(mcp_url, auth=user.oauth(mcp_url))) as client:
            listed = await _call(client, "list_grants", {})
            ids = {g["grant_id"] for g in listed["grants"]}
            assert own in ids and other not in ids
            echoed = await _call(client, "authenticated_request", {
                "method": "GET", "url": httpbin_peer.url("/headers"), "grant_id": own})
    assert echoed["status"] == 200
    # Injected by the vault, echoed by httpbin, and redacted before the model sees it.
    assert echoed["body"]["headers"]["X-Api-Key"] == "[redacted]"
    assert user.storage.client is not None and user.storage.client.client_id
    assert user.storage.tokens is not None and user.storage.tokens.refresh_token


async def test_bridge_tokens_carry_none_of_the_upstream_scopes(
    bridge: Bridge, raw_host: RawHost,
) -> None:
    """The upstream granted alter-mcp openid and email; the host's tokens carry neither."""
    async with http_server(bridge.vault):
        tokens = await raw_host.tokens()
        renewed = await raw_host.token(grant_type="refresh_token", client_id=tokens["client_id"],
                                       refresh_token=tokens["refresh_token"])
    for response in (tokens, renewed.json()):
        assert not {"openid", "email", "profile", "offline_access"} & set(
            str(response.get("scope", "")).split())


async def test_bridge_refresh_token_gives_a_working_access_token_once(
    bridge: Bridge, raw_host: RawHost,
) -> None:
    """A refresh token yields a new access token that reaches /mcp, and is refused when reused."""
    async with http_server(bridge.vault) as url:
        tokens = await raw_host.tokens()
        refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                   "client_id": tokens["client_id"]}
        renewed = await raw_host.token(**refresh)
        assert renewed.status_code == 200, renewed.text
        fresh = renewed.json()
        assert fresh["access_token"] != tokens["access_token"]
        status = (await post_init(url, {"Authorization": f"Bearer {fresh['access_token']}"})
                  ).status_code
        reused = await raw_host.token(**refresh)
    assert status == 200
    assert reused.json().get("error") == "invalid_grant"


async def test_bridge_state_survives_a_restart(
    make_bridge: BridgeFactory, browser_agent: BrowserlessAgent, tmp_path: Path,
) -> None:
    """A token issued before a restart still works after it: nothing lived in memory."""
    first = await make_bridge()
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        async with http_server(first.vault) as url:
            tokens = await RawHost(first.url, first.upstream.issuer, browser_agent, http).tokens()
        await first.vault.close()
        again = AlterVault(first.vault.settings, caller="tests")
        await again.open()
        try:
            async with http_server(again) as url:
                status = (await post_init(url, {
                    "Authorization": f"Bearer {tokens['access_token']}"})).status_code
        finally:
            await again.close()
    assert status == 200


async def test_bridge_tokens_appear_in_no_store_row_and_no_log(
    bridge: Bridge, raw_host: RawHost, caplog: pytest.LogCaptureFixture,
) -> None:
    """The host's tokens, the upstream's tokens and the client secret are in no plaintext row,
    audit event or log line."""
    caplog.set_level(logging.DEBUG)
    async with http_server(bridge.vault) as url:
        tokens = await raw_host.tokens()
        assert (await post_init(url, {"Authorization": f"Bearer {tokens['access_token']}"})
                ).status_code == 200
    database = Path(bridge.vault.settings.resolved_database_url.removeprefix("sqlite:///"))
    upstream = _upstream_tokens(bridge, database)
    assert {"access_token", "refresh_token", "id_token"} <= set(upstream)
    secrets = [tokens["access_token"], tokens["refresh_token"], BRIDGE_SECRET,
               *upstream.values()]
    files = [database, *database.parent.glob(database.name + "-*")]
    stored = b"".join(f.read_bytes() for f in files if f.is_file())
    logged = caplog.text + await audit_text(bridge.vault)
    for value in secrets:
        assert value.encode() not in stored
        assert value not in logged


def _upstream_tokens(bridge: Bridge, database: Path) -> dict[str, str]:
    """Open the sealed upstream token set the bridge stored (as only the vault can)."""
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT state_id, blob FROM bridge_state WHERE state_id LIKE "
                            "'mcp-upstream-tokens:%'").fetchall()
    assert len(rows) == 1
    state_id, blob = rows[0]
    value = json.loads(bridge.vault.envelope.open_text(blob, aad=bridge_state_binding(state_id)))
    found = value["value"] if isinstance(value["value"], dict) else json.loads(value["value"])
    raw = {**found.get("raw_token_data", {}), **found}
    return {k: str(raw[k]) for k in ("access_token", "refresh_token", "id_token") if raw.get(k)}


async def test_bridge_audits_registration_grants_refresh_and_refusal(
    bridge: Bridge, raw_host: RawHost,
) -> None:
    """The audit log names the client, the user it got tokens for, and a reuse it was refused."""
    async with http_server(bridge.vault):
        tokens = await raw_host.tokens(login_hint="bob")
        refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                   "client_id": tokens["client_id"]}
        assert (await raw_host.token(**refresh)).status_code == 200
        await raw_host.token(**refresh)  # reused: refused
    events = await bridge.vault.store.list_audit(AuditFilter(limit=100))
    mine = [(e.action, e.outcome, e.principal, e.detail.get("grant_type"), e.error)
            for e in events if e.detail.get("client_id") == tokens["client_id"]]
    bob = UserPrincipal(issuer=bridge.upstream.issuer, subject="bob").key
    assert mine[:3] == [
        ("bridge.register", Outcome.ALLOWED, None, None, None),
        ("bridge.token", Outcome.ALLOWED, bob, "authorization_code", None),
        ("bridge.token", Outcome.ALLOWED, bob, "refresh_token", None)]
    assert mine[3:] == [("bridge.token", Outcome.DENIED, None, "refresh_token", "invalid_grant")]
    assert (await bridge.vault.verify_audit()).ok


async def test_bridge_state_is_rewrapped_by_key_rotation_and_keeps_working(
    make_bridge: BridgeFactory, browser_agent: BrowserlessAgent,
) -> None:
    """After keys rotate, no bridge row is under the old key and issued tokens still work."""
    first = await make_bridge()
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        host = RawHost(first.url, first.upstream.issuer, browser_agent, http)
        async with http_server(first.vault):
            tokens = await host.tokens()
        old = first.vault.envelope.keyring
        await first.vault.close()
        rotated = AlterVault(first.vault.settings, keyring=old.with_new_active(generate_key()),
                             caller="tests")
        await rotated.open()
        try:
            report = await rotated.rotate_keys()
            left = await rotated.store.blobs_not_under(rotated.envelope.keyring.active.id,
                                                       limit=10)
            async with http_server(rotated) as url:
                status = (await post_init(url, {
                    "Authorization": f"Bearer {tokens['access_token']}"})).status_code
                renewed = await host.token(grant_type="refresh_token",
                                           client_id=tokens["client_id"],
                                           refresh_token=tokens["refresh_token"])
        finally:
            await rotated.close()
    assert report.complete and report.rewrapped > 0
    assert left == []
    assert status == 200 and renewed.status_code == 200, renewed.text
