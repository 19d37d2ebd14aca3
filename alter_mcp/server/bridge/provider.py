"""The authorization bridge: alter-mcp as the authorization server of its own MCP endpoint.

Built on fastmcp's :class:`~fastmcp.server.auth.oidc_proxy.OIDCProxy`, which already does what
an MCP host expects of an authorization server: RFC 8414 metadata, dynamic registration
(RFC 7591) and client ID metadata documents (CIMD), redirect-URI validation, PKCE with the MCP
client, a consent page, the upstream login as one confidential client (with its own PKCE), and
its own short-lived access tokens (JWTs whose ``aud`` is this resource and whose ``jti`` refers
to the stored upstream tokens) with rotating refresh tokens. What this module adds:

- the state lives in the vault's store, sealed by its envelope (:mod:`.state`), never in
  fastmcp's default file store;
- redirect URIs: loopback always, plus https on the host names the operator lists;
- the caller's identity comes from the upstream ID token (issuer + ``sub``, groups) as an
  :class:`~alter_mcp.server.auth.AlterAccessToken`, so grants keep their owners; the request
  carries only a fingerprint of the bridge token, never the upstream one;
- the upstream's scopes stay upstream: the bridge's tokens do not carry ``openid email``;
- agent API keys keep working beside the bridge's tokens;
- registrations, tokens issued or refused, and revocations are audited (:mod:`.audited`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx2
from fastmcp.server.auth import AccessToken, TokenVerificationError
from fastmcp.server.auth.redirect_validation import DEFAULT_LOCALHOST_PATTERNS
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend
from mcp.server.auth.provider import AccessToken as UpstreamAccessToken
from pydantic import ValidationError
from starlette.authentication import AuthCredentials
from starlette.authentication import AuthenticationError as StarletteAuthError
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import Response

from alter_mcp.apikeys import looks_like_key
from alter_mcp.config import Settings
from alter_mcp.errors import AlterError, ConfigurationError, IdentityProviderUnavailableError
from alter_mcp.server.auth import RETRY_AFTER, UNAVAILABLE, AlterAccessToken
from alter_mcp.server.bridge.audited import AuditedBridge
from alter_mcp.server.bridge.state import SealedStateStore, StateUnavailableError
from alter_mcp.tokens import identity_from_claims, token_fingerprint
from alter_mcp.vault import AlterVault

__all__ = ["CALLBACK_PATH", "BridgeAuth", "redirect_patterns"]

log = logging.getLogger(__name__)

#: Where the upstream identity provider sends the user back (register it there).
CALLBACK_PATH = "/auth/callback"


def redirect_patterns(settings: Settings) -> list[str]:
    """Return the redirect URIs MCP clients may use: loopback, plus the listed hosts (https)."""
    return [*DEFAULT_LOCALHOST_PATTERNS,
            *(f"https://{host}/*" for host in settings.bridge_redirect_hosts)]


def _required(settings: Settings) -> tuple[str, str, str, str]:
    values = {
        "ALTER_MCP_PUBLIC_URL": (settings.public_url,
                                 "Set it to the URL clients use, e.g. https://mcp.example.com."),
        "ALTER_MCP_BRIDGE_UPSTREAM_ISSUER": (
            settings.bridge_upstream_issuer,
            "Set it to the identity provider's issuer, e.g. https://accounts.google.com."),
        "ALTER_MCP_BRIDGE_CLIENT_ID": (
            settings.bridge_client_id,
            "Register alter-mcp as a confidential client at the identity provider."),
        "ALTER_MCP_BRIDGE_CLIENT_SECRET": (
            settings.bridge_client_secret.get_secret_value()
            if settings.bridge_client_secret else None,
            "Give the client secret the identity provider issued to alter-mcp."),
    }
    for setting, (value, hint) in values.items():
        if not value:
            raise ConfigurationError(f"The authorization bridge needs {setting}.",
                                     setting=setting, hint=hint)
    public, issuer, client_id, secret = (str(v[0]) for v in values.values())
    return public, issuer, client_id, secret


class _Unavailable(StarletteAuthError):
    """The credential could not be checked (503)."""


class _Backend(BearerAuthBackend):
    """fastmcp's bearer check, with "could not check" told apart from "checked and bad"."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, Any] | None:
        try:
            checked: tuple[AuthCredentials, Any] | None = await super().authenticate(conn)
        except TokenVerificationError as exc:
            log.error("A bridge token could not be checked: %s", exc)
            raise _Unavailable("The server could not check the credential: its database is "
                               f"unavailable. Retry in {RETRY_AFTER} seconds.") from None
        return checked


def _unavailable(_: HTTPConnection, exc: Exception) -> Response:
    body = json.dumps({"error": "temporarily_unavailable", "error_description": str(exc)})
    return Response(body, status_code=503, media_type="application/json",
                    headers={"Retry-After": str(RETRY_AFTER), "Cache-Control": "no-store"})


class BridgeAuth(AuditedBridge):
    """Authorize MCP hosts at alter-mcp itself, delegating the user's login to an upstream IdP."""

    def __init__(self, vault: AlterVault) -> None:
        settings = vault.settings
        public, issuer, client_id, secret = _required(settings)
        signing = settings.bridge_signing_key
        discovery = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            super().__init__(
                config_url=discovery,
                client_id=client_id,
                client_secret=secret,
                # Upstream access tokens may be opaque (GitHub, oidc-provider); the ID token is
                # always a JWT and names the user.
                verify_id_token=True,
                base_url=public,
                redirect_path=CALLBACK_PATH,
                allowed_client_redirect_uris=redirect_patterns(settings),
                client_storage=SealedStateStore(store=vault.store, envelope=vault.envelope),
                jwt_signing_key=signing.get_secret_value() if signing else None,
                require_authorization_consent=True,
                # The upstream token is for alter-mcp (its client), not for the MCP resource.
                forward_resource=False,
                extra_authorize_params={"scope": " ".join(settings.bridge_upstream_scopes)},
                fastmcp_access_token_expiry_seconds=settings.bridge_access_token_ttl,
                fallback_refresh_token_expiry_seconds=settings.bridge_refresh_token_ttl,
                enable_cimd=True,
            )
        except (httpx2.HTTPError, ValidationError) as exc:
            # fastmcp reads the discovery document while it is built, so this is at startup.
            raise IdentityProviderUnavailableError(
                f"The identity provider's discovery document {discovery} could not be read "
                f"({type(exc).__name__}).", url=discovery,
                hint="Check ALTER_MCP_BRIDGE_UPSTREAM_ISSUER and that the provider is "
                     "reachable from this server.") from None
        self.vault = vault
        self.upstream_issuer = issuer

    def _translate_scopes_from_idp(self, scopes: list[str]) -> list[str]:
        """Keep none of the upstream's scopes in the bridge's tokens.

        They were granted to alter-mcp (``openid email …``), not to the MCP host; echoed back,
        a host asks for them at its next authorization and is refused, since it registered
        none (the MCP Inspector does exactly this). fastmcp's documented hook for the
        IdP-to-client scope mapping; the Inspector test fails if it stops being called.
        """
        return []

    def get_middleware(self) -> list[Middleware]:
        """Return the bearer-token middleware, answering 503 when the state is unreachable."""
        return [Middleware(AuthenticationMiddleware, backend=_Backend(self),
                           on_error=_unavailable),
                Middleware(AuthContextMiddleware)]

    async def load_access_token(self, token: str) -> AccessToken | None:
        """Return the caller's verified access token (bridge token or agent key), or None."""
        if looks_like_key(token):
            try:
                identity = await self.vault.authenticate_api_key(token)
            except UNAVAILABLE as exc:
                raise StateUnavailableError(exc.message) from exc  # not checked is not invalid
            except AlterError:
                return None
            principal = identity.principal.key
            return AlterAccessToken(
                token=token_fingerprint(token), client_id=principal, scopes=[],
                subject=principal, claims={"iss": "alter-mcp:agent-key"}, identity=identity)
        verified = await super().load_access_token(token)
        if verified is None:
            return None
        # The MCP client the bridge token was issued to (the verifier's is the upstream one).
        client_id = str(self.jwt_issuer.verify_token(token).get("client_id", ""))
        return self._with_identity(token, verified, client_id)

    def _with_identity(self, token: str, verified: UpstreamAccessToken, client_id: str
                       ) -> AlterAccessToken | None:
        claims: dict[str, Any] = dict(verified.claims or {})
        issuer, subject = claims.get("iss"), claims.get("sub")
        if not isinstance(issuer, str) or not isinstance(subject, str) or not subject:
            log.warning("The upstream ID token names no issuer and subject; refused.")
            return None
        identity = identity_from_claims(issuer, subject, claims,
                                        groups_claim=self.vault.settings.idp_groups_claim)
        # Only the fingerprint travels with the request: the bridge token and the upstream
        # tokens stay out of every tool, log and audit row.
        return AlterAccessToken(
            token=token_fingerprint(token), client_id=client_id or verified.client_id,
            scopes=verified.scopes, expires_at=verified.expires_at, subject=subject,
            resource=str(self._get_resource_url(self._mcp_path)) if self._mcp_path else None,
            claims={"iss": issuer, "sub": subject}, identity=identity)

