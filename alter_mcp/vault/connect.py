"""Connecting accounts (OAuth) and calling their APIs with the credential injected."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from alter_mcp.errors import (
    GrantNotFoundError,
    InvalidInputError,
)
from alter_mcp.models import (
    ConnectSession,
    Grant,
    GrantKind,
    GrantStatus,
    Identity,
)
from alter_mcp.oauth.clients import OAuthClientInfo
from alter_mcp.oauth.service import Opener
from alter_mcp.oauth.sessions import ConnectLink, ConnectResult
from alter_mcp.outbound import Approver, RequestResult
from alter_mcp.redaction import Secret

if TYPE_CHECKING:
    from starlette.applications import Starlette


from alter_mcp.vault._action import Action
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
        async def act(action: Action) -> ConnectLink:
            link = await self._oauth.create_session(
                action.identity, providers=allowed_providers, scopes=scopes,
                account_hint=account_hint, repair_grant_id=repair_grant_id,
                return_url=return_url)
            action.audited_by_callee()  # "connect.create", its link's token redacted
            return link

        return await self._action("connect.create", act, grant_id=_safe_id(repair_grant_id))

    async def connect_status(self, session_id: str) -> ConnectSession:
        """Return the status of one of the caller's connect sessions and its grant ids."""
        async def act(action: Action) -> ConnectSession:
            session = await self._oauth.session(action.identity, session_id)
            action.note(detail={"session_id": session.session_id,
                                "status": session.status.value})
            return session

        return await self._action("connect.status", act,
                                  detail={"session_id": _safe_id(session_id)})

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
        async def act(action: Action) -> list[ConnectResult]:
            if isinstance(providers, str) or not providers:
                raise InvalidInputError("providers must be a non-empty list of provider ids.",
                                        field="providers", hint='Pass e.g. ["github"].')
            if not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
                raise InvalidInputError("timeout must be between 0 and 3600 seconds.",
                                        field="timeout")
            results = []
            for provider_id in dict.fromkeys(providers):
                action.note(provider_id=_safe_id(provider_id), detail={})
                link = await self.create_connect_session(
                    allowed_providers=[provider_id], scopes=scopes, account_hint=account_hint)
                action.note(detail={"session_id": link.session_id})
                session = await self._oauth.present_and_wait(link, open_browser,
                                                             float(timeout))
                grant = await self._core.store.get_grant(session.grant_ids[0])
                results.append(ConnectResult(
                    provider_id=provider_id, grant_id=session.grant_ids[0],
                    account_identifier=grant.account_identifier if grant else None,
                    scopes=grant.scopes if grant else (), session_id=link.session_id))
            action.note(provider_id=None, detail={"grant_ids": [r.grant_id for r in results]})
            return results

        return await self._action("connect", act)

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
        async def act(action: Action) -> OAuthClientInfo:
            self._require_admin(action.identity, "configure OAuth clients")
            info = await self._oauth.configure_provider(
                action.identity, provider_id, client_id=client_id, client_secret=client_secret,
                scopes=scopes, redirect_uri=redirect_uri)
            action.audited_by_callee()  # in the same transaction as the stored client
            return info

        return await self._action("provider.configure", act, provider_id=_safe_id(provider_id))

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
        # The identity is resolved once per request (opening the vault on its first action);
        # a token-based source verifies a JWT.
        ident = await self._identify("request")
        assert self._core.outbound is not None
        # Outbound.request is this action's audited path: one denied event when refused
        # before sending, else an intent committed before the credential is read, then the
        # outcome (write-ahead).
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

