"""Fixtures for the replica tests: a deployment of ``alter-mcp serve`` processes on one
throwaway PostgreSQL database, the oidc-provider peer as the OAuth provider, an echo API, an
operator's vault on the same database, and an agent key.

All replicas get the same ``ALTER_MCP_PUBLIC_URL``: the load balancer's address, which the
tests' balancer transport answers for (nothing listens there). The OAuth redirect URI, the
connect links and the browser-binding cookie all name that one host, so a callback may land on
any replica; a per-replica public URL would change the redirect URI between the authorization
request and the code exchange, which the provider refuses.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alter_mcp.config import load_settings
from alter_mcp.models import AgentPrincipal, Identity, SystemPrincipal
from alter_mcp.oauth.tokens import TokenSet, open_credential, seal_credential
from alter_mcp.vault import AlterVault
from tests.peers.fixtures import CONF_APP, CONF_APP_SECRET, DEFAULT_TTL, default_oidc_config
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer, node_binary
from tests.peers.process import PeerProcess, free_port
from tests.replicas.deployment import Balancer, Deployment
from tests.replicas.echo_api import READY
from tests.replicas.slow_proxy import SlowProxy

PROVIDER = "oidc-test"
SECRET_PROVIDER = "echo-key"
ECHO_API = Path(__file__).with_name("echo_api.py")


def digest(value: str) -> str:
    """Return the SHA-256 the echo API reports for a header value."""
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class EchoApi:
    """The echo API's address."""

    port: int

    def url(self, path: str) -> str:
        """Return the URL of ``path`` on the echo API."""
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="session")
def echo_api() -> Iterator[EchoApi]:
    """The provider API stand-in (uvicorn, its own process) for the whole session."""
    process = PeerProcess([sys.executable, str(ECHO_API)], name="echo-api")
    match = process.start(ready_pattern=READY, ready_stream="stderr", timeout=20)
    assert match is not None
    try:
        yield EchoApi(int(match.group(1)))
    finally:
        process.stop()


@pytest.fixture(scope="session")
def replica_oidc() -> Iterator[OidcProviderPeer]:
    """oidc-provider with ten-minute access tokens, so a refreshed token is not due at once."""
    if node_binary() is None:
        pytest.skip("`node` is not installed: the oidc-provider peer needs Node.js")
    ttl = {**DEFAULT_TTL, "AccessToken": 600, "RefreshToken": 3600}
    with OidcProviderPeer().start(default_oidc_config(ttl=ttl)) as peer:
        yield peer


@pytest.fixture(scope="session")
def slow_token_url(replica_oidc: OidcProviderPeer) -> Iterator[str]:
    """The provider's token endpoint behind a proxy that holds each request for 500 ms."""
    with SlowProxy(replica_oidc.port, delay=0.5) as proxy:
        yield f"http://127.0.0.1:{proxy.port}/token"


@pytest.fixture
def oidc(replica_oidc: OidcProviderPeer) -> OidcProviderPeer:
    """The session's oidc-provider with its token counters reset for this test."""
    replica_oidc.reset_stats()
    return replica_oidc


def deployment_config(oidc: OidcProviderPeer, api: EchoApi, *, token_url: str | None = None
                      ) -> dict[str, Any]:
    """Return the TOML settings every replica shares: the providers and the OAuth client."""
    oauth = {"authorization_url": oidc.authorization_endpoint,
             "token_url": token_url or oidc.token_endpoint,
             "userinfo_url": oidc.userinfo_endpoint,
             "revocation_url": oidc.revocation_endpoint, "account_source": "userinfo",
             "account_field": "email", "default_scopes": ["openid", "offline_access", "email"],
             "token_endpoint_auth": "client_secret_basic"}
    api_target = {"api_hosts": ["127.0.0.1"], "api_ports": [api.port]}
    return {
        "catalog": {
            PROVIDER: {"name": "OIDC test", "auth_kind": "oauth2", **api_target,
                       "injection": [{"kind": "bearer"}], "oauth": oauth},
            SECRET_PROVIDER: {"name": "Echo key", "auth_kind": "api_key", **api_target,
                              "injection": [{"kind": "header", "name": "X-Api-Key",
                                             "format": "{api_key}"}],
                              "secret_fields": [{"name": "api_key", "label": "Key"}]},
        },
        "providers": {PROVIDER: {"client_id": CONF_APP, "client_secret": CONF_APP_SECRET}},
    }


def new_key() -> str:
    """Return a fresh base64 key of 32 bytes."""
    return base64.b64encode(os.urandom(32)).decode()


@dataclass
class Scene:
    """One test's deployment: the shared settings, the operator's vault, an agent key."""

    deployment: Deployment
    admin: AlterVault
    agent: AgentPrincipal
    key: str
    api: EchoApi

    @property
    def balancer(self) -> Balancer:
        """Return the balancer in front of the started replicas."""
        assert self.deployment.balancer is not None, "start the replicas first"
        return self.deployment.balancer

    @property
    def agent_vault(self) -> AlterVault:
        """Return the operator's vault acting as the agent (to inspect what it owns)."""
        return self.admin.with_identity(Identity(principal=self.agent, caller="tests"))


SceneFactory = Callable[..., Awaitable[Scene]]


@pytest.fixture
async def scene(
    tmp_path: Path, postgres_url: str, oidc: OidcProviderPeer, echo_api: EchoApi,
) -> AsyncIterator[SceneFactory]:
    """``await scene(replicas=2, **overrides)``: replicas on a fresh database, and the rest."""
    made: list[Scene] = []

    async def make(*, replicas: int = 2, stateless: bool = True, token_url: str | None = None,
                   master_key: str | None = None,
                   overrides: list[dict[str, str]] | None = None) -> Scene:
        """Start the replicas; ``token_url`` replaces the provider's token endpoint."""
        config = deployment_config(oidc, echo_api, token_url=token_url)
        master_key = master_key or new_key()
        settings = load_settings(
            {"ALTER_MCP_DATA_DIR": str(tmp_path / "admin"), "ALTER_MCP_MASTER_KEY": master_key},
            database_url=postgres_url, allow_insecure_http=True, **config)
        admin = AlterVault(settings, caller="tests")
        await admin.open()  # migrates the database before the replicas race to
        record, key = await admin.create_api_key("replica-agent")
        deployment = Deployment.configure(
            tmp_path / "deployment", public_url=f"http://127.0.0.1:{free_port()}",
            database_url=postgres_url, master_key=master_key, request_state_key=new_key(),
            config=config, stateless=stateless)
        built = Scene(deployment, admin, AgentPrincipal(key_id=record.key_id), key.reveal(),
                      echo_api)
        made.append(built)
        deployment.start(replicas, overrides=overrides)
        return built

    yield make
    for built in made:
        errors = [text for text in built.deployment.stop() if "Traceback" in text]
        if built.deployment.balancer is not None:
            await built.deployment.balancer.close()
        await built.admin.close()
        assert not errors, errors[0][-4000:]


@pytest.fixture
async def browser() -> AsyncIterator[Callable[[Balancer], BrowserlessAgent]]:
    """``browser(balancer)``: a browserless agent (one cookie jar) behind the balancer."""
    agents: list[BrowserlessAgent] = []

    def make(balancer: Balancer) -> BrowserlessAgent:
        agent = BrowserlessAgent()
        # The agent's own client is never used: its jar goes through the balancer instead.
        agent.client = balancer.http_client(
            follow_redirects=False, timeout=10,
            headers={"user-agent": "alter-mcp-tests browserless agent"})
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        await agent.aclose()


async def secret_grant(scene: Scene, value: str, label: str) -> str:
    """Give the agent a managed-secret grant of the echo API holding ``value``."""
    admin = scene.admin.with_identity(Identity(principal=SystemPrincipal(), caller="tests"))
    secret = await admin.create_managed_secret(SECRET_PROVIDER, {"api_key": value}, label=label)
    grant = await admin.create_managed_secret_grant(secret.secret_id, principal=scene.agent,
                                                    label=label)
    return grant.grant_id


async def stored_tokens(scene: Scene, grant_id: str) -> tuple[TokenSet, int]:
    """Return a grant's decrypted tokens and credential version, read from the shared store."""
    record = await scene.admin.store.get_credential(grant_id)
    assert record is not None
    return open_credential(scene.admin.envelope, record), record.version


async def expire(scene: Scene, grant_id: str) -> TokenSet:
    """Mark the grant's access token as expired a minute ago (same tokens, next version)."""
    tokens, version = await stored_tokens(scene, grant_id)
    now = datetime.now(UTC)
    past = now - timedelta(minutes=1)
    stale = replace(tokens, expires_at=past, obtained_at=past - timedelta(minutes=10))
    record = seal_credential(scene.admin.envelope, grant_id, stale, version=version + 1,
                             now=now)
    assert await scene.admin.store.swap_credential(record, expected_version=version)
    return stale


def split_connect(balancer: Balancer) -> None:
    """Route the connect page to the replica that created the session, the callback to the
    next one, and tool calls to each replica in turn."""

    def route(request: Any) -> int | None:
        started = balancer.served("connect")
        if started and request.url.path.startswith("/connect/"):
            return started[-1]
        if started and request.url.path == "/oauth/callback":
            return (started[-1] + 1) % len(balancer.backends)
        return balancer.alternating(request)

    balancer.route = route


async def connect_grant(built: Scene, agent: BrowserlessAgent, *, pin: int | None = None
                        ) -> str:
    """Connect an OAuth account for the agent over MCP (2025-11-25 era); return the grant id.

    The link comes back in the tool result (a stateless server cannot elicit), the browser
    opens it, and the callback lands on another replica than the one that made the session
    (or every request goes to replica ``pin``).
    """
    if pin is None:
        split_connect(built.balancer)
    else:
        built.balancer.route = lambda _: pin
    async with built.deployment.client(key=built.key, era="legacy") as client:
        started = (await client.call_tool("connect", {"providers": [PROVIDER],
                                                      "wait_seconds": 0})).structured_content
        assert started["link_delivery"] == "in_result", started
        page = await agent.follow_response(started["connect_url"])
        assert page.status_code == 200, page.text
        done = (await client.call_tool("connect_status", {
            "session_id": started["session_id"]})).structured_content
    built.balancer.route = None
    assert done["status"] == "completed", done
    grant_id: str = done["grants"][0]["grant_id"]
    return grant_id
