"""``connect`` and ``connect_status`` end to end: a real OAuth provider (oidc-provider), a
browserless user following the link, and an in-memory MCP client of each era."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mcp_types import ElicitRequestURLParams

from alter_mcp.vault import AlterVault
from tests.peers.oidc import BrowserlessAgent
from tests.server.conftest import (
    ERAS,
    PROVIDER,
    answering,
    browsing_user,
    era_client,
    server_for,
)


@pytest.mark.parametrize("era", ERAS)
async def test_connect_link_by_url_elicitation_returns_new_grant(
    svault: AlterVault, browser_agent: BrowserlessAgent, era: str
) -> None:
    """The link goes to the user by URL elicitation; after they sign in the grant comes back."""
    human = browsing_user(browser_agent)
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with era_client(server_for(svault), era, elicitation_handler=human,
                          progress_handler=on_progress) as client:
        result = await client.call_tool("connect", {"providers": [PROVIDER],
                                                    "wait_seconds": 20})
    data = result.structured_content
    assert data["status"] == "completed", data
    assert data["link_delivery"] == "shown_to_user" and "connect_url" not in data
    assert data["grants"][0]["provider_id"] == PROVIDER
    assert data["grants"][0]["account_identifier"] == "alice@example.test"
    assert isinstance(human.seen[0], ElicitRequestURLParams)  # type: ignore[attr-defined]
    assert "/connect/" in human.seen[0].url  # type: ignore[attr-defined]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("action", ["decline", "cancel"])
async def test_connect_refused_link_falls_back_to_result(svault: AlterVault, era: str,
                                                         action: str) -> None:
    """A declined or cancelled link is returned pending, with the link for later."""
    async with era_client(server_for(svault), era,
                          elicitation_handler=answering(action)) as client:
        result = await client.call_tool("connect", {"providers": [PROVIDER],
                                                    "wait_seconds": 5})
    data = result.structured_content
    past = {"decline": "declined", "cancel": "cancelled"}[action]
    assert data["status"] == "pending" and data["link_delivery"] == f"user_{past}"
    assert "/connect/" in data["connect_url"] and "Do not retry" in data["next_step"]


@pytest.mark.parametrize("era", ERAS)
async def test_connect_without_elicitation_puts_link_in_result(
    svault: AlterVault, browser_agent: BrowserlessAgent, era: str
) -> None:
    """A client that cannot show links gets connect_url at once; connect_status then finishes."""
    async with era_client(server_for(svault), era) as client:
        started = asyncio.get_running_loop().time()
        first = (await client.call_tool("connect", {"providers": [PROVIDER]})
                 ).structured_content
        assert asyncio.get_running_loop().time() - started < 5  # no pointless wait
        assert first["status"] == "pending" and first["link_delivery"] == "in_result"
        page = await browser_agent.follow_response(first["connect_url"])
        assert page.status_code == 200
        done = (await client.call_tool("connect_status", {"session_id": first["session_id"],
                                                          "wait_seconds": 10})
                ).structured_content
    assert done["status"] == "completed"
    assert done["grants"][0]["account_identifier"] == "alice@example.test"


@pytest.mark.parametrize("era", ERAS)
async def test_connect_status_unknown_session_is_an_error(svault: AlterVault, era: str) -> None:
    """An unknown session id is a connect error telling the model what to pass."""
    async with era_client(server_for(svault), era) as client:
        result = await client.call_tool("connect_status", {"session_id": "f" * 32},
                                        raise_on_error=False)
    assert result.is_error and "connect_failed" in result.content[0].text


@pytest.mark.parametrize("era", ERAS)
async def test_connect_unknown_provider_is_an_error(svault: AlterVault, era: str) -> None:
    """Connecting an unknown provider fails before any link is made."""
    human = answering("accept")
    async with era_client(server_for(svault), era, elicitation_handler=human) as client:
        result = await client.call_tool("connect", {"providers": ["nope"]},
                                        raise_on_error=False)
    assert result.is_error and "providers://catalog" in result.content[0].text
    assert human.seen == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("era", ERAS)
async def test_catalog_resources_say_what_is_configured(svault: AlterVault, era: str) -> None:
    """providers://catalog lists every provider; providers://{id} details one, configured."""
    import json

    async with era_client(server_for(svault), era) as client:
        catalog = json.loads((await client.read_resource("providers://catalog"))[0].text)
        entry = json.loads((await client.read_resource(f"providers://{PROVIDER}"))[0].text)
        templates = await client.list_resource_templates()
    by_id: dict[str, Any] = {p["id"]: p for p in catalog["providers"]}
    assert by_id[PROVIDER]["configured"] is True and by_id["github"]["configured"] is False
    assert by_id["anthropic"]["auth_kind"] == "api_key"
    assert entry["oauth"]["default_scopes"] == ["openid", "offline_access", "email"]
    assert [t.uri_template for t in templates] == ["providers://{provider_id}"]


@pytest.mark.parametrize("era", ERAS)
async def test_unknown_provider_resource_is_an_error(svault: AlterVault, era: str) -> None:
    """Reading an unknown provider's resource fails with a pointer to the catalogue."""
    from fastmcp.exceptions import ResourceError
    from mcp.shared.exceptions import MCPError

    async with era_client(server_for(svault), era) as client:
        with pytest.raises((ResourceError, MCPError)) as info:
            await client.read_resource("providers://nope")
    assert "providers://catalog" in str(info.value)


@pytest.mark.parametrize("era", ERAS)
async def test_connect_status_wait_reports_progress(svault: AlterVault, era: str) -> None:
    """A bounded wait sends progress notifications and returns pending when time is up."""
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with era_client(server_for(svault), era, progress_handler=on_progress) as client:
        first = (await client.call_tool("connect", {"providers": [PROVIDER]})
                 ).structured_content
        waited = (await client.call_tool("connect_status", {
            "session_id": first["session_id"], "wait_seconds": 1})).structured_content
    assert waited["status"] == "pending" and progress
