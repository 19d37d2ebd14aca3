"""Grant actions: list one page, read one, revoke one."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from alter_mcp.audit import AuditEntry
from alter_mcp.errors import (
    AlterError,
    GrantNotFoundError,
    InvalidInputError,
)
from alter_mcp.models import (
    Grant,
    GrantPage,
    GrantStatus,
    Outcome,
    RevokeResult,
)
from alter_mcp.vault._base import VaultBase, _safe_id

__all__ = ["GrantActions"]

_MAX_PAGE = 200


class GrantActions(VaultBase):
    """Grant actions: list one page, read one, revoke one."""

    # -- grants -----------------------------------------------------------------------------
    async def list_grants(
        self,
        *,
        provider_id: str | None = None,
        status: GrantStatus | str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> GrantPage:
        """Return one page of the caller's grants (metadata only) and the next cursor."""
        ident = await self.current_identity()
        try:
            if not isinstance(limit, int) or not 1 <= limit <= _MAX_PAGE:
                raise InvalidInputError(f"limit must be between 1 and {_MAX_PAGE}.",
                                        field="limit", hint="Use a smaller page and the cursor.")
            if provider_id is not None:
                self._core.catalog.get(provider_id)
            status_value = _parse_status(status)
            after = _decode_cursor(cursor) if cursor else None
            rows = await self._core.store.list_grants(
                ident.owner_keys(), provider_id=provider_id, status=status_value,
                limit=limit + 1, after=after,
            )
        except AlterError as exc:
            await self._fail("grant.list", exc, ident, provider_id=provider_id)
            raise
        page, more = rows[:limit], len(rows) > limit
        next_cursor = _encode_cursor(page[-1]) if more and page else None
        await self._core.audit.record(AuditEntry(
            "grant.list", Outcome.ALLOWED, identity=ident, provider_id=provider_id,
            detail={"count": len(page)},
        ))
        return GrantPage(grants=tuple(page), next_cursor=next_cursor)

    async def get_grant(self, grant_id: str) -> Grant:
        """Return one of the caller's grants by id."""
        ident = await self.current_identity()
        try:
            grant = await self._usable_grant(ident, grant_id)
        except AlterError as exc:
            await self._fail("grant.get", exc, ident, grant_id=_safe_id(grant_id))
            raise
        await self._core.audit.record(AuditEntry(
            "grant.get", Outcome.ALLOWED, identity=ident, grant_id=grant.grant_id,
            provider_id=grant.provider_id,
        ))
        return grant

    def grant_view(self, grant: Grant) -> dict[str, Any]:
        """Return a grant's public view plus where to call: its API hosts and base URL."""
        view = grant.public_view()
        if grant.provider_id in self._core.catalog:
            provider = self._core.catalog.get(grant.provider_id)
            view["api_hosts"] = list(provider.hosts_for(grant.connection))
            view["api_base_url"] = provider.base_url_for(grant.connection)
        return view

    async def revoke_grant(self, grant_id: str, *, reason: str | None = None) -> RevokeResult:
        """Revoke one of the caller's grants: delete its credential and mark it revoked."""
        ident = await self.current_identity()
        try:
            grant = await self._usable_grant(ident, grant_id)
            if grant.status is GrantStatus.REVOKED:
                raise GrantNotFoundError(f"Grant {grant_id!r} is already revoked.",
                                         grant_id=grant_id)
            # At the provider first (it needs the token); its failure keeps nothing local.
            outcome, why = await self._oauth.revoke_at_provider(grant)
            revoked_at = self._core.clock()
            entry = AuditEntry(
                "grant.revoke", Outcome.ALLOWED, identity=ident, grant_id=grant.grant_id,
                provider_id=grant.provider_id, reason=reason,
                detail={"provider_revocation": outcome, "provider_detail": why},
            )
            done = await self._core.store.revoke_grant(
                grant.grant_id, revoked_at, audit=self._core.audit.sealer(entry)
            )
            if not done:
                raise GrantNotFoundError(f"Grant {grant_id!r} is already revoked.",
                                         grant_id=grant_id)
        except AlterError as exc:
            await self._fail("grant.revoke", exc, ident, grant_id=_safe_id(grant_id),
                             reason=reason)
            raise
        return RevokeResult(grant_id=grant.grant_id, revoked_at=revoked_at,
                            provider_revocation=outcome, provider_detail=why)



def _parse_status(status: GrantStatus | str | None) -> GrantStatus | None:
    if status is None or isinstance(status, GrantStatus):
        return status
    try:
        return GrantStatus(status)
    except ValueError:
        raise InvalidInputError(
            f"Unknown status {status!r}.", field="status",
            hint="Use one of: " + ", ".join(s.value for s in GrantStatus) + ".",
        ) from None


def _encode_cursor(grant: Grant) -> str:
    raw = json.dumps([grant.created_at.isoformat(), grant.grant_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, grant_id = json.loads(raw)
        return datetime.fromisoformat(created), str(grant_id)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidInputError(
            "cursor is not a cursor this server issued.", field="cursor",
            hint="Pass next_cursor from the previous page unchanged, or omit it.",
        ) from None
