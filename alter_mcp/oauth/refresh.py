"""Token refresh, single-flight per grant: in-process lock, cross-process lease, versioned CAS.

Within one process, callers of one grant queue on an ``anyio.Lock``; across processes sharing
a database, one holds the store's refresh lease. Whoever gets through re-reads the credential
and returns it unchanged if its version moved (someone else refreshed). The winner redeems the
refresh token and writes the new set with compare-and-swap on the version, shielded from
cancellation so a rotated refresh token is persisted before anyone could need it again.
The refresh is audited write-ahead: its intent is committed before the refresh token is sent
(if it cannot be, nothing is sent), its outcome after.
Waiting is bounded: past ``wait`` seconds the caller gets ``TokenRefreshInProgressError``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

import anyio

from alter_mcp.audit import AuditEntry, AuditLog, linked
from alter_mcp.crypto import Envelope
from alter_mcp.errors import (
    AlterError,
    GrantNotFoundError,
    ReAuthRequiredError,
    RequestSentUnauditedError,
    SentRequestFailedError,
    StoreError,
    TokenRefreshInProgressError,
)
from alter_mcp.models import Grant, GrantStatus, Identity, Outcome
from alter_mcp.oauth.client import InvalidGrantError, OAuthHttp
from alter_mcp.oauth.clients import OAuthClientConfig
from alter_mcp.oauth.tokens import TokenSet, open_credential, seal_credential
from alter_mcp.providers.schema import Provider
from alter_mcp.store import CredentialRecord, Store

__all__ = ["RefreshCoordinator", "RepairLink"]

#: Creates a repair connect session for a grant (asking for these scopes); returns its URL.
RepairLink = Callable[[Grant, Sequence[str]], Awaitable[str]]

_WHAT = "token refresh"
_NOT_SENT_ON = "The API request was not sent with the refreshed token."
_POLL_FIRST = 0.02
_POLL_MAX = 0.25


class RefreshCoordinator:
    """Hand out a grant's current tokens, refreshing them at most once per expiry."""

    def __init__(
        self, *, store: Store, envelope: Envelope, oauth: OAuthHttp, audit: AuditLog,
        clock: Callable[[], datetime], leeway: float, wait: float, lease_ttl: float,
        repair_link: RepairLink,
    ) -> None:
        self._store = store
        self._envelope = envelope
        self._oauth = oauth
        self._audit = audit
        self._clock = clock
        self._leeway = leeway
        self._wait = wait
        self._lease_ttl = lease_ttl
        self._repair_link = repair_link
        self._holder = f"{uuid.uuid4().hex}"
        self._locks: dict[str, tuple[anyio.Lock, int]] = {}

    async def tokens(
        self, grant: Grant, provider: Provider, client: OAuthClientConfig, *,
        force: bool = False, identity: Identity | None = None,
    ) -> TokenSet:
        """Return the grant's tokens, refreshed first if due (or if ``force``)."""
        record = await self._record(grant)
        tokens = open_credential(self._envelope, record)
        if not force and not tokens.is_due(self._clock(), self._leeway):
            return tokens
        deadline = time.monotonic() + self._wait
        async with self._grant_lock(grant.grant_id, deadline):
            return await self._refresh_locked(grant, provider, client, record.version,
                                              deadline, force=force, identity=identity)

    # -- locking ------------------------------------------------------------------------------
    @asynccontextmanager
    async def _grant_lock(self, grant_id: str, deadline: float) -> AsyncIterator[None]:
        lock, users = self._locks.get(grant_id, (anyio.Lock(), 0))
        self._locks[grant_id] = (lock, users + 1)
        try:
            acquired = False
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                await lock.acquire()
                acquired = True
            if not acquired:
                raise TokenRefreshInProgressError(grant_id)
            try:
                yield
            finally:
                lock.release()
        finally:
            lock_now, users_now = self._locks[grant_id]
            if users_now <= 1:
                del self._locks[grant_id]
            else:
                self._locks[grant_id] = (lock_now, users_now - 1)

    async def _refresh_locked(
        self, grant: Grant, provider: Provider, client: OAuthClientConfig, seen: int,
        deadline: float, *, force: bool, identity: Identity | None,
    ) -> TokenSet:
        record = await self._record(grant)
        if record.version != seen:
            return open_credential(self._envelope, record)
        await self._check_usable(grant)
        poll = _POLL_FIRST
        while not await self._store.acquire_refresh_lease(grant.grant_id, self._holder,
                                                          self._lease_ttl):
            if time.monotonic() >= deadline:
                raise TokenRefreshInProgressError(grant.grant_id)
            await anyio.sleep(poll)
            poll = min(poll * 2, _POLL_MAX)
            record = await self._record(grant)
            if record.version != seen:
                return open_credential(self._envelope, record)
        try:
            # Another process may have refreshed between our read and taking the lease.
            record = await self._record(grant)
            tokens = open_credential(self._envelope, record)
            if record.version != seen or not (force or tokens.is_due(self._clock(),
                                                                     self._leeway)):
                return tokens
            await self._check_usable(grant)
            return await self._redeem(grant, provider, client, record, tokens, identity)
        finally:
            with anyio.CancelScope(shield=True):
                await self._store.release_refresh_lease(grant.grant_id, self._holder)

    async def _check_usable(self, grant: Grant) -> None:
        """Refuse early when a worker's invalid_grant already marked the grant (no dead spend)."""
        current = await self._store.get_grant(grant.grant_id)
        if current is None or current.status is GrantStatus.REVOKED:
            raise GrantNotFoundError(f"Grant {grant.grant_id} is revoked.",
                                     grant_id=grant.grant_id)
        if current.status is GrantStatus.NEEDS_REAUTH:
            raise await self._reauth_error(grant)

    # -- the refresh itself -------------------------------------------------------------------
    async def _redeem(
        self, grant: Grant, provider: Provider, client: OAuthClientConfig,
        record: CredentialRecord, tokens: TokenSet, identity: Identity | None,
    ) -> TokenSet:
        started = time.monotonic()
        intent = await self._audit.intent(AuditEntry(
            "grant.refresh.intent", Outcome.ALLOWED, identity=identity, grant_id=grant.grant_id,
            provider_id=grant.provider_id, method="POST",
            url=provider.oauth.token_url if provider.oauth else None), tokens.secrets(),
            what=_WHAT)
        # Shielded: once the provider rotates the refresh token, the new one must be stored.
        with anyio.CancelScope(shield=True):
            try:
                fresh = await self._oauth.refresh(provider, client, tokens, now=self._clock())
            except InvalidGrantError as exc:
                await self._mark_needs_reauth(grant, exc, tokens, identity, intent)
                raise await self._reauth_error(grant) from None
            except AlterError as exc:
                await self._audit.outcome(AuditEntry.failed(
                    "grant.refresh", exc, identity=identity, grant_id=grant.grant_id,
                    provider_id=grant.provider_id), tokens.secrets(), intent_seq=intent,
                    sent=True, status=exc.details.get("status"), what=_WHAT, note=_NOT_SENT_ON)
                raise
            except Exception as exc:  # a bug after sending: typed, and audited as the outcome
                await self._audit.outcome(AuditEntry.failed(
                    "grant.refresh", exc, identity=identity, grant_id=grant.grant_id,
                    provider_id=grant.provider_id), tokens.secrets(), intent_seq=intent,
                    sent=True, status=None, what=_WHAT, note=_NOT_SENT_ON)
                raise SentRequestFailedError(what=_WHAT, sent=True, status=None,
                                             intent_seq=intent) from exc
            now = self._clock()
            new = seal_credential(self._envelope, grant.grant_id, fresh,
                                  version=record.version + 1, now=now)
            swapped = await self._store.swap_credential(new, expected_version=record.version)
            rotated = fresh.refresh_token != tokens.refresh_token
            await self._audit.outcome(AuditEntry(
                "grant.refresh", Outcome.ALLOWED, identity=identity, grant_id=grant.grant_id,
                provider_id=grant.provider_id, latency_ms=(time.monotonic() - started) * 1e3,
                reason=None if swapped else "a concurrent re-authorization replaced the tokens",
                detail={"rotated": rotated, "version": new.version if swapped else None,
                        "expires_at": fresh.expires_at.isoformat() if fresh.expires_at else None},
            ), [*tokens.secrets(), *fresh.secrets()], intent_seq=intent, sent=True, status=200,
                what=_WHAT, note=_NOT_SENT_ON)
        if not swapped:
            return open_credential(self._envelope, await self._record(grant))
        return fresh

    async def _mark_needs_reauth(
        self, grant: Grant, exc: InvalidGrantError, tokens: TokenSet, identity: Identity | None,
        intent: int,
    ) -> None:
        entry = AuditEntry(
            "grant.refresh", Outcome.DENIED, identity=identity, grant_id=grant.grant_id,
            provider_id=grant.provider_id, error=exc.code,
            reason="the provider rejected the refresh token; the grant needs re-authorization",
            detail={"status": GrantStatus.NEEDS_REAUTH.value, "http_status": exc.status},
        )
        try:
            await self._store.set_grant_status(
                grant.grant_id, GrantStatus.NEEDS_REAUTH,
                audit=self._audit.sealer(linked(entry, intent), tokens.secrets()))
        except StoreError as store_exc:
            raise RequestSentUnauditedError(what=_WHAT, status=exc.status, intent_seq=intent,
                                            note=_NOT_SENT_ON) from store_exc

    async def _reauth_error(self, grant: Grant) -> ReAuthRequiredError:
        url = await self._repair_link(grant, ())
        return ReAuthRequiredError(
            f"Grant {grant.grant_id} can no longer be refreshed: the provider "
            f"{grant.provider_id!r} rejected it (revoked, expired or reused).",
            grant_id=grant.grant_id, provider_id=grant.provider_id, connect_url=url,
        )

    async def _record(self, grant: Grant) -> CredentialRecord:
        record = await self._store.get_credential(grant.grant_id)
        if record is None:
            raise GrantNotFoundError(f"No grant {grant.grant_id!r} is available to this caller.",
                                     grant_id=grant.grant_id)
        return record
