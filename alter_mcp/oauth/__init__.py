"""OAuth 2 for the vault: connect sessions, the callback, token refresh and revocation.

Modules, one concept each: ``sessions`` (connect sessions, PKCE, state), ``flow`` (the link
and the callback), ``routes`` (the Starlette pages), ``loopback`` (the stdio-mode listener),
``client`` (the provider's token, revocation and userinfo endpoints), ``clients`` (this
deployment's OAuth client per provider), ``tokens`` (the sealed token set), ``refresh``
(single-flight refresh) and ``service`` (the object the vault delegates to). ``routes`` and
``loopback`` import Starlette and uvicorn, so they are imported only when a page is served.
"""

from __future__ import annotations

from alter_mcp.oauth.client import InvalidGrantError, OAuthHttp, TokenEndpointError
from alter_mcp.oauth.clients import OAuthClientConfig, OAuthClientInfo
from alter_mcp.oauth.flow import CallbackOutcome, ConnectFlow, ConnectStart
from alter_mcp.oauth.refresh import RefreshCoordinator
from alter_mcp.oauth.service import OAuthService, Opener
from alter_mcp.oauth.sessions import ConnectLink, ConnectResult
from alter_mcp.oauth.tokens import TokenSet

__all__ = [
    "CallbackOutcome",
    "ConnectFlow",
    "ConnectLink",
    "ConnectResult",
    "ConnectStart",
    "InvalidGrantError",
    "OAuthClientConfig",
    "OAuthClientInfo",
    "OAuthHttp",
    "OAuthService",
    "Opener",
    "RefreshCoordinator",
    "TokenEndpointError",
    "TokenSet",
]
