"""Per-request identity over HTTP: users never reach each other's grants, groups share theirs,
agent API keys act as agents, and an agent key together with a user token is refused."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from alter_mcp.models import GroupPrincipal, Identity, SystemPrincipal
from alter_mcp.vault import AlterVault
from tests.peers.mockidp import MockIdpPeer
from tests.server.conftest import (
    PROVIDER,
    answering,
    audience,
    audit_text,
    era_client,
    http_server,
    secret_grant,
    user,
)
from tests.server.test_http_auth import post_init

ALICE_SECRET = "sk-ant-alice-0123456789abcdef"
BOB_SECRET = "sk-ant-bob-0123456789abcdef"


def _token(idp: MockIdpPeer, vault: AlterVault, sub: str, **claims: Any) -> str:
    return idp.token(sub=sub, aud=audience(vault), **claims)


async def _texts(client: Client[Any], tool: str, args: dict[str, Any]) -> tuple[bool, str]:
    result = await client.call_tool(tool, args, raise_on_error=False)
    text = result.content[0].text if result.content else json.dumps(result.structured_content)
    return result.is_error, text


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_http_user_never_reaches_another_users_grants(
    http_vault: AlterVault, mockidp: MockIdpPeer, era: str
) -> None:
    """Bob cannot list, revoke or check Alice's grants or sessions through any tool."""
    issuer = mockidp.issuer
    alice_grant = await secret_grant(http_vault, user(issuer, "alice"), value=ALICE_SECRET,
                                     label="alice-key")
    bob_grant = await secret_grant(http_vault, user(issuer, "bob"), value=BOB_SECRET,
                                   label="bob-key")
    alice = _token(mockidp, http_vault, "alice")
    bob = _token(mockidp, http_vault, "bob")
    async with http_server(http_vault) as url:
        async with era_client(StreamableHttpTransport(url + "/mcp", auth=alice), era) as client:
            link = (await client.call_tool("connect", {"providers": [PROVIDER]})
                    ).structured_content
        async with era_client(StreamableHttpTransport(url + "/mcp", auth=bob), era,
                              elicitation_handler=answering("accept", confirm=True)) as client:
            listed = (await client.call_tool("list_grants", {})).structured_content
            revoke = await _texts(client, "revoke_grant", {"grant_id": alice_grant})
            status = await _texts(client, "connect_status", {"session_id": link["session_id"]})
    assert [g["grant_id"] for g in listed["grants"]] == [bob_grant]
    assert revoke[0] and "grant_not_found" in revoke[1]
    assert status[0] and "connect_failed" in status[1]
    for text in (revoke[1], status[1]):
        assert "alice" not in text.lower()
    stored = await http_vault.store.get_grant(alice_grant)
    assert stored is not None and stored.status.value == "active"
    leaks = json.dumps(listed) + await audit_text(http_vault)
    assert ALICE_SECRET not in leaks and BOB_SECRET not in leaks
    assert alice not in leaks and bob not in leaks


async def test_http_user_cannot_request_with_another_users_grant(
    http_vault: AlterVault, mockidp: MockIdpPeer
) -> None:
    """Bob's authenticated_request with Alice's grant id is grant_not_found, nothing sent."""
    alice_grant = await secret_grant(http_vault, user(mockidp.issuer, "alice"),
                                     value=ALICE_SECRET, label="alice-key")
    bob = _token(mockidp, http_vault, "bob")
    async with http_server(http_vault) as url, Client(
            StreamableHttpTransport(url + "/mcp", auth=bob)) as client:
        failed, text = await _texts(client, "authenticated_request", {
            "method": "GET", "url": "https://api.anthropic.com/v1/models",
            "grant_id": alice_grant})
        by_provider = await _texts(client, "authenticated_request", {
            "method": "GET", "url": "https://api.anthropic.com/v1/models",
            "provider": "anthropic"})
    assert failed and "grant_not_found" in text and ALICE_SECRET not in text
    assert by_provider[0] and "grant_not_found" in by_provider[1]
    assert "connect" in by_provider[1]


async def test_http_group_grant_reaches_group_members_only(http_vault: AlterVault,
                                                           mockidp: MockIdpPeer) -> None:
    """A grant owned by IdP group 'eng' is listed for a member and hidden from others."""
    group = GroupPrincipal(issuer=mockidp.issuer, group="eng", label="eng-anthropic")
    grant_id = await secret_grant(http_vault, group, value=ALICE_SECRET, label="eng-anthropic")
    member = _token(mockidp, http_vault, "carol", groups=["eng", "ops"])
    outsider = _token(mockidp, http_vault, "dave", groups=["sales"])
    seen = {}
    async with http_server(http_vault) as url:
        for name, token in (("member", member), ("outsider", outsider)):
            async with Client(StreamableHttpTransport(url + "/mcp", auth=token)) as client:
                page = (await client.call_tool("list_grants", {})).structured_content
                seen[name] = [g["grant_id"] for g in page["grants"]]
    assert seen == {"member": [grant_id], "outsider": []}


async def test_http_agent_key_acts_as_its_agent(http_vault: AlterVault) -> None:
    """An agent key (bearer or X-Alter-Agent-Key) sees only the agent's grants; audit names it."""
    record, key = await http_vault.create_api_key("billing-agent")
    from alter_mcp.models import AgentPrincipal

    agent_grant = await secret_grant(http_vault, AgentPrincipal(key_id=record.key_id),
                                     value=ALICE_SECRET, label="agent-key")
    await secret_grant(http_vault, SystemPrincipal(), value=BOB_SECRET, label="system")
    found = []
    async with http_server(http_vault) as url:
        for transport in (StreamableHttpTransport(url + "/mcp", auth=key.reveal()),
                          StreamableHttpTransport(url + "/mcp", headers={
                              "X-Alter-Agent-Key": key.reveal()})):
            async with Client(transport) as client:
                page = (await client.call_tool("list_grants", {})).structured_content
                found.append([g["grant_id"] for g in page["grants"]])
    assert found == [[agent_grant], [agent_grant]]
    audit = await audit_text(http_vault)
    assert '"caller": "billing-agent"' in audit and key.reveal() not in audit


async def test_http_agent_key_with_user_token_is_refused(http_vault: AlterVault,
                                                         mockidp: MockIdpPeer) -> None:
    """A request carrying an agent key and a user JWT gets 401: an agent cannot act for a user."""
    _, key = await http_vault.create_api_key("mixer")
    jwt = _token(mockidp, http_vault, "alice")
    async with http_server(http_vault) as url:
        both = await post_init(url, {"authorization": f"Bearer {jwt}",
                                     "x-alter-agent-key": key.reveal()})
        alone = await post_init(url, {"x-alter-agent-key": key.reveal()})
    assert both.status_code == 401 and "not both" in both.json()["error_description"]
    assert alone.status_code == 200
    assert key.reveal() not in both.text and jwt not in both.text


async def test_http_revoked_or_unknown_agent_key_is_refused(http_vault: AlterVault) -> None:
    """A revoked key and a well-formed but unknown key both get 401."""
    record, key = await http_vault.create_api_key("short-lived")
    await http_vault.revoke_api_key(record.key_id)
    unknown = "amk_" + "A" * 43
    async with http_server(http_vault) as url:
        revoked = await post_init(url, {"authorization": f"Bearer {key.reveal()}"})
        made_up = await post_init(url, {"authorization": f"Bearer {unknown}"})
    assert revoked.status_code == 401 and made_up.status_code == 401
    assert "revoked" in revoked.json()["error_description"]


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_http_revoke_confirmation_round_trips(http_vault: AlterVault, mockidp: MockIdpPeer,
                                                    era: str) -> None:
    """Over HTTP the user's confirmation reaches the server in both eras (SSE / retry)."""
    grant_id = await secret_grant(http_vault, user(mockidp.issuer, "alice"),
                                  value=ALICE_SECRET, label="alice-key")
    human = answering("accept", confirm=True)
    token = _token(mockidp, http_vault, "alice")
    async with http_server(http_vault) as url, era_client(
            StreamableHttpTransport(url + "/mcp", auth=token), era,
            elicitation_handler=human) as client:
        result = await client.call_tool("revoke_grant", {"grant_id": grant_id})
    assert result.structured_content["revoked"] is True
    assert len(human.seen) == 1  # type: ignore[attr-defined]


async def test_http_identity_is_per_request(http_vault: AlterVault, mockidp: MockIdpPeer
                                            ) -> None:
    """Two users' requests interleaved on one server each see only their own grants."""
    grants = {sub: await secret_grant(http_vault, user(mockidp.issuer, sub),
                                      value=f"sk-ant-{sub}-0123456789abcdef", label=sub)
              for sub in ("alice", "bob")}
    async with http_server(http_vault) as url:
        clients = {sub: Client(StreamableHttpTransport(
            url + "/mcp", auth=_token(mockidp, http_vault, sub))) for sub in grants}
        async with clients["alice"] as a, clients["bob"] as b:
            for _ in range(3):
                for sub, client in (("alice", a), ("bob", b)):
                    page = (await client.call_tool("list_grants", {})).structured_content
                    assert [g["grant_id"] for g in page["grants"]] == [grants[sub]]


async def test_http_system_identity_is_not_reachable_without_credential(
    http_vault: AlterVault,
) -> None:
    """Without a credential nothing runs as the system principal over HTTP."""
    await secret_grant(http_vault, SystemPrincipal(), value=ALICE_SECRET, label="system")
    async with http_server(http_vault) as url, httpx2.AsyncClient(
            timeout=10, trust_env=False) as raw:
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "list_grants", "arguments": {}}}
        resp = await raw.post(url + "/mcp", json=call, headers={
            "accept": "application/json, text/event-stream",
            "content-type": "application/json", "mcp-protocol-version": "2026-07-28"})
    assert resp.status_code == 401
    assert Identity.system().principal.key not in resp.text
