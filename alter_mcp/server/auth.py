"""HTTP identity: the MCP endpoint as an OAuth 2 protected resource, plus agent API keys.

Every request to the MCP endpoint carries exactly one credential:

- ``Authorization: Bearer <token>`` from the configured identity provider, verified per
  request by :class:`alter_mcp.tokens.JwtVerifier` (issuer, JWKS, audience = this server's
  resource URL, algorithm allow-list, ``exp``/``nbf``/``iat``) or, for opaque tokens, by
  RFC 7662 introspection (:class:`alter_mcp.tokens.IntrospectionVerifier`);
- or an agent API key, as ``Authorization: Bearer amk_…`` or ``X-Alter-Agent-Key: amk_…``.

A request carrying two credentials, a repeated header or a value of the wrong kind is refused
(:mod:`alter_mcp.server.credentials`). Refusals answer 401 with a ``WWW-Authenticate``
challenge naming the RFC 9728 metadata (served at both the root and the path-suffixed
well-known URL). When the credential *could not be checked* (the database or the identity
provider's keys are unreachable) the answer is 503 with ``Retry-After``, never 401: a client
told its token is invalid would drop a good one. The inbound token is never forwarded: only
its fingerprint is kept on the request.

The metadata's ``scopes_supported`` and the 401's ``scope=`` come from
``ALTER_MCP_RESOURCE_SCOPES``; per-tool scopes are enforced by
:class:`alter_mcp.server.scopes.ToolScopeMiddleware` (403 ``insufficient_scope``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
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
from alter_mcp.errors import (
    AlterError,
    AuthenticationError,
    ConfigurationError,
    IdentityProviderUnavailableError,
    StoreError,
)
from alter_mcp.models import Identity
from alter_mcp.server.credentials import AGENT_KEY_HEADER, presented_credential
from alter_mcp.server.scopes import ToolScopeMiddleware, scopes_supported
from alter_mcp.tokens import token_fingerprint
from alter_mcp.vault import AlterVault

__all__ = [
    "AGENT_KEY_HEADER",
    "RETRY_AFTER",
    "UNAVAILABLE",
    "AgentKeyHeaderMiddleware",
    "AlterAccessToken",
    "AlterAuth",
]

log = logging.getLogger(__name__)

#: Seconds a client is asked to wait before retrying after a 503.
RETRY_AFTER = 5
#: Errors meaning "the credential could not be checked", as opposed to "checked and bad".
UNAVAILABLE: tuple[type[AlterError], ...] = (StoreError, IdentityProviderUnavailableError)
_REFUSAL = "alter_credential_refusal"
_AGENT_KEY = AGENT_KEY_HEADER.encode()
#: Longest a credential check may take before the request is answered 503.
_CHECK_LIMIT = 15.0


class AlterAccessToken(AccessToken):
    """A verified request credential: the caller's identity; ``token`` is only a fingerprint."""

    identity: Identity


class AgentKeyHeaderMiddleware:
    """Check the request's credential headers; present an agent key header as a bearer one.

    FastMCP's ``RequireAuthMiddleware`` looks for ``Authorization: Bearer`` in the raw headers,
    so a valid ``X-Alter-Agent-Key`` is moved there. A refused combination is left for the
    authentication backend to answer (401 with the reason).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = list(scope.get("headers", ()))
            try:
                credential = presented_credential(headers)
            except AuthenticationError as exc:
                scope = dict(scope, **{_REFUSAL: exc})
            else:
                if credential is not None and not any(
                        name.lower() == b"authorization" for name, _ in headers):
                    rest = [(k, v) for k, v in headers if k.lower() != _AGENT_KEY]
                    bearer = (b"authorization", b"Bearer " + credential.encode("latin-1"))
                    scope = dict(scope, headers=[*rest, bearer])
        await self.app(scope, receive, send)


class _Refused(StarletteAuthError):
    """The credential was checked and refused (401)."""


class _Unavailable(StarletteAuthError):
    """The credential could not be checked (503)."""


def _quoted(text: str) -> str:
    """Return ``text`` as a quoted-string body: ASCII (headers are Latin-1), no quote or escape."""
    text = text.replace("\u2026", "...").replace("\\", "").replace('"', "'")
    return text.encode("ascii", "replace").decode("ascii")


class _Backend(AuthenticationBackend):
    def __init__(self, auth: AlterAuth) -> None:
        self.auth = auth

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, Any] | None:
        if not self.auth.guards(conn.scope.get("path", "")):
            return None  # pages, probes and metadata need no identity; a stray header is moot
        try:
            refusal = conn.scope.get(_REFUSAL)
            if isinstance(refusal, AuthenticationError):
                raise refusal
            credential = presented_credential(conn.scope.get("headers", ()))
            if credential is None:
                return None
            with anyio.fail_after(_CHECK_LIMIT):
                token = await self.auth.authenticate(credential)
        except UNAVAILABLE as exc:
            # The operator gets the details; the client only learns what to wait for.
            log.error("A credential could not be checked: %s", exc)
            what = ("its database is unavailable" if isinstance(exc, StoreError)
                    else "the identity provider's keys or token status could not be fetched")
            raise _Unavailable(f"The server could not check the credential: {what}. "
                               f"Retry in {RETRY_AFTER} seconds.") from None
        except TimeoutError:
            log.error("A credential check took longer than %g seconds.", _CHECK_LIMIT)
            raise _Unavailable("The server could not check the credential in time. Retry in "
                               f"{RETRY_AFTER} seconds.") from None
        except AlterError as exc:
            # The message says why; hints are written for operators and users, not callers.
            raise _Refused(exc.message) from None
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
        """Return the access token for ``token``, or None when it does not verify.

        Raises the store's or identity provider's error when it could not be checked at all.
        """
        try:
            return await self.authenticate(token)
        except UNAVAILABLE:
            raise  # not checked is not invalid
        except AlterError:
            return None

    def guards(self, path: str) -> bool:
        """Return True when ``path`` is the MCP endpoint, the one route that needs identity."""
        own = self._mcp_path or self.vault.settings.mcp_path
        return path.rstrip("/") == own.rstrip("/")

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
            "scopes_supported": scopes_supported(self.vault.settings.resource_scopes,
                                                 self.vault.settings.tool_scopes),
        }

    def get_challenge_scopes(self, required_scopes: list[str] | None = None) -> list[str]:
        """Return the scopes a 401 asks clients to request: the resource scopes."""
        return list(self.vault.settings.resource_scopes)

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
        if self.vault.settings.resource_scopes:
            parts.append(f'scope="{" ".join(self.vault.settings.resource_scopes)}"')
        if self.metadata_url:
            parts.append(f'resource_metadata="{self.metadata_url}"')
        return "Bearer " + ", ".join(parts) if parts else "Bearer"

    def _on_error(self, conn: HTTPConnection, exc: Exception) -> Response:
        description = str(exc) or "The credential could not be verified."
        if isinstance(exc, _Unavailable):
            body = json.dumps({"error": "temporarily_unavailable",
                               "error_description": description})
            return Response(body, status_code=503, media_type="application/json",
                            headers={"Retry-After": str(RETRY_AFTER),
                                     "Cache-Control": "no-store"})
        body = json.dumps({"error": "invalid_token", "error_description": description})
        return Response(body, status_code=401, media_type="application/json",
                        headers={"WWW-Authenticate": self.challenge(description)})

    def get_middleware(self) -> list[Middleware]:
        """Return the authentication middleware (our backend, our 401 challenges, tool scopes)."""
        settings = self.vault.settings
        return [
            Middleware(AuthenticationMiddleware, backend=_Backend(self),
                       on_error=self._on_error),
            Middleware(AuthContextMiddleware),
            Middleware(ToolScopeMiddleware, tool_scopes=settings.tool_scopes,
                       resource_scopes=settings.resource_scopes, guards=self.guards,
                       metadata_url=lambda: self.metadata_url),
        ]


def _scopes(claims: Any) -> list[str]:
    # RFC 9068 / 7662 name the claim "scope"; Entra ID names it "scp".
    value = (claims.get("scope") or claims.get("scp")) if hasattr(claims, "get") else None
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value] if isinstance(value, list) else []
