"""Fixtures for the authorization bridge: oidc-provider as the upstream identity provider with
no dynamic registration (one static confidential client, alter-mcp's), a bridge-mode vault
that knows httpbin as a provider, and a real MCP OAuth client (the ``mcp`` package's) whose
browser is a cookie-jar agent that approves alter-mcp's consent page.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx2
import pytest
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from alter_mcp.config import load_settings
from alter_mcp.vault import AlterVault
from tests.peers.fixtures import DEFAULT_TTL
from tests.peers.httpbin import HttpbinPeer
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer, callback_params, pkce_pair
from tests.peers.process import free_port
from tests.server.test_http_outages import (  # noqa: F401 - the outage tests' fixtures
    closed_port,
    cluster,
)

BRIDGE_CLIENT = "alter-mcp-bridge"
BRIDGE_SECRET = "bridge-upstream-secret-0123456789abcdef"
HTTPBIN = "httpbin-test"
API_KEY = "httpbin-key-bridge-0123456789abcdef"
#: Where the MCP client listens for its code (nothing needs to: the agent stops there).
CLIENT_REDIRECT = "http://127.0.0.1:33418/callback"
_HIDDEN = re.compile(r'name="(txn_id|csrf_token)" value="([^"]*)"')


def httpbin_entry(peer: HttpbinPeer) -> dict[str, Any]:
    """Return a catalogue entry for httpbin as an API-key provider on 127.0.0.1."""
    return {"name": "httpbin", "auth_kind": "api_key", "api_hosts": ["127.0.0.1"],
            "api_ports": [peer.port], "secret_fields": [{"name": "api_key", "label": "Key"}],
            "injection": [{"kind": "header", "name": "X-Api-Key", "format": "{api_key}"}]}


def upstream_config(public_url: str) -> dict[str, Any]:
    """Return oidc-provider's config: alter-mcp's confidential client only, no registration."""
    return {
        "port": 0,
        "clients": [{
            "client_id": BRIDGE_CLIENT, "client_secret": BRIDGE_SECRET,
            "token_endpoint_auth_method": "client_secret_basic",
            "redirect_uris": [public_url + "/auth/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"], "application_type": "native",
        }],
        "ttl": dict(DEFAULT_TTL),
    }


@dataclass
class Bridge:
    """A bridge-mode deployment's pieces: the upstream IdP and the vault."""

    upstream: OidcProviderPeer
    vault: AlterVault

    @property
    def url(self) -> str:
        """Return the public URL of alter-mcp."""
        assert self.vault.settings.public_url
        return self.vault.settings.public_url


BridgeFactory = Callable[..., Awaitable[Bridge]]


@pytest.fixture
async def make_bridge(tmp_path: Path, master_key: str, httpbin_peer: HttpbinPeer,
                      oidc_factory: Callable[[dict[str, Any]], OidcProviderPeer],
                      ) -> AsyncIterator[BridgeFactory]:
    """``await make_bridge(**settings)``: a fresh upstream IdP and a bridge-mode vault."""
    opened: list[AlterVault] = []

    async def make(**values: Any) -> Bridge:
        public = f"http://127.0.0.1:{free_port()}"
        upstream = oidc_factory(upstream_config(public))
        values.setdefault("database_url", f"sqlite:///{tmp_path / f'b{len(opened)}.db'}")
        settings = load_settings(
            {"ALTER_MCP_DATA_DIR": str(tmp_path / "data"), "ALTER_MCP_MASTER_KEY": master_key},
            catalog={HTTPBIN: httpbin_entry(httpbin_peer)}, allow_insecure_http=True,
            public_url=public, auth_mode="bridge", bridge_upstream_issuer=upstream.issuer,
            bridge_client_id=BRIDGE_CLIENT, bridge_client_secret=BRIDGE_SECRET,
            bridge_upstream_scopes=["openid", "email", "profile", "offline_access"],
            **values)
        vault = AlterVault(settings, caller="tests")
        await vault.open()
        opened.append(vault)
        return Bridge(upstream, vault)

    yield make
    for vault in reversed(opened):
        await vault.close()


@pytest.fixture
async def bridge(make_bridge: BridgeFactory) -> Bridge:
    """A bridge-mode deployment with the default settings."""
    return await make_bridge()


@dataclass
class MemoryTokens:
    """The MCP client's token storage (what a host keeps between sessions)."""

    tokens: OAuthToken | None = None
    client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        """Return the stored tokens."""
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        """Store the tokens."""
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        """Return the stored registration."""
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        """Store the registration."""
        self.client = client_info


async def approve(agent: BrowserlessAgent, url: str, *, stop_at: str, upstream: str,
                  login_hint: str = "alice") -> str:
    """Play the user: approve alter-mcp's consent page, log in upstream; return the callback.

    oidc-provider's scripted login reads ``login_hint`` from the upstream authorization
    request; the browser adds it there, as a person would type their account name.
    """
    response = await agent.follow_response(url, stop_at_prefix=stop_at)
    page = str(response.url)
    if response.status_code == 200 and "consentForm" in response.text:
        form = dict(_HIDDEN.findall(response.text))
        assert set(form) == {"txn_id", "csrf_token"}, response.text[:500]
        posted = await agent.post_form(page, {**form, "action": "approve", "submit": "true"})
        assert posted.is_redirect, f"consent refused: {posted.status_code} {posted.text[:500]}"
        login = urljoin(page, posted.headers["location"])
        assert login.startswith(upstream + "/auth?"), login
        login += "&" + urlencode({"login_hint": login_hint})
        return await agent.follow(login, stop_at_prefix=stop_at)
    assert page.startswith(stop_at), (f"no consent page nor callback: {response.status_code} "
                                      f"{response.text[:500]}")
    return page


@dataclass
class McpUser:
    """A person at an MCP host: the host's OAuth client plus the user's browser."""

    agent: BrowserlessAgent
    upstream: str
    login_hint: str = "alice"
    storage: MemoryTokens = field(default_factory=MemoryTokens)
    redirect_uri: str = CLIENT_REDIRECT
    client_metadata_url: str | None = None
    callbacks: list[str] = field(default_factory=list)

    def oauth(self, server_url: str) -> OAuthClientProvider:
        """Return the ``mcp`` package's OAuth client for ``server_url``, driving this user."""
        callback: dict[str, str] = {}

        async def redirect(url: str) -> None:
            landed = await approve(self.agent, url, stop_at=self.redirect_uri,
                                   upstream=self.upstream, login_hint=self.login_hint)
            self.callbacks.append(landed)
            callback.update(callback_params(landed))

        async def wait_callback() -> AuthorizationCodeResult:
            assert "code" in callback, f"authorization failed: {callback}"
            return AuthorizationCodeResult(code=callback["code"], state=callback.get("state"),
                                           iss=callback.get("iss"))

        metadata = OAuthClientMetadata(
            client_name="bridge test host", redirect_uris=[AnyUrl(self.redirect_uri)],
            grant_types=["authorization_code", "refresh_token"], response_types=["code"],
            token_endpoint_auth_method="none")
        return OAuthClientProvider(server_url, metadata, self.storage, redirect_handler=redirect,
                                   callback_handler=wait_callback,
                                   client_metadata_url=self.client_metadata_url)


@dataclass
class RawHost:
    """An MCP host speaking OAuth by hand, for the attacks a real client would never try."""

    url: str
    upstream: str
    agent: BrowserlessAgent
    http: httpx2.AsyncClient
    metadata: dict[str, Any] = field(default_factory=dict)

    async def discover(self) -> dict[str, Any]:
        """Read the RFC 8414 metadata (once)."""
        if not self.metadata:
            response = await self.http.get(
                self.url + "/.well-known/oauth-authorization-server")
            assert response.status_code == 200, response.text
            self.metadata = response.json()
        return self.metadata

    async def register(self, redirect_uris: list[str] | None = None) -> httpx2.Response:
        """Register a public client by RFC 7591."""
        meta = await self.discover()
        return await self.http.post(meta["registration_endpoint"], json={
            "client_name": "raw host", "redirect_uris": redirect_uris or [CLIENT_REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"], "token_endpoint_auth_method": "none"})

    async def client_id(self) -> str:
        """Register a loopback client and return its id."""
        response = await self.register()
        assert response.status_code == 201, response.text
        return str(response.json()["client_id"])

    async def authorize_url(self, client_id: str, challenge: str, *,
                            redirect_uri: str = CLIENT_REDIRECT, resource: str | None = None,
                            state: str = "st-1") -> str:
        """Return an authorization request URL at the bridge."""
        meta = await self.discover()
        params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                  "code_challenge": challenge, "code_challenge_method": "S256", "state": state,
                  "resource": resource or self.url + "/mcp"}
        return f"{meta['authorization_endpoint']}?{urlencode(params)}"

    async def code(self, client_id: str, challenge: str, *, login_hint: str = "alice",
                   resource: str | None = None) -> str:
        """Run the authorization (consent, upstream login); return the code."""
        url = await self.authorize_url(client_id, challenge, resource=resource)
        landed = await approve(self.agent, url, stop_at=CLIENT_REDIRECT,
                               upstream=self.upstream, login_hint=login_hint)
        params = callback_params(landed)
        assert "code" in params, params
        return params["code"]

    async def token(self, **data: str) -> httpx2.Response:
        """POST to the token endpoint."""
        meta = await self.discover()
        return await self.http.post(meta["token_endpoint"], data=data)

    async def tokens(self, *, login_hint: str = "alice") -> dict[str, str]:
        """Register, authorize as ``login_hint`` and exchange; return the token response."""
        verifier, challenge = pkce_pair()
        client_id = await self.client_id()
        code = await self.code(client_id, challenge, login_hint=login_hint)
        response = await self.exchange(client_id, code, verifier)
        assert response.status_code == 200, response.text
        return {"client_id": client_id, **response.json()}

    async def exchange(self, client_id: str, code: str, verifier: str | None) -> httpx2.Response:
        """Exchange ``code`` (with ``verifier``, if any) for tokens."""
        data = {"grant_type": "authorization_code", "code": code, "client_id": client_id,
                "redirect_uri": CLIENT_REDIRECT, "resource": self.url + "/mcp"}
        if verifier is not None:
            data["code_verifier"] = verifier
        return await self.token(**data)


@pytest.fixture
async def raw_host(bridge: Bridge, browser_agent: BrowserlessAgent
                   ) -> AsyncIterator[RawHost]:
    """A hand-driven OAuth host against ``bridge`` (whose HTTP server the test starts)."""
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        yield RawHost(bridge.url, bridge.upstream.issuer, browser_agent, http)
