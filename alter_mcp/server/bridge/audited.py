"""The bridge's actions in the vault's audit log: registrations, tokens issued and refused,
refreshes and revocations, each with the MCP client and, once known, the user.

fastmcp's proxy does these steps; :class:`AuditedBridge` wraps the ones that change who may
act as whom, and the look-ups that refuse a replayed code or a reused refresh token, so the
audit log shows which host acts for which user from when, and who tried what. A token is
returned only after its event is written (fail closed); the identity of a new token is the
one the bridge itself verifies from it, so the audit and later requests agree.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastmcp.server.auth.oidc_proxy import OIDCProxy
from mcp.server.auth.provider import AccessToken as UpstreamAccessToken
from mcp.server.auth.provider import AuthorizationCode, RefreshToken, TokenError
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from alter_mcp.audit import AuditEntry
from alter_mcp.models import Identity, Outcome
from alter_mcp.server.auth import AlterAccessToken
from alter_mcp.vault import AlterVault

__all__ = ["AuditedBridge"]


class AuditedBridge(OIDCProxy):
    """Record the bridge's registrations, token grants and revocations in the audit log."""

    vault: AlterVault

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        """Register a client (RFC 7591), then audit it."""
        await super().register_client(client_info)
        await self._record("bridge.register", Outcome.ALLOWED, client_info.client_id, detail={
            "client_name": client_info.client_name,
            "redirect_uris": [str(uri) for uri in client_info.redirect_uris or []]})

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str,
    ) -> AuthorizationCode | None:
        """Look up a code; audit one that is unknown, used or another client's."""
        found = await super().load_authorization_code(client, authorization_code)
        if found is None:
            await self._refused(client, "authorization_code", "invalid_grant")
        return found

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str,
    ) -> RefreshToken | None:
        """Look up a refresh token; audit one that is unknown, reused or another client's."""
        found = await super().load_refresh_token(client, refresh_token)
        if found is None:
            await self._refused(client, "refresh_token", "invalid_grant")
        return found

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode,
    ) -> OAuthToken:
        """Issue tokens for a code; audit the grant (and the refusal)."""
        return await self._granted(client, "authorization_code", super(
            ).exchange_authorization_code(client, authorization_code))

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken,
        scopes: list[str],
    ) -> OAuthToken:
        """Refresh tokens; audit the renewal (and the refusal)."""
        return await self._granted(client, "refresh_token", super(
            ).exchange_refresh_token(client, refresh_token, scopes))

    async def revoke_token(self, token: UpstreamAccessToken | RefreshToken) -> None:
        """Revoke a token here and upstream; audit it."""
        await super().revoke_token(token)
        kind = "refresh_token" if isinstance(token, RefreshToken) else "access_token"
        await self._record("bridge.revoke", Outcome.ALLOWED, token.client_id,
                           detail={"token_type": kind})

    async def _granted(self, client: OAuthClientInformationFull, grant_type: str,
                       issue: Awaitable[OAuthToken]) -> OAuthToken:
        try:
            token = await issue
        except TokenError as exc:
            await self._refused(client, grant_type, exc.error)
            raise
        verified = await self.load_access_token(token.access_token)
        identity = verified.identity if isinstance(verified, AlterAccessToken) else None
        # Written before the token is returned: no token leaves unaudited.
        await self._record("bridge.token", Outcome.ALLOWED, client.client_id, identity=identity,
                           detail={"grant_type": grant_type})
        return token

    async def _refused(self, client: OAuthClientInformationFull, grant_type: str,
                       error: str) -> None:
        await self._record("bridge.token", Outcome.DENIED, client.client_id, error=error,
                           detail={"grant_type": grant_type})

    async def _record(self, action: str, outcome: Outcome, client_id: str | None, *,
                      identity: Identity | None = None, error: str | None = None,
                      detail: dict[str, Any]) -> None:
        await self.vault.audit_log.record(AuditEntry(
            action, outcome, identity=identity, error=error,
            detail={"client_id": client_id, **detail}))
