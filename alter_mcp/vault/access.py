"""Agent API keys and user identity: who may call the vault."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from alter_mcp.errors import (
    InvalidInputError,
)
from alter_mcp.models import (
    ApiKeyRecord,
    Identity,
)
from alter_mcp.redaction import Secret

if TYPE_CHECKING:

    from alter_mcp.login import AuthResult
    from alter_mcp.tokens import TokenVerifier, VerifiedToken

from alter_mcp.vault._action import Action
from alter_mcp.vault._base import VaultBase, _safe_id

__all__ = ["AccessActions"]


class AccessActions(VaultBase):
    """Agent API keys and user identity: who may call the vault."""

    # -- agent API keys and identity (server) -----------------------------------------------
    async def create_api_key(self, name: str) -> tuple[ApiKeyRecord, Secret]:
        """Create an agent API key (operators only); the key itself is returned once only."""
        from alter_mcp import apikeys

        async def act(action: Action) -> tuple[ApiKeyRecord, Secret]:
            self._require_admin(action.identity, "create agent API keys")
            record, key = apikeys.new_key(name, now=self._core.clock())
            action.redact([key])
            action.note(detail={"key_id": record.key_id, "name": record.name,
                                "prefix": record.prefix})
            await self._core.store.insert_api_key(record, audit=action.sealer())
            return record, key

        return await self._action("apikey.create", act)

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """Return every agent API key's record: name, prefix, dates; never a key (operators)."""
        async def act(action: Action) -> list[ApiKeyRecord]:
            self._require_admin(action.identity, "list agent API keys")
            found = await self._core.store.list_api_keys()
            action.note(detail={"count": len(found)})
            return found

        return await self._action("apikey.list", act)

    async def revoke_api_key(self, key_id: str) -> None:
        """Revoke an agent API key at once (operators only); its next request is refused."""
        async def act(action: Action) -> None:
            self._require_admin(action.identity, "revoke agent API keys")
            done = await self._core.store.revoke_api_key(
                str(key_id), self._core.clock(), audit=action.sealer())
            if not done:
                raise InvalidInputError(f"No active API key {str(key_id)[:64]!r}.",
                                        field="key_id",
                                        hint="List the keys with `alter-mcp keys list`.")

        await self._action("apikey.revoke", act, detail={"key_id": _safe_id(key_id)})

    async def authenticate_api_key(self, key: str) -> Identity:
        """Return the agent identity of a presented key, or raise ``AuthenticationError``."""
        return await self._agent_identity(key)

    async def verify_user_token(self, token: str) -> VerifiedToken:
        """Verify an end user's access token (a JWT, or by introspection) with the IdP."""
        return await self._verified_token(token)

    def use_jwt_verifier(self, verifier: TokenVerifier) -> None:
        """Verify user tokens with ``verifier`` (e.g. one with an injected HTTP client)."""
        self._core.jwt_verifier = verifier

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
        await self._ensure_open()
        stored = await self._core.store.list_provider_configs()
        return frozenset(self._core.settings.providers) | {r.provider_id for r in stored}


