"""An outage is not a bad token: with the bridge's database stopped, a valid bridge token or
agent key gets 503 with Retry-After, never a 401 that makes the host drop a good token."""

from __future__ import annotations

import json

import httpx2
import pytest

from tests.peers.oidc import BrowserlessAgent
from tests.peers.postgres import PostgresCluster
from tests.server.bridge.conftest import BridgeFactory, RawHost
from tests.server.conftest import http_server
from tests.server.test_credentials import raw_request
from tests.server.test_http_outages import assert_unavailable

pytestmark = pytest.mark.peers


async def test_bridge_token_with_the_database_stopped_gets_503_not_401(
    make_bridge: BridgeFactory, browser_agent: BrowserlessAgent, cluster: PostgresCluster,
) -> None:
    """A bridge token and an agent key that worked get 503 with Retry-After once it stops."""
    bridge = await make_bridge(database_url=cluster.create_database("bridge_outage"))
    _, key = await bridge.vault.create_api_key("agent")
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        host = RawHost(bridge.url, bridge.upstream.issuer, browser_agent, http)
        async with http_server(bridge.vault) as url:
            tokens = await host.tokens()
            bearer = [("Authorization", f"Bearer {tokens['access_token']}")]
            before = await raw_request(url, bearer)
            cluster.stop()
            after = await raw_request(url, bearer)
            agent_after = await raw_request(url, [("X-Alter-Agent-Key", key.reveal())])
    assert before.status == 200, before.text
    assert_unavailable(after, tokens["access_token"])
    assert_unavailable(agent_after, key.reveal())
    assert "database is unavailable" in json.loads(after.body)["error_description"]
