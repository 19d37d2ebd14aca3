"""Managed secrets: developer-owned credentials, and the principals that may use them."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

from alter_mcp import managed as admin
from alter_mcp.crypto import key_id_of
from alter_mcp.errors import (
    InvalidInputError,
    SecretNotFoundError,
)
from alter_mcp.models import (
    Grant,
    GrantKind,
    GrantStatus,
    ManagedSecret,
    Principal,
)
from alter_mcp.vault._action import Action
from alter_mcp.vault._base import VaultBase, _safe_id, secret_binding

__all__ = ["SecretActions"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SecretActions(VaultBase):
    """Managed secrets: developer-owned credentials, and the principals that may use them."""

    # -- managed secrets --------------------------------------------------------------------
    async def create_managed_secret(
        self, provider_id: str, fields: Mapping[str, str], *, label: str
    ) -> ManagedSecret:
        """Store a developer-owned credential (API key, basic pair, AWS keys) encrypted."""
        async def act(action: Action) -> ManagedSecret:
            self._require_admin(action.identity, "create managed secrets")
            provider = self._core.catalog.get(provider_id)
            sealed, connection = admin.split_connection(provider, fields)
            values = admin.validate_secret_fields(provider, sealed)
            action.redact(values.values())
            if not isinstance(label, str) or not label.strip() or _CONTROL.search(label):
                raise InvalidInputError("label must be a non-empty single line.", field="label")
            secret = ManagedSecret(
                secret_id=str(uuid.uuid4()), provider_id=provider.id, label=label.strip(),
                field_names=tuple(sorted(values)), created_at=self._core.clock(),
                connection=connection,
            )
            blob = self._core.envelope.seal_json(values, aad=secret_binding(secret.secret_id))
            action.note(provider_id=provider.id, detail={"secret_id": secret.secret_id})
            await self._core.store.insert_secret(secret, blob, key_id_of(blob),
                                                 audit=action.sealer())
            return secret

        return await self._action("secret.create", act, provider_id=_safe_id(provider_id))

    async def list_managed_secrets(self) -> list[ManagedSecret]:
        """Return every managed secret's metadata (operators only)."""
        async def act(action: Action) -> list[ManagedSecret]:
            self._require_admin(action.identity, "list managed secrets")
            found = await self._core.store.list_secrets()
            action.note(detail={"count": len(found)})
            return found

        return await self._action("secret.list", act)

    async def create_managed_secret_grant(
        self, secret_id: str, *, principal: Principal, label: str | None = None
    ) -> Grant:
        """Let ``principal`` (a user, group or the system) use a managed secret."""
        async def act(action: Action) -> Grant:
            self._require_admin(action.identity, "grant managed secrets")
            found = await self._core.store.get_secret(secret_id)
            if found is None:
                raise SecretNotFoundError(secret_id)
            secret, _ = found
            owner = await self.resolve_principal(principal)
            admin.check_grant_principal(owner, label)
            now = self._core.clock()
            grant = Grant(
                grant_id=str(uuid.uuid4()), kind=GrantKind.MANAGED_SECRET,
                provider_id=secret.provider_id, owner=owner,
                account_identifier=secret.label, label=label or owner.label or secret.label,
                status=GrantStatus.ACTIVE, secret_id=secret.secret_id, created_at=now,
                updated_at=now, connection=dict(secret.connection),
            )
            action.note(grant_id=grant.grant_id, provider_id=grant.provider_id,
                        detail={"secret_id": secret.secret_id, "owner": owner.key})
            await self._core.store.insert_grant(grant, None, audit=action.sealer())
            return grant

        return await self._action("secret.grant", act,
                                  detail={"secret_id": _safe_id(secret_id)})
