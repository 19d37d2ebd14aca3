"""Grant actions: list one page, read one, revoke one."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from alter_mcp.errors import (
    GrantNotFoundError,
    InvalidInputError,
    RequestSentUnauditedError,
    StoreError,
)
from alter_mcp.models import (
    Grant,
    GrantPage,
    GrantStatus,
    RevokeResult,
)
from alter_mcp.vault._action import Action
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
        async def act(action: Action) -> GrantPage:
            if not isinstance(limit, int) or not 1 <= limit <= _MAX_PAGE:
                raise InvalidInputError(f"limit must be between 1 and {_MAX_PAGE}.",
                                        field="limit", hint="Use a smaller page and the cursor.")
            if provider_id is not None:
                self._core.catalog.get(provider_id)
            status_value = _parse_status(status)
            after = _decode_cursor(cursor) if cursor else None
            rows = await self._core.store.list_grants(
                action.identity.owner_keys(), provider_id=provider_id, status=status_value,
                limit=limit + 1, after=after,
            )
            page, more = rows[:limit], len(rows) > limit
            action.note(detail={"count": len(page)})
            return GrantPage(grants=tuple(page),
                             next_cursor=_encode_cursor(page[-1]) if more and page else None)

        return await self._action("grant.list", act, provider_id=_safe_id(provider_id))

    async def get_grant(self, grant_id: str) -> Grant:
        """Return one of the caller's grants by id."""
        async def act(action: Action) -> Grant:
            grant = await self._usable_grant(action.identity, grant_id)
            action.note(grant_id=grant.grant_id, provider_id=grant.provider_id)
            return grant

        return await self._action("grant.get", act, grant_id=_safe_id(grant_id))

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
        async def act(action: Action) -> RevokeResult:
            grant = await self._usable_grant(action.identity, grant_id)
            if grant.status is GrantStatus.REVOKED:
                raise GrantNotFoundError(f"Grant {grant_id!r} is already revoked.",
                                         grant_id=grant_id)
            # At the provider first (it needs the token); its failure keeps nothing local.
            outcome, why, intent = await self._oauth.revoke_at_provider(grant, action.identity)
            revoked_at = self._core.clock()
            action.note(grant_id=grant.grant_id, provider_id=grant.provider_id,
                        detail={"provider_revocation": outcome, "provider_detail": why})
            action.link(intent)  # this event is the outcome of the revocation's intent
            try:
                done = await self._core.store.revoke_grant(grant.grant_id, revoked_at,
                                                           audit=action.sealer())
            except StoreError as exc:
                if intent is None:
                    raise
                raise RequestSentUnauditedError(
                    what="revocation at the provider", status=None, intent_seq=intent,
                    note=f"The provider reported: {outcome}. The grant is not marked revoked "
                         "here yet.") from exc
            if not done:
                raise GrantNotFoundError(f"Grant {grant_id!r} is already revoked.",
                                         grant_id=grant_id)
            return RevokeResult(grant_id=grant.grant_id, revoked_at=revoked_at,
                                provider_revocation=outcome, provider_detail=why)

        return await self._action("grant.revoke", act, grant_id=_safe_id(grant_id),
                                  reason=reason)


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
