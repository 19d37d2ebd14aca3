"""``authenticated_request`` through MCP against httpbin (a provider API stand-in), both eras.

The credential is a managed secret the vault injects as a header; httpbin echoes headers back,
so these tests also prove the tool result never carries the credential.
"""

from __future__ import annotations

from typing import Any

import pytest

from alter_mcp.models import SystemPrincipal
from alter_mcp.vault import AlterVault
from tests.peers.httpbin import HttpbinPeer
from tests.server.conftest import (
    ERAS,
    VaultFactory,
    answering,
    audit_text,
    era_client,
    server_for,
)

API_KEY = "httpbin-key-0123456789abcdefXYZ"
PROVIDER = "httpbin-test"


def httpbin_entry(peer: HttpbinPeer) -> dict[str, Any]:
    """Return a catalogue entry for httpbin as an API-key provider on 127.0.0.1."""
    return {"name": "httpbin", "auth_kind": "api_key", "api_hosts": ["127.0.0.1"],
            "api_ports": [peer.port], "secret_fields": [{"name": "api_key", "label": "Key"}],
            "injection": [{"kind": "header", "name": "X-Api-Key", "format": "{api_key}"}]}


@pytest.fixture
def policy(tmp_path: Any) -> Any:
    """Return the path of an empty policy file the test may fill."""
    path = tmp_path / "policy.toml"
    path.write_text("")
    return path


@pytest.fixture
async def rvault(make_vault: VaultFactory, httpbin_peer: HttpbinPeer, tmp_path: Any,
                 master_key: str, policy: Any) -> tuple[AlterVault, str]:
    """A vault that knows httpbin as a provider, with a system grant of its key."""
    from alter_mcp.config import load_settings

    settings = load_settings(
        {"ALTER_MCP_DATA_DIR": str(tmp_path / "rdata"), "ALTER_MCP_MASTER_KEY": master_key},
        catalog={PROVIDER: httpbin_entry(httpbin_peer)}, allow_insecure_http=True,
        tool_body_max_chars=2000, policy_file=str(policy))
    vault = AlterVault(settings, caller="tests")
    await vault.open()
    secret = await vault.create_managed_secret(PROVIDER, {"api_key": API_KEY}, label="hb")
    grant = await vault.create_managed_secret_grant(secret.secret_id,
                                                    principal=SystemPrincipal())
    yield vault, grant.grant_id  # type: ignore[misc]
    await vault.close()


@pytest.mark.parametrize("era", ERAS)
async def test_authenticated_request_returns_status_headers_body(
    rvault: tuple[AlterVault, str], httpbin_peer: HttpbinPeer, era: str
) -> None:
    """The provider's status, headers and JSON body come back; the key was sent, not shown."""
    vault, grant_id = rvault
    async with era_client(server_for(vault), era) as client:
        result = await client.call_tool("authenticated_request", {
            "method": "GET", "url": httpbin_peer.url("/headers"), "grant_id": grant_id,
            "query_params": {"q": "1"}, "reason": "test"})
    data = result.structured_content
    assert data["status"] == 200 and data["headers"]["content-type"] == "application/json"
    assert "X-Api-Key" in data["body"]["headers"]  # injected, and echoed back by httpbin
    assert API_KEY not in str(result) and API_KEY not in await audit_text(vault)


@pytest.mark.parametrize("era", ERAS)
async def test_authenticated_request_by_provider_and_capped_body(
    rvault: tuple[AlterVault, str], httpbin_peer: HttpbinPeer, era: str
) -> None:
    """A provider id picks the only grant; a long text body is capped and flagged truncated;
    a binary body is summarised, never dumped."""
    vault, grant_id = rvault
    async with era_client(server_for(vault), era) as client:
        text = (await client.call_tool("authenticated_request", {
            "method": "GET", "url": httpbin_peer.url("/html"), "provider": PROVIDER})
                ).structured_content
        binary = (await client.call_tool("authenticated_request", {
            "method": "GET", "url": httpbin_peer.url("/bytes/100000"), "provider": PROVIDER})
                  ).structured_content
    assert text["status"] == 200 and text["truncated"] is True and len(text["body"]) == 2000
    assert text["grant_id"] == grant_id
    assert binary["body_kind"] == "binary" and binary["body"]["size"] == 100000


@pytest.mark.parametrize("value", [{"a": [1, None]}, [1, "two", {"three": 3}], "text", 4.5,
                                   True])
async def test_authenticated_request_sends_every_kind_of_json_value(
    rvault: tuple[AlterVault, str], httpbin_peer: HttpbinPeer, value: Any
) -> None:
    """Each branch of the typed ``json`` union reaches the provider as that JSON value."""
    vault, grant_id = rvault
    async with era_client(server_for(vault), "legacy") as client:
        result = await client.call_tool("authenticated_request", {
            "method": "POST", "url": httpbin_peer.url("/anything"), "grant_id": grant_id,
            "json": value})
    data = result.structured_content
    assert data["status"] == 200 and data["body"]["json"] == value


@pytest.mark.parametrize("era", ERAS)
async def test_authenticated_request_to_foreign_host_is_blocked(
    rvault: tuple[AlterVault, str], era: str
) -> None:
    """A URL outside the provider's API hosts is refused with a blocked-destination error."""
    vault, grant_id = rvault
    async with era_client(server_for(vault), era) as client:
        result = await client.call_tool("authenticated_request", {
            "method": "GET", "url": "http://127.0.0.2:9/steal", "grant_id": grant_id},
            raise_on_error=False)
    assert result.is_error and "blocked_destination" in result.content[0].text
    assert API_KEY not in result.content[0].text


@pytest.mark.parametrize("era", ERAS)
async def test_authenticated_request_without_grant_says_connect(svault: AlterVault,
                                                                era: str) -> None:
    """With no grant for the provider the error tells the model to call connect."""
    async with era_client(server_for(svault), era) as client:
        result = await client.call_tool("authenticated_request", {
            "method": "GET", "url": "https://api.github.com/user", "provider": "github"},
            raise_on_error=False)
    assert result.is_error
    assert "connect" in result.content[0].text and "Traceback" not in result.content[0].text


APPROVAL_RULE = """
[[rule]]
name = "approve-posts"
providers = ["httpbin-test"]
methods = ["POST"]
require_approval = true
"""


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(("action", "content", "sent"), [
    ("accept", {"confirm": True}, True), ("accept", {"confirm": False}, False),
    ("decline", {}, False), ("cancel", {}, False)])
async def test_authenticated_request_approval_asks_the_user(
    rvault: tuple[AlterVault, str], httpbin_peer: HttpbinPeer, policy: Any, era: str,
    action: str, content: dict[str, bool], sent: bool,
) -> None:
    """A rule requiring approval asks the user; only an explicit yes sends the request."""
    vault, grant_id = rvault
    policy.write_text(APPROVAL_RULE)
    human = answering(action, **content)
    async with era_client(server_for(vault), era, elicitation_handler=human) as client:
        result = await client.call_tool("authenticated_request", {
            "method": "POST", "url": httpbin_peer.url("/post"), "grant_id": grant_id,
            "json": {"amount": 5}, "reason": "pay"}, raise_on_error=False)
    assert "POST" in human.seen[0].message and "approve-posts" in human.seen[0].message
    if sent:
        assert result.structured_content["status"] == 200
        assert result.structured_content["body"]["json"] == {"amount": 5}
    else:
        assert result.is_error and "approve-posts" in result.content[0].text


@pytest.mark.parametrize("era", ERAS)
async def test_authenticated_request_approval_without_elicitation_is_denied(
    rvault: tuple[AlterVault, str], httpbin_peer: HttpbinPeer, policy: Any, era: str
) -> None:
    """A client that cannot ask the user cannot get an approval-gated request through."""
    vault, grant_id = rvault
    policy.write_text(APPROVAL_RULE)
    async with era_client(server_for(vault), era) as client:
        result = await client.call_tool("authenticated_request", {
            "method": "POST", "url": httpbin_peer.url("/post"), "grant_id": grant_id},
            raise_on_error=False)
    assert result.is_error and "policy_violation" in result.content[0].text


class _Result:
    def __init__(self, body: Any) -> None:
        self.body = body

    def to_dict(self) -> dict[str, Any]:
        return {"status": 200, "body": self.body, "truncated": False}


def test_response_view_keeps_small_bodies_as_they_are() -> None:
    """A body under the cap is returned unchanged (parsed JSON stays JSON)."""
    from alter_mcp.server.tools import response_view

    assert response_view(_Result({"a": [1, 2]}), 1000)["body"] == {"a": [1, 2]}
    assert response_view(_Result(None), 1000)["body"] is None


def test_response_view_cuts_long_bodies_for_the_model() -> None:
    """Text or JSON longer than the cap comes back cut, flagged truncated with a note."""
    from alter_mcp.server.tools import response_view

    text = response_view(_Result("x" * 5000), 1000)
    assert text["truncated"] is True and len(text["body"]) == 1000 and text["body_note"]
    data = response_view(_Result({"items": list(range(2000))}), 1000)
    assert data["truncated"] is True and data["body"].startswith('{"items": [0, 1')
