"""Policy rate limits are counted across replicas: the count is the shared audit log, so a
limit of N requests holds whichever replica each request lands on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.replicas.conftest import Scene, SceneFactory, secret_grant

pytestmark = [pytest.mark.peers, pytest.mark.slow]

LIMIT = 4
POLICY = f"""
[[rule]]
name = "echo-budget"
providers = ["echo-key"]
rate_limit = {{ limit = {LIMIT}, window_seconds = 3600, per = "grant" }}
"""


async def _limited(scene: SceneFactory, tmp_path: Path) -> tuple[Scene, str]:
    """Start two replicas sharing a policy of LIMIT requests per grant; return a grant."""
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    shared = {"ALTER_MCP_POLICY_FILE": str(policy)}
    built = await scene(overrides=[shared, shared])
    built.balancer.alternate()
    return built, await secret_grant(built, "echo-secret-0123456789abcdef", "limited")


def _call(grant_id: str, built: Scene, n: int) -> dict[str, Any]:
    return {"method": "GET", "url": built.api.url(f"/limited/{n}"), "grant_id": grant_id}


async def test_rate_limit_counts_requests_from_every_replica(
        scene: SceneFactory, tmp_path: Path) -> None:
    """Of 2N alternating calls, exactly N pass, the rest are refused by the rule."""
    built, grant_id = await _limited(scene, tmp_path)
    async with built.deployment.client(key=built.key, era="modern") as client:
        results = [await client.call_tool("authenticated_request", _call(grant_id, built, n),
                                          raise_on_error=False) for n in range(2 * LIMIT)]
    assert [r.is_error for r in results] == [False] * LIMIT + [True] * LIMIT
    assert all("rate limit of 4 requests" in r.content[0].text for r in results[LIMIT:])
    assert built.balancer.served() == [0, 1] * LIMIT


async def test_rate_limit_holds_under_concurrent_requests(
        scene: SceneFactory, tmp_path: Path) -> None:
    """Of 10N concurrent calls spread over both replicas, at most N pass."""
    built, grant_id = await _limited(scene, tmp_path)
    async with built.deployment.client(key=built.key, era="modern") as client:
        results = await asyncio.gather(*(
            client.call_tool("authenticated_request", _call(grant_id, built, n),
                             raise_on_error=False) for n in range(10 * LIMIT)))
    assert sum(not r.is_error for r in results) <= LIMIT
