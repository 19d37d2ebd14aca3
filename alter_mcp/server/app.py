"""Build the MCP server from an open vault: tools, resources, identity, and the HTTP app.

``build_server(vault)`` is what stdio and in-memory clients talk to; ``build_http_app(vault)``
wraps the same server as a streamable-HTTP Starlette app that also serves ``/health`` and
``/ready``, the RFC 9728 metadata and the connect pages, behind Host/Origin checks against DNS
rebinding.
With ``stateless_http`` set, no MCP session is held in memory (the 2026-07-28 era holds none
anyway), so any replica behind a load balancer answers any request.
"""

from __future__ import annotations

import fnmatch
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any, assert_never
from urllib.parse import urlsplit

from fastmcp import FastMCP
from fastmcp.server.auth import AuthProvider
from fastmcp.server.http import HostOriginGuardMiddleware
from mcp.server.request_state import RequestStateSecurity
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from alter_mcp.config import AuthMode
from alter_mcp.identity import IdentitySource
from alter_mcp.models import Identity
from alter_mcp.server.auth import AgentKeyHeaderMiddleware, AlterAuth
from alter_mcp.server.caller import CallerBinder
from alter_mcp.server.connect import register_connect_tools
from alter_mcp.server.errors import install_log_filters
from alter_mcp.server.health import register_health_routes
from alter_mcp.server.resources import register_resources
from alter_mcp.server.scopes import check_tool_scopes
from alter_mcp.server.tools import register_grant_tools
from alter_mcp.vault import AlterVault

__all__ = ["INSTRUCTIONS", "PUBLIC_PREFIX", "BrowserAccessMiddleware", "build_http_app",
           "build_server"]

INSTRUCTIONS = """\
This server calls third-party APIs (GitHub, Google, Slack, Stripe, ...) on the user's behalf.
You never see or handle credentials: the server's vault injects them.
1. `list_grants` shows the accounts you may use (grant_id, provider, account, scopes).
2. No grant for a provider? Call `connect` with its id; the user signs in via a link.
3. `authenticated_request` performs an HTTP request with a grant (by grant_id, or provider).
4. Errors say what to do next (connect, re-authorize at a link, pick an account).
Read providers://catalog for provider ids and the API hosts each credential may reach.
"""


def _version() -> str:
    try:
        return metadata.version("alter-mcp")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


def _user_token_source(vault: AlterVault) -> IdentitySource | None:
    """Return the configured user token as an identity source verified on every call."""
    token = vault.settings.user_token
    if token is None:
        return None
    value = token.get_secret_value()

    async def source() -> Identity:
        return (await vault.verify_user_token(value)).identity

    return source


def _auth(vault: AlterVault) -> AuthProvider:
    """Return the HTTP front door the settings choose."""
    mode = vault.settings.auth_mode
    match mode:
        case AuthMode.JWT:
            return AlterAuth(vault)
        case AuthMode.BRIDGE:
            from alter_mcp.server.bridge import BridgeAuth  # fetches the IdP's discovery

            return BridgeAuth(vault)
        case _:
            assert_never(mode)


def build_server(
    vault: AlterVault,
    *,
    identity: IdentitySource | None = None,
    http: bool = False,
) -> FastMCP:
    """Return the FastMCP server acting for ``vault``'s callers.

    Without HTTP, requests act as ``identity`` (default: the configured user token, else the
    system principal). With ``http=True`` they act as the verified bearer of each request.
    """
    settings = vault.settings
    install_log_filters()
    security = None
    if settings.request_state_key is not None:
        # Shared across replicas so a 2026-07-28 retry may land on any of them.
        security = RequestStateSecurity(keys=[settings.request_state_key.get_secret_value()],
                                        audience="alter-mcp")
    server: FastMCP = FastMCP(
        name="alter-mcp",
        version=_version(),
        instructions=INSTRUCTIONS,
        mask_error_details=True,
        auth=_auth(vault) if http else None,
        request_state_security=security,
    )
    binder = CallerBinder(vault, identity if identity is not None else _user_token_source(vault))
    register_connect_tools(server, binder)
    register_grant_tools(server, binder)
    register_resources(server, vault)
    register_health_routes(server, vault)
    return server


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


#: Paths of the public OAuth metadata documents (RFC 9728 and RFC 8414), readable from any origin.
PUBLIC_PREFIX = "/.well-known/oauth-"
#: Response headers a browser client on an allowed origin must be able to read.
EXPOSED_HEADERS = ("Mcp-Session-Id", "Mcp-Protocol-Version", "WWW-Authenticate", "Retry-After")


class BrowserAccessMiddleware:
    """Check Host and Origin against DNS rebinding, with the two exceptions browsers need.

    Every request's ``Host`` must be an allowed host. A foreign ``Origin`` is refused (403)
    everywhere except on the public metadata documents, which carry no secret and which a
    browser-based MCP client must read before it can sign in. On the MCP endpoint, origins in
    ``ALTER_MCP_ALLOWED_ORIGINS`` get CORS: preflights are answered and the session id and
    authentication challenge are readable.
    """

    def __init__(self, app: ASGIApp, *, allowed_hosts: Sequence[str],
                 allowed_origins: Sequence[str], cors_origins: Sequence[str],
                 mcp_path: str) -> None:
        self.mcp_path = mcp_path.rstrip("/")
        self.guarded = HostOriginGuardMiddleware(app, allowed_hosts, allowed_origins, "strict")
        self.public = HostOriginGuardMiddleware(app, allowed_hosts, ["*"], "strict")
        self.mcp = self.guarded
        if cors_origins:
            patterns = [o for o in cors_origins if "*" in o]
            cors = CORSMiddleware(
                app, allow_origins=[o for o in cors_origins if "*" not in o],
                allow_origin_regex="|".join(fnmatch.translate(p) for p in patterns) or None,
                allow_methods=["GET", "POST", "DELETE"],
                # 2026-07-28 clients mirror parameters into Mcp-Param-* headers, which no
                # fixed list can name; the origin check is what restricts who may send them.
                allow_headers=["*"], expose_headers=list(EXPOSED_HEADERS), max_age=600)
            self.mcp = HostOriginGuardMiddleware(cors, allowed_hosts, allowed_origins, "strict")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith(PUBLIC_PREFIX):
            await self.public(scope, receive, send)
        elif path.rstrip("/") == self.mcp_path:
            await self.mcp(scope, receive, send)
        else:
            await self.guarded(scope, receive, send)


def _checking_tool_scopes(app: Starlette, server: FastMCP, vault: AlterVault) -> None:
    """Make the app refuse to start when the tool scopes name a tool the server lacks."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(target: Any) -> AsyncIterator[Any]:
        check_tool_scopes(vault.settings.tool_scopes,
                          [tool.name for tool in await server.list_tools(run_middleware=False)])
        async with inner(target) as state:
            yield state

    app.router.lifespan_context = lifespan


def build_http_app(vault: AlterVault, *, server: FastMCP | None = None) -> Starlette:
    """Return the streamable-HTTP app: MCP at ``settings.mcp_path``, plus its side routes."""
    settings = vault.settings
    server = server or build_server(vault, http=True)
    public = settings.public_url or ""
    # BrowserAccessMiddleware below is the Host/Origin guard (fastmcp's, with exceptions).
    app = server.http_app(path=settings.mcp_path, stateless_http=settings.stateless_http,
                          host_origin_protection=False)
    connect_app = getattr(vault, "connect_app", None)
    if callable(connect_app):
        # The connect pages and OAuth callback live on this same origin (lowest precedence).
        routes = connect_app().routes
        app.router.routes.extend(routes)
    _checking_tool_scopes(app, server, vault)
    app.add_middleware(
        BrowserAccessMiddleware, mcp_path=settings.mcp_path,
        allowed_hosts=[h for h in (_host(public), *settings.allowed_hosts) if h],
        allowed_origins=[o for o in (_origin(public) if public else "",
                                     *settings.allowed_origins) if o],
        cors_origins=settings.allowed_origins)
    app.add_middleware(AgentKeyHeaderMiddleware)
    return app
