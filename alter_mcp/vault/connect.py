"""Connecting accounts (OAuth) and calling their APIs with the credential injected."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from alter_mcp.audit import AuditEntry
from alter_mcp.errors import (
    AlterError,
    GrantNotFoundError,
    InvalidInputError,
)
from alter_mcp.models import (
    ConnectSession,
    Grant,
    GrantKind,
    GrantStatus,
    Identity,
    Outcome,
)
from alter_mcp.oauth.clients import OAuthClientInfo
from alter_mcp.oauth.service import Opener
from alter_mcp.oauth.sessions import ConnectLink, ConnectResult
from alter_mcp.outbound import Approver, RequestResult
from alter_mcp.redaction import Secret

if TYPE_CHECKING:
    from starlette.applications import Starlette


from alter_mcp.vault._base import VaultBase, _safe_id

__all__ = ["ConnectActions"]


class ConnectActions(VaultBase):
    """Connecting accounts (OAuth) and calling their APIs with the credential injected."""

    async def create_connect_session(
        self,
        *,
        allowed_providers: Sequence[str] | None = None,
        scopes: Sequence[str] | None = None,
        account_hint: str | None = None,
        repair_grant_id: str | None = None,
        return_url: str | None = None,
    ) -> ConnectLink:
        """Create a single-use connect link for the caller (or to repair one of its grants)."""
        ident = await self.current_identity()
        try:
            return await self._oauth.create_session(
                ident, providers=allowed_providers, scopes=scopes, account_hint=account_hint,
                repair_grant_id=repair_grant_id, return_url=return_url)
        except AlterError as exc:
            await self._fail("connect.create", exc, ident, grant_id=_safe_id(repair_grant_id))
            raise

    async def connect_status(self, session_id: str) -> ConnectSession:
        """Return the status of one of the caller's connect sessions and its grant ids."""
        ident = await self.current_identity()
        try:
            session = await self._oauth.session(ident, session_id)
        except AlterError as exc:
            await self._fail("connect.status", exc, ident,
                             detail={"session_id": _safe_id(session_id)})
            raise
        await self._core.audit.record(AuditEntry(
            "connect.status", Outcome.ALLOWED, identity=ident,
            detail={"session_id": session.session_id, "status": session.status.value}))
        return session

    async def connect(
        self,
        providers: Sequence[str],
        *,
        timeout: float = 300.0,  # noqa: ASYNC109 - the documented SDK parameter
        open_browser: Opener = True,
        scopes: Sequence[str] | None = None,
        account_hint: str | None = None,
    ) -> list[ConnectResult]:
        """Connect each provider headlessly: show the link, wait, return one result each."""
        if isinstance(providers, str) or not providers:
            raise InvalidInputError("providers must be a non-empty list of provider ids.",
                                    field="providers", hint='Pass e.g. ["github"].')
        if not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
            raise InvalidInputError("timeout must be between 0 and 3600 seconds.",
                                    field="timeout")
        results = []
        for provider_id in dict.fromkeys(providers):
            link = await self.create_connect_session(
                allowed_providers=[provider_id], scopes=scopes, account_hint=account_hint)
            try:
                session = await self._oauth.present_and_wait(link, open_browser, float(timeout))
            except AlterError as exc:
                await self._fail("connect.wait", exc, await self.current_identity(),
                                 provider_id=provider_id,
                                 detail={"session_id": link.session_id})
                raise
            grant = await self._core.store.get_grant(session.grant_ids[0])
            results.append(ConnectResult(
                provider_id=provider_id, grant_id=session.grant_ids[0],
                account_identifier=grant.account_identifier if grant else None,
                scopes=grant.scopes if grant else (), session_id=link.session_id))
        return results

    async def configure_provider(
        self,
        provider_id: str,
        *,
        client_id: str,
        client_secret: str | None = None,
        scopes: Sequence[str] | None = None,
        redirect_uri: str | None = None,
    ) -> OAuthClientInfo:
        """Store this deployment's OAuth client for a provider, secret encrypted (operators)."""
        ident = await self.current_identity()
        try:
            self._require_admin(ident, "configure OAuth clients")
            return await self._oauth.configure_provider(
                ident, provider_id, client_id=client_id, client_secret=client_secret,
                scopes=scopes, redirect_uri=redirect_uri)
        except AlterError as exc:
            await self._fail("provider.configure", exc, ident, provider_id=_safe_id(provider_id))
            raise

    def connect_app(self) -> Starlette:
        """Return the connect pages (``/connect/{token}``, ``/oauth/callback``) to mount."""
        return self._oauth.connect_app()

    # -- authenticated requests -------------------------------------------------------------
    async def request(
        self,
        method: str,
        url: str,
        *,
        grant_id: str | None = None,
        provider: str | None = None,
        account: str | None = None,
        json: Any = None,
        body: Any = None,
        extra_headers: Mapping[str, str] | None = None,
        query_params: Mapping[str, str] | None = None,
        path_params: Mapping[str, str] | None = None,
        reason: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the documented SDK parameter
        approver: Approver | None = None,
    ) -> RequestResult:
        """Call a provider API with the grant's credential injected; never return the credential.

        Give ``grant_id``, or ``provider`` (plus ``account`` when the caller has several).
        ``approver`` asks a human when a policy rule requires approval.
        """
        ident = await self.current_identity()  # opens the vault on its first action
        assert self._core.outbound is not None
        # The identity is resolved once per request: a token-based source verifies a JWT.
        return await self._core.outbound.request(
            ident, method, url, credential=functools.partial(self._credential_for,
                                                             identity=ident),
            repair_link=self._oauth.repair_link, grant_id=grant_id, provider=provider,
            account=account, json=json, body=body, extra_headers=extra_headers,
            query_params=query_params, path_params=path_params, reason=reason,
            timeout=timeout, approver=approver)

    async def _credential_for(
        self, grant: Grant, *, force_refresh: bool = False, identity: Identity | None = None
    ) -> dict[str, Secret]:
        """Return the grant's credential fields, refreshing an OAuth token first if due."""
        if grant.status is GrantStatus.REVOKED:
            raise GrantNotFoundError(f"Grant {grant.grant_id} is revoked.",
                                     grant_id=grant.grant_id)
        if grant.kind is GrantKind.MANAGED_SECRET:
            if grant.secret_id is None:
                raise GrantNotFoundError(grant_id=grant.grant_id)
            return await self._secret_values(grant.secret_id)
        tokens = await self._oauth.credential(
            grant, force=force_refresh, identity=identity or await self.current_identity())
        fields = {"access_token": tokens.access_token}
        fields.update((name, Secret(value)) for name, value in tokens.extras.items())
        return fields

