"""A connect started on one replica completes on the other: the connect page is served by the
replica that created the session, the provider's callback by its peer, the browser keeping one
cookie jar for the one public host name, in both protocol eras."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastmcp.client.elicitation import ElicitResult
from mcp_types import ElicitRequestURLParams

from tests.peers.oidc import BrowserlessAgent
from tests.replicas.conftest import (
    PROVIDER,
    Scene,
    SceneFactory,
    connect_grant,
    digest,
    split_connect,
    stored_tokens,
)
from tests.replicas.deployment import Balancer

pytestmark = [pytest.mark.peers, pytest.mark.slow]

Browser = Callable[[Balancer], BrowserlessAgent]


def _pages(built: Scene) -> dict[str, list[int]]:
    """Return which replicas served the connect page and the OAuth callback."""
    hops = built.balancer.hops
    return {"page": [h.replica for h in hops if h.path.startswith("/connect/")],
            "callback": [h.replica for h in hops if h.path == "/oauth/callback"]}


async def _use_on_both(built: Scene, grant_id: str) -> None:
    """Call the API with the grant through each replica; the stored token is what was sent."""
    tokens, _ = await stored_tokens(built, grant_id)
    async with built.deployment.client(key=built.key, era="modern") as client:
        for replica in (0, 1):
            built.balancer.route = lambda _, pinned=replica: pinned
            result = await client.call_tool("authenticated_request", {
                "method": "GET", "url": built.api.url("/me"), "grant_id": grant_id})
            sent = result.structured_content["body"]["authorization"]
            assert sent == digest("Bearer " + tokens.access_token.reveal())
    built.balancer.route = None
    assert built.balancer.served("authenticated_request") == [0, 1]


async def test_connect_link_from_one_replica_completes_on_the_other_legacy(
        scene: SceneFactory, browser: Browser) -> None:
    """2025-11-25: the link in the result opens on replica A, the callback lands on B."""
    built = await scene()
    agent = browser(built.balancer)
    grant_id = await connect_grant(built, agent)
    pages = _pages(built)
    assert len(pages["page"]) == 1 and len(pages["callback"]) == 1
    assert pages["page"] != pages["callback"]
    grant = await built.agent_vault.get_grant(grant_id)
    assert grant.provider_id == PROVIDER and grant.status.value == "active"
    await _use_on_both(built, grant_id)


async def test_connect_elicited_on_one_replica_completes_on_the_other_modern(
        scene: SceneFactory, browser: Browser) -> None:
    """2026-07-28: the URL elicitation, the page, the callback and the retry span both replicas."""
    built = await scene()
    agent = browser(built.balancer)
    split_connect(built.balancer)
    opened: list[int] = []

    async def user(message: str, response_type: Any, params: Any, context: Any) -> Any:
        assert isinstance(params, ElicitRequestURLParams)
        page = await agent.follow_response(params.url)
        opened.append(page.status_code)
        return ElicitResult(action="accept")

    async with built.deployment.client(key=built.key, era="modern",
                                       elicitation_handler=user) as client:
        result = await client.call_tool("connect", {"providers": [PROVIDER],
                                                    "wait_seconds": 10})
    data = result.structured_content
    assert opened == [200]
    assert data["status"] == "completed" and data["link_delivery"] == "shown_to_user"
    first, retry = built.balancer.served("connect")
    pages = _pages(built)
    assert pages == {"page": [first], "callback": [1 - first]} and retry != first
    built.balancer.route = None
    await _use_on_both(built, data["grants"][0]["grant_id"])
