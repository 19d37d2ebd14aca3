"""The browser's side of connect: open a session's link, then handle the provider's callback.

A callback is checked, in order, against the state's session (known, pending, unexpired),
the browser (the cookie set when the link was opened), the issuer (``iss``, RFC 9207) and the
provider's ``error=``; any refusal writes nothing but a denied audit event. Only then is the
state consumed (exactly once), the code exchanged with the PKCE verifier, and the grant
created or repaired in place, its credential and audit event in one transaction.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from alter_mcp.audit import AuditEntry
from alter_mcp.crypto import key_id_of
from alter_mcp.errors import AlterError, ConnectFlowError
from alter_mcp.models import ConnectSessionStatus, Grant, GrantKind, GrantStatus, Outcome
from alter_mcp.oauth.client import TokenResponse
from alter_mcp.oauth.context import OAuthContext, owner_identity
from alter_mcp.oauth.keypage import KeyIntake, KeySaved, SecretForm, form_for
from alter_mcp.oauth.sessions import (
    authorization_url,
    cookie_name,
    handles_match,
    hash_handle,
    new_pkce,
    new_state,
    open_link,
    refuse,
    session_id_of_state,
    verifier_binding,
)
from alter_mcp.oauth.tokens import seal_credential
from alter_mcp.providers.schema import Provider
from alter_mcp.redaction import Secret
from alter_mcp.store import SessionRecord

__all__ = ["CallbackOutcome", "ConnectFlow", "ConnectStart", "ProviderChoice", "SecretForm"]

_CALLER = "connect-page"


@dataclass(frozen=True, slots=True)
class ProviderChoice:
    """One provider offered on the picker page."""

    provider_id: str
    name: str


@dataclass(frozen=True, slots=True)
class ConnectStart:
    """What opening a link leads to: a provider picker, or a redirect plus the browser cookie."""

    session_id: str
    choices: tuple[ProviderChoice, ...] = ()
    #: A key-based provider: the form to paste its secret into (no redirect).
    form: SecretForm | None = None
    redirect_url: str | None = field(default=None, repr=False)
    cookie_value: Secret | None = None
    cookie_max_age: int = 0


@dataclass(frozen=True, slots=True)
class CallbackOutcome:
    """A completed connect: the grant created or repaired, and where to send the browser."""

    session_id: str
    provider_id: str
    provider_name: str
    grant_id: str
    account_identifier: str | None
    repaired: bool
    return_url: str | None


def issuer_matches(provider: Provider, iss: str) -> bool:
    """Return True when ``iss`` names the server of the provider's authorization endpoint."""
    assert provider.oauth is not None
    expected, got = urlsplit(provider.oauth.authorization_url), urlsplit(iss)
    return (got.scheme, got.netloc) == (expected.scheme, expected.netloc) and (
        expected.path.startswith(got.path.rstrip("/") + "/") or not got.path.strip("/"))


class ConnectFlow:
    """Serve the connect link and the OAuth callback for the sessions of one vault."""

    def __init__(
        self, ctx: OAuthContext, *, base_url: Callable[[], Awaitable[str]],
        notify: Callable[[str, ConnectFlowError | None], None],
    ) -> None:
        self._ctx = ctx
        self._base_url = base_url
        self._notify = notify
        self._keys = KeyIntake(ctx)

    # -- the link -----------------------------------------------------------------------------
    async def start(self, token: str, provider_id: str | None) -> ConnectStart:
        """Open a connect link: offer its providers, or redirect to the chosen one."""
        ctx = self._ctx
        now = ctx.clock()
        record = await ctx.store.get_session_by_token(hash_handle(token)) if token else None
        try:
            record = open_link(record, now)
            allowed = record.session.allowed_providers
            if provider_id is None and len(allowed) > 1:
                return ConnectStart(record.session.session_id, choices=tuple(
                    ProviderChoice(p, ctx.lookup(p).name) for p in allowed))
            chosen = provider_id or allowed[0]
            if chosen not in allowed:
                raise refuse("provider_not_allowed")
            provider = ctx.lookup(chosen)
            if not provider.is_oauth:
                return ConnectStart(record.session.session_id, form=form_for(record, provider))
            return await self._redirect(record, provider, token, now)
        except AlterError as exc:
            session = record.session if record else None
            # Only a provider the session offers is recorded, never arbitrary query input.
            offered = session.allowed_providers if session else ()
            await ctx.audit.record(AuditEntry.failed(
                "connect.authorize", exc, reason=getattr(exc, "reason", None),
                identity=owner_identity(session.owner, caller=_CALLER) if session else None,
                provider_id=provider_id if provider_id in offered else None,
                detail={"session_id": session.session_id if session else None},
            ), [token])
            raise

    async def _redirect(
        self, record: SessionRecord, provider: Provider, token: str, now: datetime
    ) -> ConnectStart:
        ctx, session = self._ctx, record.session
        client = await ctx.client_for(provider)
        verifier, challenge = new_pkce()
        state = new_state(session.session_id)
        blob = ctx.envelope.seal_text(verifier.reveal(),
                                      aad=verifier_binding(session.session_id))
        begun = await ctx.store.begin_authorization(
            session.session_id, provider_id=provider.id, state_hash=hash_handle(state),
            verifier_blob=blob, key_id=key_id_of(blob))
        if not begun:
            raise refuse("expired")
        url = authorization_url(
            provider, client, redirect_uri=ctx.redirect_uri(client, await self._base_url()),
            state=state, challenge=challenge,
            scopes=ctx.requested_scopes(provider, client, session.scopes),
            account_hint=session.account_hint)
        await ctx.audit.record(AuditEntry(
            "connect.authorize", Outcome.ALLOWED, provider_id=provider.id,
            identity=owner_identity(session.owner, caller=_CALLER),
            detail={"session_id": session.session_id},
        ), [token, state, verifier])
        max_age = max(1, int((session.expires_at - now).total_seconds()))
        return ConnectStart(session.session_id, redirect_url=url, cookie_value=Secret(token),
                            cookie_max_age=max_age)

    async def submit(self, token: str, provider_id: str | None, values: Mapping[str, str]
                     ) -> CallbackOutcome | SecretForm:
        """Take a key-based provider's pasted fields; return the outcome or the form again."""
        saved = await self._keys.submit(token, provider_id, values)
        if isinstance(saved, SecretForm):
            return saved
        self._notify(saved.session_id, None)
        return _key_outcome(saved)

    # -- the callback -------------------------------------------------------------------------
    async def callback(self, params: Mapping[str, str], cookies: Mapping[str, str]
                       ) -> CallbackOutcome:
        """Handle the provider's redirect back; refuse anything not for this browser's session."""
        ctx = self._ctx
        now = ctx.clock()
        state, code = params.get("state") or "", params.get("code") or ""
        session_id = session_id_of_state(state)
        record = await ctx.store.get_session(session_id) if session_id else None
        known: list[str] = [state, code]
        try:
            if record is None or not handles_match(state, record.state_hash):
                raise refuse("unknown_state")
            session = record.session
            if session.status is not ConnectSessionStatus.PENDING:
                raise refuse("replayed")
            if now >= session.expires_at:
                raise refuse("expired")
            cookie = cookies.get(cookie_name(session.session_id), "")
            if not cookie or not handles_match(cookie, record.token_hash):
                raise refuse("foreign_state")
            provider = ctx.oauth_provider(str(record.provider_id))
            iss = params.get("iss")
            assert provider.oauth is not None
            expected = provider.oauth.issuer
            if expected is not None and iss is None:
                raise refuse("issuer_missing")
            if iss is not None and (iss != expected if expected is not None
                                    else not issuer_matches(provider, iss)):
                raise refuse("issuer_mismatch")
            if params.get("error"):
                raise self._provider_refused(params)
            if not code:
                raise ConnectFlowError("The provider sent no authorization code.",
                                       reason="missing_code", hint="Start again from the link.")
            claimed = await ctx.store.claim_state(hash_handle(state), now)
            if claimed is None:
                raise refuse("replayed")
        except AlterError as exc:
            await self._refused(exc, record, known)
            if record is not None and isinstance(exc, ConnectFlowError) and params.get("error"):
                self._notify(record.session.session_id, exc)
            raise
        return await self._complete(claimed, provider, Secret(code), known, now)

    @staticmethod
    def _provider_refused(params: Mapping[str, str]) -> ConnectFlowError:
        error = "".join(c for c in params.get("error", "")[:64] if c.isalnum() or c in "_-.")
        if error == "access_denied":
            return ConnectFlowError("Authorization was denied at the provider.",
                                    reason="access_denied",
                                    hint="Open the connect link again to retry.")
        return ConnectFlowError(f"The provider refused the authorization ({error}).",
                                reason="provider_error", hint="Open the connect link again.")

    async def _refused(self, exc: AlterError, record: SessionRecord | None,
                       known: list[str]) -> None:
        session = record.session if record else None
        await self._ctx.audit.record(AuditEntry.failed(
            "connect.callback", exc, reason=getattr(exc, "reason", None),
            identity=owner_identity(session.owner, caller=_CALLER) if session else None,
            provider_id=record.provider_id if record else None,
            detail={"session_id": session.session_id if session else None},
        ), known)

    async def _complete(
        self, record: SessionRecord, provider: Provider, code: Secret, known: list[str],
        now: datetime,
    ) -> CallbackOutcome:
        ctx, session = self._ctx, record.session
        response: TokenResponse | None = None
        try:
            if record.verifier_blob is None:
                raise refuse("unknown_state")
            verifier = Secret(ctx.envelope.open_text(
                record.verifier_blob, aad=verifier_binding(session.session_id)))
            known.append(verifier.reveal())
            client = await ctx.client_for(provider)
            response = await ctx.oauth.exchange_code(
                provider, client, code=code,
                verifier=verifier if provider.oauth and provider.oauth.pkce else None,
                redirect_uri=ctx.redirect_uri(client, await self._base_url()),
                requested=ctx.requested_scopes(provider, client, session.scopes), now=now)
            known.extend(s.reveal() for s in response.tokens.secrets())
            grant, repaired = await self._save_grant(record, provider, response, known, now)
        except AlterError as exc:
            if response is not None:
                await self._discard(provider, response)
            await ctx.store.finish_session(session.session_id, ConnectSessionStatus.FAILED,
                                           error=exc.code)
            await self._refused(exc, record, known)
            self._notify(session.session_id, exc if isinstance(exc, ConnectFlowError) else
                         ConnectFlowError(exc.message, reason="exchange_failed"))
            raise
        await ctx.store.finish_session(session.session_id, ConnectSessionStatus.COMPLETED,
                                       grant_ids=[grant.grant_id])
        self._notify(session.session_id, None)
        return CallbackOutcome(
            session_id=session.session_id, provider_id=provider.id, provider_name=provider.name,
            grant_id=grant.grant_id, account_identifier=grant.account_identifier,
            repaired=repaired, return_url=session.return_url)

    async def _discard(self, provider: Provider, response: TokenResponse) -> None:
        """Revoke tokens that will not be stored (best effort: they are dropped anyway)."""
        spec = provider.oauth
        if spec is None or spec.revocation_url is None:
            return
        tokens = response.tokens
        with contextlib.suppress(AlterError):
            client = await self._ctx.client_for(provider)
            for token, hint in ((tokens.refresh_token, "refresh_token"),
                                (tokens.access_token, "access_token")):
                if token is not None:
                    await self._ctx.oauth.revoke(provider, client, token, hint=hint)

    async def _target(self, record: SessionRecord, provider: Provider,
                      response: TokenResponse) -> Grant | None:
        """Return the grant to update in place: the one being repaired or this same account.

        A grant never changes tenant: its connection values name the hosts it may reach.
        """
        store, session, account = self._ctx.store, record.session, response.account
        if session.repair_grant_id is None:
            if account is None:
                return None
            same = await store.find_grants(
                [session.owner.key], provider.id, account_identifier=account,
                statuses=(GrantStatus.ACTIVE, GrantStatus.NEEDS_REAUTH))
            same = [g for g in same if g.connection == response.connection]
            return same[0] if same else None
        grant = await store.get_grant(session.repair_grant_id)
        if (grant is None or grant.status is GrantStatus.REVOKED or grant.provider_id != provider.id
                or grant.owner.key != session.owner.key):
            raise refuse("grant_unavailable")
        if (account and grant.account_identifier and account != grant.account_identifier) \
                or grant.connection != response.connection:
            raise refuse("account_mismatch")
        return grant

    async def _save_grant(
        self, record: SessionRecord, provider: Provider, response: TokenResponse,
        known: list[str], now: datetime,
    ) -> tuple[Grant, bool]:
        ctx, session, tokens = self._ctx, record.session, response.tokens
        target = await self._target(record, provider, response)
        ident = owner_identity(session.owner, caller=_CALLER)
        if target is not None:
            old = await ctx.store.get_credential(target.grant_id)
            grant = target.model_copy(update={
                "status": GrantStatus.ACTIVE, "scopes": tokens.scopes, "updated_at": now,
                "account_identifier": response.account or target.account_identifier})
            credential = seal_credential(ctx.envelope, grant.grant_id, tokens, now=now,
                                         version=(old.version + 1) if old else 1)
            await ctx.store.update_grant(grant, credential, audit=ctx.audit.sealer(AuditEntry(
                "connect.callback", Outcome.ALLOWED, identity=ident, grant_id=grant.grant_id,
                provider_id=provider.id, detail={"session_id": session.session_id,
                                                 "repaired": True}), known))
            return grant, True
        grant = Grant(
            grant_id=str(uuid.uuid4()), kind=GrantKind.OAUTH, provider_id=provider.id,
            owner=session.owner, account_identifier=response.account, scopes=tokens.scopes,
            status=GrantStatus.ACTIVE, created_at=now, updated_at=now,
            connection=response.connection)
        credential = seal_credential(ctx.envelope, grant.grant_id, tokens, version=1, now=now)
        await ctx.store.insert_grant(grant, credential, audit=ctx.audit.sealer(AuditEntry(
            "connect.callback", Outcome.ALLOWED, identity=ident, grant_id=grant.grant_id,
            provider_id=provider.id, detail={"session_id": session.session_id,
                                             "repaired": False}), known))
        return grant, False


def _key_outcome(saved: KeySaved) -> CallbackOutcome:
    return CallbackOutcome(session_id=saved.session_id, provider_id=saved.provider_id,
                           provider_name=saved.provider_name, grant_id=saved.grant_id,
                           account_identifier=saved.label, repaired=False, return_url=None)
