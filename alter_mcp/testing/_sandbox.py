"""``SandboxProvider``: an OAuth provider and its API on loopback, for demos and tests.

One Starlette app on ``127.0.0.1`` (an ephemeral port by default) serves the authorization
server (:mod:`alter_mcp.testing._authserver`) and a tiny API that checks the bearer token.
The sandbox describes itself as a catalogue entry and an OAuth client, and it can play the
user's browser through a connect link (:meth:`SandboxProvider.approve`), so a whole connect
runs headless with no real account.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode, urljoin, urlsplit

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alter_mcp.oauth.loopback import LoopbackServer
from alter_mcp.testing._authserver import Dialect, SandboxAuthServer, SandboxToken
from alter_mcp.testing._dialect import dialect_routes

__all__ = ["SandboxProvider"]

_ITEMS = ({"id": 1, "name": "Water the plants"}, {"id": 2, "name": "Read the audit log"},
          {"id": 3, "name": "Rotate the keys"})
_EVENTS = ({"id": "evt-1", "summary": "Stand-up"}, {"id": "evt-2", "summary": "Key rotation"},
           {"id": "evt-3", "summary": "Audit review"})
_EVENTS_PATH = "/calendar/v3/calendars/primary/events"
_REQUEST_FIELD = re.compile(r"name=request value='([A-Za-z0-9_\-]+)'")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class SandboxProvider:
    """Run a sandbox OAuth provider and API on loopback while the ``async with`` block lasts.

    Use :meth:`settings_overrides` to point a vault at it, then connect with
    ``vault.connect([sandbox.provider_id], open_browser=sandbox.approve)``.
    """

    def __init__(
        self, *, provider_id: str = "sandbox", name: str = "Sandbox",
        client_id: str = "alter-mcp-sandbox", client_secret: str | None = None,
        account: str = "demo@sandbox.test", access_token_ttl: float = 3600.0,
        auto_approve: bool = False, port: int = 0,
        token_fields: Mapping[str, Any] | None = None,
        documents: Mapping[str, tuple[str, Any]] | None = None,
        dialect: Dialect | None = None, clock: Callable[[], float] = time.time,
    ) -> None:
        """Configure the sandbox; nothing listens until :meth:`start`.

        ``token_fields`` are extra fields of every token response (a tenant's
        ``instance_url``); ``documents`` maps a path to (auth scheme, JSON body) served to a
        live token, like a provider's metadata endpoint. ``dialect`` makes it behave like a
        provider that deviates from RFC 6749; ``clock`` (epoch seconds) decides expiry.
        """
        self.provider_id = provider_id
        self.name = name
        self.client_id = client_id
        self.client_secret = client_secret or "sbx_secret_" + secrets.token_urlsafe(18)
        self._server: LoopbackServer | None = None
        self._port = port
        self._documents = dict(documents or {})
        self.auth = SandboxAuthServer(
            issuer=lambda: self.issuer, client_id=client_id, client_secret=self.client_secret,
            account=account, subject="sandbox-user-1", access_token_ttl=access_token_ttl,
            auto_approve=auto_approve, token_fields=token_fields, dialect=dialect, clock=clock)

    def __repr__(self) -> str:
        where = self.issuer if self._server is not None else "stopped"
        return f"SandboxProvider({self.provider_id!r}, {where})"

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> Self:
        """Start serving on 127.0.0.1."""
        if self._server is None:
            server = LoopbackServer(self._app(), port=self._port)
            await server.start()
            self._server = server
        return self

    async def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # -- where it lives --------------------------------------------------------------------
    @property
    def port(self) -> int:
        """Return the bound port."""
        if self._server is None:
            raise RuntimeError("the sandbox is not running; use it as `async with`")
        return self._server.port

    @property
    def issuer(self) -> str:
        """Return the authorization server's issuer (its base URL)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def authorization_url(self) -> str:
        """Return the authorization endpoint."""
        return self.issuer + "/authorize"

    @property
    def api_url(self) -> str:
        """Return the base URL of the sandbox API (``/me``, ``/items``)."""
        return self.issuer + "/api"

    @property
    def events_url(self) -> str:
        """Return the calendar-events endpoint (Google Calendar's path, ``maxResults``)."""
        return self.issuer + _EVENTS_PATH

    @property
    def account(self) -> str:
        """Return the account every authorization signs in as."""
        return self.auth.account

    @property
    def stats(self) -> dict[str, Any]:
        """Return counters of what reached the server (authorize, token, revoke, API)."""
        s = self.auth.stats
        return {"authorize": s.authorize, "approved": s.approved, "denied": s.denied,
                "token": dict(s.token), "refreshed": s.refreshed, "revoked": s.revoked,
                "api_calls": s.api_calls}

    def catalog_entry(self) -> dict[str, Any]:
        """Return the catalogue entry describing the sandbox (for ``[catalog.<id>]``)."""
        base = self.issuer
        return {
            "name": self.name, "auth_kind": "oauth2", "category": "testing",
            "api_hosts": ["127.0.0.1"], "api_ports": [self.port],
            "injection": [{"kind": "bearer"}],
            "notes": "The alter-mcp sandbox on loopback (alter_mcp.testing.SandboxProvider).",
            "oauth": {
                "authorization_url": base + "/authorize", "token_url": base + "/token",
                "revocation_url": base + "/revoke", "userinfo_url": base + "/userinfo",
                "issuer": base, "account_source": "userinfo", "account_field": "email",
                "default_scopes": ["profile", "items:read"], "scope_separator": " ",
                "pkce": True,
                "token_endpoint_auth": "client_secret_basic",
            },
        }

    def client_config(self) -> dict[str, str]:
        """Return the OAuth client for ``[providers.<id>]``."""
        return {"client_id": self.client_id, "client_secret": self.client_secret}

    def settings_overrides(self) -> dict[str, Any]:
        """Return keyword arguments for ``load_settings`` that add and configure the sandbox."""
        return {"catalog": {self.provider_id: self.catalog_entry()},
                "providers": {self.provider_id: self.client_config()},
                "allow_insecure_http": True}

    def token(self, value: str) -> SandboxToken | None:
        """Return what the sandbox knows of a live access token (None if unknown or revoked)."""
        return self.auth.token_info(value)

    # -- the user's side -------------------------------------------------------------------
    async def approve(self, connect_url: str) -> httpx2.Response:
        """Play the user's browser through a connect link and click Allow; return the last page.

        Pass it as ``open_browser=`` to ``AlterVault.connect``.
        """
        return await self._drive(connect_url, "approve")

    async def deny(self, connect_url: str) -> httpx2.Response:
        """Play the user's browser through a connect link and click Deny; return the last page."""
        return await self._drive(connect_url, "deny")

    async def _drive(self, connect_url: str, decision: str) -> httpx2.Response:
        parts = urlsplit(connect_url)
        url = connect_url
        if "provider=" not in parts.query:
            url += ("&" if parts.query else "?") + urlencode({"provider": self.provider_id})
        async with httpx2.AsyncClient(follow_redirects=False, trust_env=False,
                                      timeout=10.0) as browser:
            for _ in range(10):
                if urlsplit(url).hostname not in _LOOPBACK:
                    raise RuntimeError(f"the sandbox browser stays on loopback, not {url!r}")
                response = await browser.get(url)
                if url.startswith(self.authorization_url) and response.status_code == 200:
                    found = _REQUEST_FIELD.search(response.text)
                    if found is None:
                        return response
                    response = await browser.post(self.authorization_url, data={
                        "request": found.group(1), "decision": decision})
                location = response.headers.get("location")
                if not response.is_redirect or location is None:
                    return response
                url = urljoin(url, location)
        raise RuntimeError("too many redirects while following the connect link")

    # -- the app ---------------------------------------------------------------------------
    def _app(self) -> Starlette:
        auth = self.auth
        return Starlette(routes=[
            Route("/.well-known/oauth-authorization-server", auth.metadata),
            Route("/authorize", auth.authorize, methods=["GET"]),
            Route("/authorize", auth.decide, methods=["POST"]),
            Route("/token", auth.token, methods=["POST"]),
            Route("/userinfo", auth.userinfo, methods=["GET"]),
            Route("/revoke", auth.revoke, methods=["POST"]),
            Route("/api/me", self._me, methods=["GET"]),
            Route("/api/items", self._items, methods=["GET"]),
            # Google Calendar's path and shape, so the Alter SDK's examples run against it.
            Route(_EVENTS_PATH, self._events, methods=["GET"]),
            *(Route(path, self._document(scheme, body), methods=["GET"])
              for path, (scheme, body) in self._documents.items()),
            *dialect_routes(auth),
        ])

    def _document(self, scheme: str, body: Any) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            if self.auth.bearer(request, scheme=scheme) is None:
                return JSONResponse({"error": "invalid_token"}, status_code=401)
            return JSONResponse(body)
        return serve

    def _api_token(self, request: Request) -> SandboxToken | Response:
        self.auth.stats.api_calls += 1
        token = self.auth.bearer(request)
        if token is None:
            return JSONResponse({"error": "invalid_token",
                                 "message": "Send a live sandbox access token."},
                                status_code=401,
                                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return token

    async def _me(self, request: Request) -> Response:
        token = self._api_token(request)
        if isinstance(token, Response):
            return token
        return JSONResponse({"account": self.auth.account, "scopes": list(token.scopes),
                             "message": "Hello from the sandbox API."})

    async def _items(self, request: Request) -> Response:
        token = self._api_token(request)
        if isinstance(token, Response):
            return token
        if "items:read" not in token.scopes:
            return JSONResponse({"error": "insufficient_scope"}, status_code=403, headers={
                "WWW-Authenticate": 'Bearer error="insufficient_scope", scope="items:read"'})
        return JSONResponse({"items": list(_ITEMS)})

    async def _events(self, request: Request) -> Response:
        token = self._api_token(request)
        if isinstance(token, Response):
            return token
        try:
            limit = int(request.query_params.get("maxResults", "250"))
        except ValueError:
            return JSONResponse({"error": "invalid maxResults"}, status_code=400)
        return JSONResponse({"kind": "calendar#events", "items": list(_EVENTS[:max(limit, 0)])})
