"""Rolling a new key-encryption key out to replicas: a replica already on the new key seals
records that every other replica must open, so the new key reaches every replica as a
*previous* key before any replica makes it active."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.peers.oidc import BrowserlessAgent
from tests.replicas.conftest import SceneFactory, connect_grant, new_key
from tests.replicas.deployment import Balancer

pytestmark = [pytest.mark.peers, pytest.mark.slow]


async def test_key_rollout_needs_the_new_key_everywhere_before_it_is_active(
        scene: SceneFactory, browser: Callable[[Balancer], BrowserlessAgent]) -> None:
    """A credential sealed under the new key opens on a replica holding it as previous only."""
    old, new = new_key(), new_key()
    built = await scene(replicas=3, master_key=old, overrides=[
        {"ALTER_MCP_PREVIOUS_KEYS": new},  # phase 1: reads both, seals with the old key
        {"ALTER_MCP_MASTER_KEY": new, "ALTER_MCP_PREVIOUS_KEYS": old},  # phase 2
        {},  # not rolled out yet: the old key only
    ])
    grant_id = await connect_grant(built, browser(built.balancer), pin=1)  # sealed by 1
    assert set(built.balancer.served()) == {1}
    outcomes: dict[int, str] = {}
    async with built.deployment.client(key=built.key, era="modern") as client:
        for replica in (0, 1, 2):
            built.balancer.route = lambda _, pinned=replica: pinned
            result = await client.call_tool("authenticated_request", {
                "method": "GET", "url": built.api.url("/keys"), "grant_id": grant_id},
                raise_on_error=False)
            outcomes[replica] = "ok" if not result.is_error else result.content[0].text
    assert outcomes[0] == outcomes[1] == "ok"
    assert outcomes[2].startswith("[decryption_failed]")  # fails closed, but fails
