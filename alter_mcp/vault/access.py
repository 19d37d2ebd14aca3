"""Agent API keys and user identity: who may call the vault."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from alter_mcp.audit import AuditEntry
from alter_mcp.errors import (
    AlterError,
    AuthenticationError,
    InvalidInputError,
)
from alter_mcp.models import (
    ApiKeyRecord,
    Identity,
    Outcome,
)
from alter_mcp.redaction import Secret

if TYPE_CHECKING:

    from alter_mcp.login import AuthResult
    from alter_mcp.tokens import TokenVerifier, VerifiedToken

from alter_mcp.vault._base import VaultBase, _safe_id

__all__ = ["AccessActions"]


class AccessActions(VaultBase):
    """Agent API keys and user identity: who may call the vault."""

    # -- agent API keys and identity (server) -----------------------------------------------
    async def create_api_key(self, name: str) -> tuple[ApiKeyRecord, Secret]:
        """Create an agent API key (operators only); the key itself is returned once only."""
        from alter_mcp import apikeys

        ident = await self.current_identity()
        try:
            self._require_admin(ident, "create agent API keys")
            record, key = apikeys.new_key(name, now=self._core.clock())
            entry = AuditEntry("apikey.create", Outcome.ALLOWED, identity=ident, detail={
                "key_id": record.key_id, "name": record.name, "prefix": record.prefix})
            await self._core.store.insert_api_key(
                record, audit=self._core.audit.sealer(entry, [key]))
        except AlterError as exc:
            await self._fail("apikey.create", exc, ident)
            raise
        return record, key

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """Return every agent API key's record: name, prefix, dates; never a key (operators)."""
        ident = await self.current_identity()
        try:
            self._require_admin(ident, "list agent API keys")
            found = await self._core.store.list_api_keys()
        except AlterError as exc:
            await self._fail("apikey.list", exc, ident)
            raise
        await self._core.audit.record(AuditEntry("apikey.list", Outcome.ALLOWED, identity=ident,
                                                 detail={"count": len(found)}))
        return found

    async def revoke_api_key(self, key_id: str) -> None:
        """Revoke an agent API key at once (operators only); its next request is refused."""
        ident = await self.current_identity()
        try:
            self._require_admin(ident, "revoke agent API keys")
            entry = AuditEntry("apikey.revoke", Outcome.ALLOWED, identity=ident,
                               detail={"key_id": _safe_id(key_id)})
            done = await self._core.store.revoke_api_key(
                str(key_id), self._core.clock(), audit=self._core.audit.sealer(entry))
            if not done:
                raise InvalidInputError(f"No active API key {str(key_id)[:64]!r}.",
                                        field="key_id",
                                        hint="List the keys with `alter-mcp keys list`.")
        except AlterError as exc:
            await self._fail("apikey.revoke", exc, ident, detail={"key_id": _safe_id(key_id)})
            raise

    async def authenticate_api_key(self, key: str) -> Identity:
        """Return the agent identity of a presented key, or raise ``AuthenticationError``."""
        from alter_mcp import apikeys

        record = await self._core.store.get_api_key_by_hash(
            apikeys.hash_key(apikeys.check_shape(key)))
        if record is None or record.revoked_at is not None:
            raise AuthenticationError(
                "The agent API key is unknown or revoked.",
                hint="Ask an operator for a new key (alter-mcp keys create NAME).",
                reason="invalid_api_key",
            )
        return apikeys.agent_identity(record)

    async def verify_user_token(self, token: str) -> VerifiedToken:
        """Verify an end user's access token (a JWT, or by introspection) with the IdP."""
        from alter_mcp.tokens import verifier_from_settings

        # One verifier (and so one JWKS or introspection cache) per vault; views share it
        # through the core.
        verifier = getattr(self._core, "jwt_verifier", None)
        if verifier is None:
            # The vault's OAuth client (closed with the vault): a client per introspection
            # would cost a new connection pool each time (bench/introspection.py).
            verifier = verifier_from_settings(self._core.settings, http=self._core.http)
            self._core.jwt_verifier = verifier  # type: ignore[attr-defined]
        result: VerifiedToken = await verifier.verify(token)
        return result

    def use_jwt_verifier(self, verifier: TokenVerifier) -> None:
        """Verify user tokens with ``verifier`` (e.g. one with an injected HTTP client)."""
        self._core.jwt_verifier = verifier  # type: ignore[attr-defined]

    async def authenticate(
        self, *, open_browser: bool | Callable[[str], Any] = True,
        timeout: float = 300.0,  # noqa: ASYNC109 - the documented SDK parameter
        reuse: bool = True,
    ) -> AuthResult:
        """Sign the user in with the identity provider in a browser; act as them from now on.

        Overrides any identity source given at construction. With ``reuse`` a cached,
        still-refreshable login (sealed in the data directory) is used without a browser.
        """
        from alter_mcp.login import BrowserLogin

        login = BrowserLogin(settings=self._core.settings, envelope=self._core.envelope)
        result = await login.restore() if reuse else None
        if result is None:
            result = await login.run(open_browser, limit=timeout)
        self._identity_source = login.identity
        return result

    async def configured_providers(self) -> frozenset[str]:
        """Return the ids of providers with an OAuth client on this deployment."""
        stored = await self._core.store.list_provider_configs()
        return frozenset(self._core.settings.providers) | {r.provider_id for r in stored}


