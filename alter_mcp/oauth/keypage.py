"""Connect a key-based provider (API key, basic pair, AWS keys) through a page, not the model.

An agent calls ``connect`` for ``openai`` the same way as for ``github``; the link opens a
form with the catalogue's fields instead of a provider's sign-in. The user pastes the secret
there, it is posted (never in a URL) to the same single-use link, sealed as a managed secret
and granted to the principal that owns the session, all in one transaction with its audit
events. The session follows the OAuth connect rules: bound to its owner, used once, expiring,
every step audited, and the values redacted from every event.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from alter_mcp.audit import AuditEntry
from alter_mcp.crypto import key_id_of
from alter_mcp.errors import AlterError, InvalidInputError
from alter_mcp.managed import secret_binding, split_connection, validate_secret_fields
from alter_mcp.models import (
    ConnectSessionStatus,
    Grant,
    GrantKind,
    GrantStatus,
    ManagedSecret,
    Outcome,
)
from alter_mcp.oauth.context import OAuthContext, owner_identity
from alter_mcp.oauth.sessions import hash_handle, open_link, refuse
from alter_mcp.providers.schema import Provider, SecretField
from alter_mcp.providers.tenancy import ConnectionValue
from alter_mcp.store import SessionRecord

__all__ = ["KeyIntake", "KeySaved", "SecretForm"]

_CALLER = "connect-page"
_LABEL_MAX = 120


@dataclass(frozen=True, slots=True)
class SecretForm:
    """The page asking for a key-based provider's fields (``error`` after a bad submit)."""

    session_id: str
    provider_id: str
    provider_name: str
    fields: tuple[SecretField, ...]
    docs_url: str | None
    error: str | None = None
    error_field: str | None = None
    #: Per-account, non-secret values the user types too (a shop, a subdomain).
    connection: tuple[ConnectionValue, ...] = ()


@dataclass(frozen=True, slots=True)
class KeySaved:
    """A key stored and granted: the new grant and the session it completed."""

    session_id: str
    provider_id: str
    provider_name: str
    grant_id: str
    label: str


def form_for(record: SessionRecord, provider: Provider) -> SecretForm:
    """Return the empty form of ``provider`` for a session's link."""
    return SecretForm(record.session.session_id, provider.id, provider.name,
                      provider.secret_fields, provider.docs_url, connection=provider.connection)


class KeyIntake:
    """Take a pasted secret for a connect session and turn it into the owner's grant."""

    def __init__(self, ctx: OAuthContext) -> None:
        self._ctx = ctx

    async def submit(self, token: str, provider_id: str | None, values: Mapping[str, str]
                     ) -> KeySaved | SecretForm:
        """Store the posted fields as the session owner's grant, or say what to fix."""
        ctx = self._ctx
        now = ctx.clock()
        record = await ctx.store.get_session_by_token(hash_handle(token)) if token else None
        known = [token, *(v for v in values.values() if v)]
        try:
            provider = self._usable(record, provider_id, now)
            assert record is not None
            fields = {k.removeprefix("field."): v for k, v in values.items()
                      if k.startswith("field.")}
            try:
                label = _label(values.get("label"), provider)
                sealed, connection = split_connection(provider, fields)
                checked = validate_secret_fields(provider, sealed)
            except InvalidInputError as exc:
                # Nothing is consumed: the user corrects the form and posts again.
                return SecretForm(record.session.session_id, provider.id, provider.name,
                                  provider.secret_fields, provider.docs_url,
                                  error=exc.message, error_field=exc.field,
                                  connection=provider.connection)
            if not await self._claim(record, provider):
                raise refuse("used")
        except AlterError as exc:
            await self._refused(exc, record, known)
            raise
        return await self._save(record, provider, checked, connection, label, known, now)

    def _usable(self, record: SessionRecord | None, provider_id: str | None,
                now: datetime) -> Provider:
        allowed = open_link(record, now).session.allowed_providers
        chosen = provider_id or (allowed[0] if len(allowed) == 1 else "")
        if chosen not in allowed:
            raise refuse("provider_not_allowed")
        provider = self._ctx.lookup(chosen)
        if provider.is_oauth:
            raise refuse("provider_not_allowed")
        return provider

    async def _claim(self, record: SessionRecord, provider: Provider) -> bool:
        """Consume the session exactly once: a second post of the link finds it used."""
        return await self._ctx.store.claim_session(
            record.session.session_id, provider_id=provider.id, now=self._ctx.clock())

    async def _save(self, record: SessionRecord, provider: Provider, values: dict[str, str],
                    connection: dict[str, str], label: str, known: list[str], now: datetime
                    ) -> KeySaved:
        ctx, session = self._ctx, record.session
        ident = owner_identity(session.owner, caller=_CALLER)
        secret = ManagedSecret(secret_id=str(uuid.uuid4()), provider_id=provider.id,
                               label=label, field_names=tuple(sorted(values)), created_at=now,
                               connection=connection)
        grant = Grant(
            grant_id=str(uuid.uuid4()), kind=GrantKind.MANAGED_SECRET,
            provider_id=provider.id, owner=session.owner, account_identifier=label,
            label=label, status=GrantStatus.ACTIVE, secret_id=secret.secret_id,
            created_at=now, updated_at=now, connection=dict(connection))
        detail = {"session_id": session.session_id, "secret_id": secret.secret_id}
        try:
            blob = ctx.envelope.seal_json(values, aad=secret_binding(secret.secret_id))
            await ctx.store.insert_secret_grant(secret, blob, key_id_of(blob), grant, audit=[
                ctx.audit.sealer(AuditEntry("secret.create", Outcome.ALLOWED, identity=ident,
                                            provider_id=provider.id, detail=detail), known),
                ctx.audit.sealer(AuditEntry(
                    "secret.grant", Outcome.ALLOWED, identity=ident, grant_id=grant.grant_id,
                    provider_id=provider.id, detail={**detail, "owner": session.owner.key}),
                    known)])
        except AlterError as exc:
            await ctx.store.finish_session(session.session_id, ConnectSessionStatus.FAILED,
                                           error=exc.code)
            await self._refused(exc, record, known)
            raise
        await ctx.store.finish_session(session.session_id, ConnectSessionStatus.COMPLETED,
                                       grant_ids=[grant.grant_id])
        return KeySaved(session.session_id, provider.id, provider.name, grant.grant_id, label)

    async def _refused(self, exc: AlterError, record: SessionRecord | None,
                       known: list[str]) -> None:
        session = record.session if record else None
        await self._ctx.audit.record(AuditEntry.failed(
            "connect.key", exc, reason=getattr(exc, "reason", None),
            identity=owner_identity(session.owner, caller=_CALLER) if session else None,
            detail={"session_id": session.session_id if session else None},
        ), known)


def _label(value: str | None, provider: Provider) -> str:
    text = " ".join((value or "").split())[:_LABEL_MAX]
    if not text:
        return f"{provider.name} key"
    if not text.isprintable():
        raise InvalidInputError("The label must be plain text.", field="label",
                                hint="Use letters, digits and spaces.")
    return text
