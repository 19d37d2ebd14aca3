"""HTTP identity: the MCP endpoint as an OAuth 2 protected resource, plus agent API keys.

Every request to the MCP endpoint carries exactly one credential:

- ``Authorization: Bearer <JWT>`` from the configured identity provider, verified per request
  by :class:`alter_mcp.tokens.JwtVerifier` (issuer, JWKS, audience = this server's resource
  URL, algorithm allow-list, ``exp``/``nbf``/``iat``);
- or an agent API key, as ``Authorization: Bearer amk_…`` or ``X-Alter-Agent-Key: amk_…``.

A request carrying both an agent key and a user token is refused. Failures answer 401 with a
``WWW-Authenticate`` challenge naming the RFC 9728 metadata (served at both the root and the
path-suffixed well-known URL). The inbound token is never forwarded: only its fingerprint is
kept on the request.
"""

from __future__ import annotations

import json
from typing import Any

from fastmcp.server.auth import AccessToken, AuthProvider
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.routes import build_resource_metadata_url, cors_middleware
from pydantic import AnyHttpUrl
from starlette.authentication import AuthCredentials, AuthenticationBackend
from starlette.authentication import AuthenticationError as StarletteAuthError
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from alter_mcp.apikeys import looks_like_key
from alter_mcp.errors import AlterError, ConfigurationError
from alter_mcp.models import Identity
from alter_mcp.tokens import token_fingerprint
from alter_mcp.vault import AlterVault

__all__ = ["AGENT_KEY_HEADER", "AgentKeyHeaderMiddleware", "AlterAccessToken", "AlterAuth"]

#: The header an agent may use for its key instead of ``Authorization: Bearer``.
AGENT_KEY_HEADER = "x-alter-agent-key"
_BOTH = "both_credentials"


class AlterAccessToken(AccessToken):
    """A verified request credential: the caller's identity; ``token`` is only a fingerprint."""

    identity: Identity


class AgentKeyHeaderMiddleware:
    """Present an ``X-Alter-Agent-Key`` header as a bearer credential (refusing it beside one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = list(scope.get("headers", []))
            keys = [v for k, v in headers if k.lower() == AGENT_KEY_HEADER.encode()]
            has_auth = any(k.lower() == b"authorization" for k, _ in headers)
            if keys and has_auth:
                scope = dict(scope, alter_auth_conflict=True)
            elif keys:
                rest = [(k, v) for k, v in headers if k.lower() != AGENT_KEY_HEADER.encode()]
                scope = dict(scope, headers=[*rest, (b"authorization", b"Bearer " + keys[0])])
        await self.app(scope, receive, send)


def _quoted(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")


class _Backend(AuthenticationBackend):
    def __init__(self, auth: AlterAuth) -> None:
        self.auth = auth

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, Any] | None:
        header = conn.headers.get("authorization")
        if conn.scope.get("alter_auth_conflict"):
            raise StarletteAuthError(_BOTH)
        if not header or header[:7].lower() != "bearer ":
            return None
        try:
            token = await self.auth.authenticate(header[7:].strip())
        except AlterError as exc:
            raise StarletteAuthError(exc.message) from None
        return AuthCredentials(token.scopes), AuthenticatedUser(token)


class AlterAuth(AuthProvider):
    """Authenticates MCP requests by user JWT or agent key; serves RFC 9728 metadata."""

    def __init__(self, vault: AlterVault) -> None:
        settings = vault.settings
        if not settings.public_url:
            raise ConfigurationError(
                "The server's public URL is not set.", setting="ALTER_MCP_PUBLIC_URL",
                hint="Set it to the URL clients use, e.g. https://mcp.example.com.",
            )
        super().__init__(base_url=settings.public_url, resource_base_url=settings.public_url)
        self.vault = vault
        self.issuer = settings.idp_issuer

    async def authenticate(self, credential: str) -> AlterAccessToken:
        """Return the verified access token for a bearer credential, or raise ``AlterError``."""
        if looks_like_key(credential):
            identity = await self.vault.authenticate_api_key(credential)
            principal = identity.principal.key
            return AlterAccessToken(
                token=token_fingerprint(credential), client_id=principal, scopes=[],
                subject=principal, claims={"iss": "alter-mcp:agent-key"}, identity=identity,
            )
        verified = await self.vault.verify_user_token(credential)
        claims = {k: verified.claims[k] for k in ("iss", "sub", "aud", "exp", "iat")
                  if k in verified.claims}
        return AlterAccessToken(
            token=verified.fingerprint, client_id=verified.client_id,
            scopes=_scopes(verified.claims),
            expires_at=verified.expires_at, subject=str(verified.claims["sub"]),
            resource=self.resource_url, claims=claims, identity=verified.identity,
        )

    async def verify_token(self, token: str) -> AccessToken | None:
        """Return the access token for ``token``, or None when it does not verify."""
        try:
            return await self.authenticate(token)
        except AlterError:
            return None

    @property
    def resource_url(self) -> str:
        """Return this server's resource URL (the expected token audience)."""
        return str(self._get_resource_url(self._mcp_path or self.vault.settings.mcp_path))

    @property
    def metadata_url(self) -> str | None:
        """Return the RFC 9728 metadata URL, or None when no identity provider is set."""
        if not self.issuer:
            return None
        return str(build_resource_metadata_url(AnyHttpUrl(self.resource_url)))

    def metadata(self) -> dict[str, Any]:
        """Return the protected-resource metadata document."""
        return {
            "resource": self.resource_url,
            "authorization_servers": [self.issuer],
            "bearer_methods_supported": ["header"],
            "resource_name": "alter-mcp",
            "scopes_supported": list(self.vault.settings.idp_scopes),
        }

    def get_routes(self, mcp_path: str | None = None) -> list[Route]:
        """Serve the metadata at ``/.well-known/oauth-protected-resource{,/<mcp path>}``."""
        self.set_mcp_path(mcp_path)
        if not self.issuer:
            return []

        async def handle(_: Request) -> Response:
            return JSONResponse(self.metadata(), headers={"Cache-Control": "public, max-age=3600"})

        path = "/.well-known/oauth-protected-resource"
        endpoint = cors_middleware(handle, ["GET", "OPTIONS"])
        return [Route(path + (mcp_path or ""), endpoint=endpoint, methods=["GET", "OPTIONS"]),
                Route(path, endpoint=endpoint, methods=["GET", "OPTIONS"])]

    def challenge(self, description: str | None = None) -> str:
        """Return the ``WWW-Authenticate`` value for a missing or refused credential."""
        parts = []
        if description is not None:
            parts += ['error="invalid_token"', f'error_description="{_quoted(description)}"']
        if self.metadata_url:
            parts.append(f'resource_metadata="{self.metadata_url}"')
        return "Bearer " + ", ".join(parts) if parts else "Bearer"

    def _on_error(self, conn: HTTPConnection, exc: Exception) -> Response:
        if str(exc) == _BOTH:
            description = ("Send either a user token or an agent API key, not both: an agent "
                           "key cannot act for a user.")
        else:
            description = str(exc) or "The credential could not be verified."
        body = json.dumps({"error": "invalid_token", "error_description": description})
        return Response(body, status_code=401, media_type="application/json",
                        headers={"WWW-Authenticate": self.challenge(description)})

    def get_middleware(self) -> list[Middleware]:
        """Return the authentication middleware (our backend, our 401 challenges)."""
        return [
            Middleware(AuthenticationMiddleware, backend=_Backend(self),
                       on_error=self._on_error),
            Middleware(AuthContextMiddleware),
        ]


def _scopes(claims: Any) -> list[str]:
    value = claims.get("scope") if hasattr(claims, "get") else None
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value] if isinstance(value, list) else []
