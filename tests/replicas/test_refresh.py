"""Refresh single flight across replicas: 500 concurrent ``authenticated_request`` calls on a
grant whose access token has expired, split between two server processes, make exactly one
``refresh_token`` request at the provider's token endpoint (oidc-provider's own counters)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from alter_mcp.store import AuditFilter
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer
from tests.replicas.conftest import SceneFactory, connect_grant, digest, expire, stored_tokens
from tests.replicas.deployment import Balancer

pytestmark = [pytest.mark.peers, pytest.mark.slow]

CALLS = 500


async def test_refresh_storm_across_replicas_makes_one_token_request(
        scene: SceneFactory, browser: Callable[[Balancer], BrowserlessAgent],
        oidc: OidcProviderPeer, slow_token_url: str) -> None:
    """500 concurrent calls on an expired grant over two replicas refresh it exactly once."""
    # A slow token endpoint: every replica sees the grant due while the one refresh is under way.
    built = await scene(token_url=slow_token_url)
    grant_id = await connect_grant(built, browser(built.balancer))
    async with built.deployment.client(key=built.key, era="modern") as modern, \
            built.deployment.client(key=built.key, era="legacy") as legacy:
        for client in (modern, legacy, modern, legacy):  # connections open on both replicas
            await client.call_tool("list_grants", {})
        stale = await expire(built, grant_id)
        _, expired_version = await stored_tokens(built, grant_id)
        await oidc.areset_stats()
        results = await asyncio.gather(*(
            client.call_tool("authenticated_request", {
                "method": "GET", "url": built.api.url(f"/storm/{i}"), "grant_id": grant_id},
                raise_on_error=False)
            for i in range(CALLS // 2) for client in (modern, legacy)))
    assert [r.content for r in results if r.is_error] == []
    fresh, version = await stored_tokens(built, grant_id)
    assert fresh.access_token.reveal() != stale.access_token.reveal()
    assert version == expired_version + 1
    sent = {r.structured_content["body"]["authorization"] for r in results}
    assert sent == {digest("Bearer " + fresh.access_token.reveal())}
    token_requests = (await oidc.astats())["token"]
    assert token_requests == {"refresh_token": 1}
    served = built.balancer.served("authenticated_request")
    assert len(served) == CALLS and min(served.count(0), served.count(1)) >= CALLS // 4
    refreshes = await built.admin.store.list_audit(AuditFilter(action="grant.refresh"))
    assert len(refreshes) == 1 and refreshes[0].outcome.value == "allowed"
    assert (await built.admin.verify_audit()).ok
