"""Fixtures for the server tests: vaults wired to real peers, MCP clients of both eras, and a
streamable-HTTP server running under uvicorn on 127.0.0.1.

Peers: oidc-provider plays the third-party OAuth provider a user connects; oauth2-mock-server
plays the identity provider whose JWTs authenticate MCP requests; httpbin plays a provider API.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastmcp import Client
from fastmcp.client.elicitation import ElicitResult
from mcp_types import ElicitRequestURLParams

from alter_mcp.config import load_settings
from alter_mcp.models import Identity, Principal, SystemPrincipal, UserPrincipal
from alter_mcp.server import build_http_app, build_server
from alter_mcp.store import AuditFilter
from alter_mcp.vault import AlterVault
from tests.peers.fixtures import CONF_APP, CONF_APP_SECRET
from tests.peers.mockidp import MockIdpPeer, mockidp_installed
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer, node_binary
from tests.peers.process import free_port

PROVIDER = "oidc-test"
SECRET_PROVIDER = "anthropic"
ERAS = ["legacy", "modern"]
AUDIENCE_PATH = "/mcp"


def era_client(target: Any, era: str, **kwargs: Any) -> Client[Any]:
    """Return a fastmcp client speaking 2025-11-25 ("legacy") or 2026-07-28 ("modern")."""
    return Client(target, mode="legacy" if era == "legacy" else "auto", **kwargs)


def provider_entry(peer: OidcProviderPeer) -> dict[str, Any]:
    """Return a catalogue entry describing the oidc-provider peer as an OAuth provider."""
    return {"name": "OIDC test", "auth_kind": "oauth2", "api_hosts": ["localhost"],
            "injection": [{"kind": "bearer"}],
            "oauth": {"authorization_url": peer.authorization_endpoint,
                      "token_url": peer.token_endpoint, "userinfo_url": peer.userinfo_endpoint,
                      "account_source": "userinfo", "account_field": "email",
                      "default_scopes": ["openid", "offline_access", "email"],
                      "token_endpoint_auth": "client_secret_basic"}}


@pytest.fixture(scope="session")
def mockidp() -> Iterator[MockIdpPeer]:
    """The identity provider (oauth2-mock-server) for the whole session."""
    if node_binary() is None:
        pytest.skip("`node` is not installed: the identity-provider peer needs Node.js")
    if not mockidp_installed():
        pytest.fail("oauth2-mock-server is missing: run scripts/install-peers")
    with MockIdpPeer().start() as peer:
        yield peer


VaultFactory = Callable[..., Awaitable[AlterVault]]


@pytest.fixture
async def make_vault(tmp_path: Path, master_key: str, oidc_peer: OidcProviderPeer
                     ) -> AsyncIterator[VaultFactory]:
    """``await make_vault(**settings)``: an open vault that knows the oidc peer as a provider."""
    opened: list[AlterVault] = []

    async def make(**values: Any) -> AlterVault:
        values.setdefault("connect_port", 0)
        settings = load_settings(
            {"ALTER_MCP_DATA_DIR": str(tmp_path / "data"), "ALTER_MCP_MASTER_KEY": master_key},
            catalog={PROVIDER: provider_entry(oidc_peer)},
            providers={PROVIDER: {"client_id": CONF_APP, "client_secret": CONF_APP_SECRET}},
            **values)
        vault = AlterVault(settings, caller="tests")
        await vault.open()
        opened.append(vault)
        return vault

    yield make
    for vault in reversed(opened):
        await vault.close()


@pytest.fixture
async def svault(make_vault: VaultFactory) -> AlterVault:
    """An open vault acting as the system principal (stdio / in-memory default)."""
    return await make_vault()


async def secret_grant(vault: AlterVault, owner: Principal, *, value: str, label: str) -> str:
    """Store a managed secret and grant it to ``owner``; return the grant id."""
    admin = vault.with_identity(Identity(principal=SystemPrincipal(), caller="tests"))
    secret = await admin.create_managed_secret(SECRET_PROVIDER, {"api_key": value}, label=label)
    grant = await admin.create_managed_secret_grant(secret.secret_id, principal=owner,
                                                    label=label)
    return grant.grant_id


def user(issuer: str, sub: str) -> UserPrincipal:
    """Return the principal of ``sub`` at ``issuer`` (labelled, as user grants must be)."""
    return UserPrincipal(issuer=issuer, subject=sub, label=f"{sub}-label")


# -- elicitation handlers (the human) ---------------------------------------------------------
def answering(action: str, **content: Any) -> Callable[..., Awaitable[Any]]:
    """Return an elicitation handler that always answers ``action`` (with ``content``)."""
    seen: list[Any] = []

    async def handler(message: str, response_type: Any, params: Any, context: Any) -> Any:
        seen.append(params)
        return ElicitResult(action=action, content=content or None)

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


def browsing_user(agent: BrowserlessAgent) -> Callable[..., Awaitable[Any]]:
    """Return a handler that opens a URL-mode link in the browser (completing OAuth), then
    accepts; form questions are accepted with ``confirm: true``."""
    seen: list[Any] = []

    async def handler(message: str, response_type: Any, params: Any, context: Any) -> Any:
        seen.append(params)
        if isinstance(params, ElicitRequestURLParams):
            asyncio.get_running_loop().create_task(agent.follow_response(params.url))
            return ElicitResult(action="accept")
        return ElicitResult(action="accept", content={"confirm": True})

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


# -- HTTP -------------------------------------------------------------------------------------
@asynccontextmanager
async def http_server(vault: AlterVault) -> AsyncIterator[str]:
    """Serve ``build_http_app(vault)`` with uvicorn on its public URL; yield that URL."""
    url = vault.settings.public_url
    assert url is not None
    port = int(url.rsplit(":", 1)[1])
    config = uvicorn.Config(build_http_app(vault), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="on", log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    for _ in range(200):
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield url
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def http_vault(make_vault: VaultFactory, mockidp: MockIdpPeer) -> AlterVault:
    """A vault configured as an HTTP resource server trusting the mock identity provider."""
    port = free_port()
    return await make_vault(public_url=f"http://127.0.0.1:{port}", idp_issuer=mockidp.issuer)


def audience(vault: AlterVault) -> str:
    """Return the resource URL tokens must be issued for."""
    assert vault.settings.public_url
    return vault.settings.public_url + AUDIENCE_PATH


async def audit_text(vault: AlterVault) -> str:
    """Return the whole audit log as one JSON string (for leak searches)."""
    events = await vault.store.list_audit(AuditFilter(limit=100_000))
    return json.dumps([e.model_dump(mode="json") for e in events])


def server_for(vault: AlterVault, identity: Identity | None = None) -> Any:
    """Return the in-memory server acting as ``identity`` (default: system / user token)."""
    return build_server(vault, identity=identity)

