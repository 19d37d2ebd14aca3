"""A real oidc-provider (node) as a test peer, plus a browserless agent that plays the browser.

``OidcProviderPeer().start(config)`` runs ``node tests/peers/oidc/server.mjs CONFIG.json``.
CONFIG (JSON object; every key optional)::

    {
      "port": 0,                      # 0 (default) = ephemeral, no race; prints READY <port>
      "host": "127.0.0.1",
      "issuer": "http://127.0.0.1:PORT",   # default, derived from the bound port
      "clients": [ {oidc-provider client metadata}, ... ],
      "ttl": {"AccessToken": 60, "RefreshToken": 600, "AuthorizationCode": 60, "IdToken": 60,
              "Interaction": 300, "Session": 600, "Grant": 600},   # seconds
      "scopes": ["api:read"],         # extra scopes on top of openid offline_access email profile
      "resources": {"http://127.0.0.1:9000/mcp": {"scope": "mcp:tools", "audience": "...",
                                                   "accessTokenFormat": "jwt" | "opaque"},
                    "*": {...}},      # RFC 8707 resource indicators; unknown -> invalid_target
      "useGrantedResource": false,    # true: token requests without `resource` reuse the grant's
      "interactive": false            # true: oidc-provider's built-in HTML login/consent pages
    }

Refresh tokens are issued to every client whose ``grant_types`` include ``refresh_token``
(no ``offline_access``/``prompt=consent`` needed); reusing a rotated refresh token revokes the
whole grant. The headless interaction logs in ``login_hint`` (default ``alice``) and grants
everything asked; ``login_hint=deny`` ends with ``error=access_denied``.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx2

from tests.peers.process import PeerProcess

__all__ = [
    "OIDC_DIR",
    "SERVER_SCRIPT",
    "BrowserlessAgent",
    "OidcProviderPeer",
    "assert_loopback_url",
    "callback_params",
    "node_binary",
    "oidc_provider_installed",
    "pkce_pair",
]

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
SERVER_SCRIPT = OIDC_DIR / "server.mjs"
READY_PATTERN = r"^READY (\d+)\s*$"


def node_binary() -> str | None:
    """Path of the ``node`` executable, or None."""
    return shutil.which("node")


def oidc_provider_installed() -> bool:
    return (OIDC_DIR / "node_modules" / "oidc-provider" / "package.json").is_file()


def pkce_pair() -> tuple[str, str]:
    """``(code_verifier, S256 code_challenge)``."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def callback_params(url: str) -> dict[str, str]:
    """Query parameters of a redirect (``code``, ``state``, ``iss`` or ``error``...)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def assert_loopback_url(url: str) -> None:
    """Refuse anything but http(s) to a loopback host: tests never reach the internet."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"refusing non-http URL {url!r}")
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"refusing non-loopback URL {url!r}")


def _client(timeout: float) -> httpx2.Client:
    return httpx2.Client(timeout=timeout, trust_env=False)


class OidcProviderPeer:
    """oidc-provider 9.x running in node; stop it with ``stop()`` or use it as a context manager."""

    def __init__(self, *, node: str | None = None, startup_timeout: float = 20.0) -> None:
        self.node = node or node_binary()
        self.startup_timeout = startup_timeout
        self.config: dict[str, Any] = {}
        self.process: PeerProcess | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._port: int | None = None
        self._issuer: str | None = None
        self._discovery: dict[str, Any] | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, config: Mapping[str, Any]) -> OidcProviderPeer:
        if self.process is not None:
            raise RuntimeError("already started")
        if self.node is None:
            raise RuntimeError("node is not installed")
        if not oidc_provider_installed():
            raise RuntimeError(f"oidc-provider missing in {OIDC_DIR}: run scripts/install-peers")
        self.config = dict(config)
        self._tmpdir = tempfile.TemporaryDirectory(prefix="oidc-peer-")
        config_path = Path(self._tmpdir.name) / "config.json"
        config_path.write_text(json.dumps(self.config), encoding="utf-8")
        self.process = PeerProcess([self.node, str(SERVER_SCRIPT), str(config_path)],
                                   name="oidc-provider", cwd=OIDC_DIR)
        try:
            match = self.process.start(ready_pattern=READY_PATTERN,
                                       timeout=self.startup_timeout)
        except BaseException:
            self._cleanup()
            raise
        assert match is not None
        self._port = int(match.group(1))
        host = str(self.config.get("host", "127.0.0.1"))
        self._issuer = str(self.config.get("issuer") or f"http://{host}:{self._port}")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        self._cleanup()

    def _cleanup(self) -> None:
        self.process = None
        self._discovery = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> OidcProviderPeer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("not started")
        return self._port

    @property
    def issuer(self) -> str:
        if self._issuer is None:
            raise RuntimeError("not started")
        return self._issuer

    def url(self, path: str) -> str:
        return self.issuer.rstrip("/") + "/" + path.lstrip("/")

    @property
    def authorization_endpoint(self) -> str:
        return self.url("/auth")

    @property
    def token_endpoint(self) -> str:
        return self.url("/token")

    @property
    def revocation_endpoint(self) -> str:
        return self.url("/token/revocation")

    @property
    def introspection_endpoint(self) -> str:
        return self.url("/token/introspection")

    @property
    def userinfo_endpoint(self) -> str:
        return self.url("/me")

    @property
    def jwks_uri(self) -> str:
        return self.url("/jwks")

    # -- helpers (sync; the a* twins are for async tests) ------------------------------
    def discovery(self) -> dict[str, Any]:
        """``/.well-known/openid-configuration`` (cached)."""
        if self._discovery is None:
            with _client(10) as client:
                resp = client.get(self.url("/.well-known/openid-configuration"))
                resp.raise_for_status()
                self._discovery = cast(dict[str, Any], resp.json())
        return self._discovery

    def stats(self) -> dict[str, Any]:
        """``{"token": {grant_type: n}, "revocation": n, "introspection": n,
        "authorization": n}``: requests that reached each endpoint since the last reset."""
        with _client(10) as client:
            resp = client.get(self.url("/__stats"))
            resp.raise_for_status()
            return cast(dict[str, Any], resp.json())

    def reset_stats(self) -> None:
        with _client(10) as client:
            client.post(self.url("/__stats/reset")).raise_for_status()

    def introspect(
        self, token: str, client_id: str, client_secret: str, *,
        token_type_hint: str | None = None,
    ) -> dict[str, Any]:
        """RFC 7662 introspection authenticated with client_secret_basic."""
        data = {"token": token}
        if token_type_hint:
            data["token_type_hint"] = token_type_hint
        with _client(10) as client:
            resp = client.post(self.introspection_endpoint, data=data,
                               auth=(client_id, client_secret))
            resp.raise_for_status()
            return cast(dict[str, Any], resp.json())

    async def astats(self) -> dict[str, Any]:
        async with httpx2.AsyncClient(timeout=10, trust_env=False) as client:
            resp = await client.get(self.url("/__stats"))
            resp.raise_for_status()
            return cast(dict[str, Any], resp.json())

    async def areset_stats(self) -> None:
        async with httpx2.AsyncClient(timeout=10, trust_env=False) as client:
            (await client.post(self.url("/__stats/reset"))).raise_for_status()

    async def aintrospect(
        self, token: str, client_id: str, client_secret: str, *,
        token_type_hint: str | None = None,
    ) -> dict[str, Any]:
        data = {"token": token}
        if token_type_hint:
            data["token_type_hint"] = token_type_hint
        async with httpx2.AsyncClient(timeout=10, trust_env=False) as client:
            resp = await client.post(self.introspection_endpoint, data=data,
                                     auth=(client_id, client_secret))
            resp.raise_for_status()
            return cast(dict[str, Any], resp.json())

    def authorize_url(
        self, *, client_id: str, redirect_uri: str, code_challenge: str,
        scope: str = "openid offline_access", state: str | None = None,
        login_hint: str | None = None, resource: str | None = None,
        prompt: str | None = None, **extra: str,
    ) -> str:
        """An authorization-code + PKCE (S256) request URL."""
        params: dict[str, str] = {
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
            "scope": scope, "code_challenge": code_challenge, "code_challenge_method": "S256",
            "state": state or secrets.token_urlsafe(16),
        }
        for key, value in (("login_hint", login_hint), ("resource", resource),
                           ("prompt", prompt)):
            if value is not None:
                params[key] = value
        params.update(extra)
        return f"{self.authorization_endpoint}?{urlencode(params)}"

    async def code_flow(
        self, agent: BrowserlessAgent, *, client_id: str, redirect_uri: str,
        client_secret: str | None = None, auth_method: str = "none",
        scope: str = "openid offline_access", login_hint: str | None = None,
        resource: str | None = None,
    ) -> dict[str, Any]:
        """Run authorize (headless) + code exchange; return the token response JSON.

        ``auth_method``: ``none`` | ``client_secret_basic`` | ``client_secret_post``.
        Raises ``AssertionError`` if the callback carries an error or the exchange fails.
        """
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(16)
        url = self.authorize_url(client_id=client_id, redirect_uri=redirect_uri,
                                 code_challenge=challenge, scope=scope, state=state,
                                 login_hint=login_hint, resource=resource)
        params = callback_params(await agent.follow(url, stop_at_prefix=redirect_uri))
        assert "code" in params, f"authorization failed: {params}"
        assert params["state"] == state
        data = {"grant_type": "authorization_code", "code": params["code"],
                "redirect_uri": redirect_uri, "code_verifier": verifier}
        if resource is not None:
            data["resource"] = resource
        auth: httpx2.Auth | None = None
        if auth_method == "client_secret_basic":
            assert client_secret is not None
            auth = httpx2.BasicAuth(client_id, client_secret)
        elif auth_method == "client_secret_post":
            assert client_secret is not None
            data.update(client_id=client_id, client_secret=client_secret)
        else:
            data["client_id"] = client_id
        async with httpx2.AsyncClient(timeout=10, trust_env=False) as client:
            resp = await client.post(self.token_endpoint, data=data,
                                     auth=auth or httpx2.USE_CLIENT_DEFAULT)
        assert resp.status_code == 200, f"token exchange failed: {resp.status_code} {resp.text}"
        return cast(dict[str, Any], resp.json())


class BrowserlessAgent:
    """Plays the browser: a cookie jar plus manual redirect following (loopback only).

    ``follow(url, stop_at_prefix=P)`` follows 30x redirects (absolute or relative ``Location``)
    and returns the first URL starting with ``P`` *without requesting it* (the app's callback).
    ``follow_response(url, stop_at_prefix=P)`` does the same but requests that URL (once, not
    following its own redirects) and returns the response; with ``stop_at_prefix=None`` it
    follows until a non-redirect response. ``history`` lists every URL requested.
    """

    def __init__(self, *, timeout: float = 10.0, max_hops: int = 20,
                 headers: Mapping[str, str] | None = None) -> None:
        self.max_hops = max_hops
        self.history: list[str] = []
        self.client = httpx2.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False,
            headers={"user-agent": "alter-mcp-tests browserless agent", **(headers or {})},
        )

    @property
    def cookies(self) -> httpx2.Cookies:
        return self.client.cookies

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> BrowserlessAgent:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def get(self, url: str) -> httpx2.Response:
        """One GET with the jar, no redirect following."""
        assert_loopback_url(url)
        self.history.append(url)
        return await self.client.get(url)

    async def post_form(self, url: str, data: Mapping[str, str]) -> httpx2.Response:
        """Submit a form like a browser (no redirect following); e.g. the dev login page."""
        assert_loopback_url(url)
        self.history.append(url)
        return await self.client.post(url, data=dict(data))

    async def _walk(
        self, url: str, stop_at_prefix: str | None,
    ) -> tuple[str, httpx2.Response | None]:
        for _ in range(self.max_hops):
            if stop_at_prefix is not None and url.startswith(stop_at_prefix):
                return url, None
            resp = await self.get(url)
            location = resp.headers.get("location")
            if resp.is_redirect and location:
                url = urljoin(url, location)
                continue
            return url, resp
        raise RuntimeError(f"more than {self.max_hops} redirects; history: {self.history}")

    async def follow(self, url: str, *, stop_at_prefix: str) -> str:
        """Follow redirects until a URL starts with ``stop_at_prefix``; return it unrequested."""
        final, resp = await self._walk(url, stop_at_prefix)
        if resp is not None:
            raise AssertionError(
                f"redirect chain ended at {final} with HTTP {resp.status_code} before reaching "
                f"{stop_at_prefix!r}: {resp.text[:2000]}"
            )
        return final

    async def follow_response(self, url: str, *, stop_at_prefix: str | None = None
                              ) -> httpx2.Response:
        """Follow redirects; request the URL starting with ``stop_at_prefix`` (or the end of the
        chain when None) and return that response."""
        final, resp = await self._walk(url, stop_at_prefix)
        if resp is None:
            resp = await self.get(final)
        return resp
