"""pytest fixtures for the real peers. Register with ``pytest_plugins = ["tests.peers.fixtures"]``
in the top-level ``tests/conftest.py`` (``tests/peers/conftest.py`` re-exports them locally).

Only a missing ``node`` binary skips the OIDC tests; anything else missing is an error, because
CI installs every peer (``scripts/install-peers``) and the tests must really run.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import pytest

from tests.peers.httpbin import HttpbinPeer
from tests.peers.oidc import (
    OIDC_DIR,
    BrowserlessAgent,
    OidcProviderPeer,
    node_binary,
    oidc_provider_installed,
)
from tests.peers.recorder import RequestRecorder

__all__ = [
    "CONF_APP",
    "CONF_APP_SECRET",
    "CONF_POST",
    "CONF_POST_SECRET",
    "DEFAULT_TTL",
    "PUBLIC_APP",
    "REDIRECT_URIS",
    "browser_agent",
    "default_oidc_config",
    "httpbin_peer",
    "oidc_factory",
    "oidc_peer",
    "oidc_peer_session",
    "oidc_redirect_uris",
    "recorder",
    "recorder_factory",
]

PUBLIC_APP = "public-app"
CONF_APP = "conf-app"
CONF_APP_SECRET = "conf-app-secret-0123456789abcdef"
CONF_POST = "conf-post"
CONF_POST_SECRET = "conf-post-secret-0123456789abcdef"

# The clients are ``application_type: native``, so oidc-provider matches loopback redirect URIs
# ignoring the port (RFC 8252 section 7.3): "http://127.0.0.1:8765/oauth/callback" registered
# also accepts http://127.0.0.1:<any port>/oauth/callback. Host ("127.0.0.1" vs "localhost"),
# scheme and path must still match exactly.
REDIRECT_URIS: list[str] = ["http://127.0.0.1:8765/oauth/callback"]

DEFAULT_TTL: dict[str, int] = {
    "AccessToken": 60, "AuthorizationCode": 60, "IdToken": 60, "RefreshToken": 600,
    "Interaction": 300, "Session": 600, "Grant": 600,
}


def default_oidc_config(
    redirect_uris: list[str] | None = None, *, ttl: Mapping[str, int] | None = None,
    application_type: str = "native",
) -> dict[str, Any]:
    """The config of ``oidc_peer``: public-app (none), conf-app (basic), conf-post (post)."""
    uris = list(REDIRECT_URIS if redirect_uris is None else redirect_uris)
    common = {"redirect_uris": uris, "grant_types": ["authorization_code", "refresh_token"],
              "response_types": ["code"], "application_type": application_type}
    return {
        "port": 0,
        "clients": [
            {"client_id": PUBLIC_APP, "token_endpoint_auth_method": "none", **common},
            {"client_id": CONF_APP, "client_secret": CONF_APP_SECRET,
             "token_endpoint_auth_method": "client_secret_basic", **common},
            {"client_id": CONF_POST, "client_secret": CONF_POST_SECRET,
             "token_endpoint_auth_method": "client_secret_post", **common},
        ],
        "ttl": dict(DEFAULT_TTL if ttl is None else ttl),
    }


def _require_node() -> str:
    node = node_binary()
    if node is None:
        pytest.skip("`node` is not installed: the oidc-provider peer needs Node.js >= 20")
    if not oidc_provider_installed():
        pytest.fail(f"oidc-provider is not installed in {OIDC_DIR}: run scripts/install-peers")
    return node


@pytest.fixture(scope="session")
def oidc_redirect_uris() -> list[str]:
    """Override in a conftest to register other redirect URIs on the session peer."""
    return list(REDIRECT_URIS)


@pytest.fixture(scope="session")
def oidc_peer_session(oidc_redirect_uris: list[str]) -> Iterator[OidcProviderPeer]:
    peer = OidcProviderPeer(node=_require_node()).start(default_oidc_config(oidc_redirect_uris))
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def oidc_peer(oidc_peer_session: OidcProviderPeer) -> OidcProviderPeer:
    """The session's oidc-provider (default config) with its stats reset for this test."""
    oidc_peer_session.reset_stats()
    return oidc_peer_session


@pytest.fixture
def oidc_factory() -> Iterator[Callable[[Mapping[str, Any]], OidcProviderPeer]]:
    """``oidc_factory(config)`` starts a private peer, stopped at the end of the test.

    Start from ``copy.deepcopy(default_oidc_config(...))`` and edit, or write your own.
    """
    node = _require_node()
    peers: list[OidcProviderPeer] = []

    def start(config: Mapping[str, Any]) -> OidcProviderPeer:
        peer = OidcProviderPeer(node=node).start(copy.deepcopy(dict(config)))
        peers.append(peer)
        return peer

    try:
        yield start
    finally:
        for peer in peers:
            peer.stop()


@pytest.fixture
async def browser_agent() -> AsyncIterator[BrowserlessAgent]:
    """A fresh cookie jar per test (so no OIDC session leaks between tests)."""
    async with BrowserlessAgent() as agent:
        yield agent


@pytest.fixture(scope="session")
def httpbin_peer() -> Iterator[HttpbinPeer]:
    peer = HttpbinPeer().start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def recorder() -> Iterator[RequestRecorder]:
    """A fresh request recorder on 127.0.0.1 (ephemeral port)."""
    with RequestRecorder() as rec:
        yield rec


@pytest.fixture
def recorder_factory() -> Iterator[Callable[..., RequestRecorder]]:
    """``recorder_factory(host="127.0.0.2", status=200, body=b"...")`` -> started recorder."""
    started: list[RequestRecorder] = []

    def start(host: str = "127.0.0.1", **kwargs: Any) -> RequestRecorder:
        rec = RequestRecorder(host, **kwargs).start()
        started.append(rec)
        return rec

    try:
        yield start
    finally:
        for rec in started:
            rec.stop()
