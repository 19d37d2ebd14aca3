"""The authorization bridge across replicas on one PostgreSQL database: every step of a login
may land on any replica, because the bridge's state lives in the shared store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from alter_mcp.config import load_settings
from alter_mcp.vault import AlterVault
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer, pkce_pair
from tests.peers.process import free_port
from tests.replicas.conftest import new_key
from tests.replicas.deployment import Balancer, Deployment
from tests.server.bridge.conftest import (
    BRIDGE_CLIENT,
    BRIDGE_SECRET,
    RawHost,
    upstream_config,
)
from tests.server.test_http_auth import INIT, MCP_HEADERS

pytestmark = [pytest.mark.peers, pytest.mark.slow]


async def _init_status(http: httpx2.AsyncClient, url: str, token: str) -> int:
    response = await http.post(url + "/mcp", json=INIT,
                               headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"})
    return response.status_code


async def test_bridge_register_on_one_replica_authorize_on_another_refresh_on_the_first(
    tmp_path: Path, postgres_url: str,
    oidc_factory: Callable[[dict[str, Any]], OidcProviderPeer],
    browser: Callable[[Balancer], BrowserlessAgent],
) -> None:
    """Registration on replica 0, login on replica 1, refresh on replica 0: each step works."""
    public = f"http://127.0.0.1:{free_port()}"
    upstream = oidc_factory(upstream_config(public))
    master_key = new_key()
    admin = AlterVault(load_settings(
        {"ALTER_MCP_DATA_DIR": str(tmp_path / "admin"), "ALTER_MCP_MASTER_KEY": master_key},
        database_url=postgres_url), caller="tests")
    await admin.open()  # migrates the database before the replicas race to
    config = {"auth_mode": "bridge", "bridge_upstream_issuer": upstream.issuer,
              "bridge_client_id": BRIDGE_CLIENT, "bridge_client_secret": BRIDGE_SECRET,
              "bridge_upstream_scopes": ["openid", "email", "offline_access"]}
    deployment = Deployment.configure(
        tmp_path / "deployment", public_url=public, database_url=postgres_url,
        master_key=master_key, request_state_key=new_key(), config=config)
    try:
        balancer = deployment.start(2)
        pin = [0]
        balancer.route = lambda _request: pin[0]
        async with balancer.http_client() as http:
            host = RawHost(public, upstream.issuer, browser(balancer), http)
            client_id = await host.client_id()
            pin[0] = 1
            verifier, challenge = pkce_pair()
            code = await host.code(client_id, challenge)
            exchanged = await host.exchange(client_id, code, verifier)
            assert exchanged.status_code == 200, exchanged.text
            tokens = exchanged.json()
            pin[0] = 0
            renewed = await host.token(grant_type="refresh_token", client_id=client_id,
                                       refresh_token=tokens["refresh_token"])
            assert renewed.status_code == 200, renewed.text
            fresh = renewed.json()["access_token"]
            served_by_0 = await _init_status(http, public, fresh)
            pin[0] = 1
            served_by_1 = await _init_status(http, public, fresh)
        paths = {(hop.replica, hop.path) for hop in balancer.hops}
    finally:
        errors = [text for text in deployment.stop() if "Traceback" in text]
        if deployment.balancer is not None:
            await deployment.balancer.close()
        await admin.close()
    assert (served_by_0, served_by_1) == (200, 200)
    assert (0, "/register") in paths and (1, "/authorize") in paths
    assert (1, "/auth/callback") in paths and {(0, "/token"), (1, "/token")} <= paths
    assert not errors, errors[0][-4000:]
