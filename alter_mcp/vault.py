"""``AlterVault``: the async facade with one method per user action.

Every action runs in the same order: identify the caller, resolve the grant, check it may be
used, act, and write the audit event before answering (in the same transaction as any change
it makes). Errors are typed; none carries a secret.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets as _secrets
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from alter_mcp import identity as _identity
from alter_mcp import managed as admin
from alter_mcp.audit import AuditEntry, AuditLog, ChainReport
from alter_mcp.config import Settings, load_settings
from alter_mcp.crypto import Envelope, Keyring, RecordBinding, key_id_of, load_keyring
from alter_mcp.errors import (
    AlterError,
    GrantNotFoundError,
    InvalidInputError,
    PolicyViolationError,
    SecretNotFoundError,
)
from alter_mcp.models import (
    CallerType,
    Grant,
    GrantKind,
    GrantPage,
    GrantStatus,
    Identity,
    ManagedSecret,
    Outcome,
    Principal,
    RevokeResult,
    SystemPrincipal,
)
from alter_mcp.providers import Catalog, load_catalog
from alter_mcp.redaction import Secret
from alter_mcp.store import Store, open_store

__all__ = ["AlterVault"]

_MAX_PAGE = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def secret_binding(secret_id: str) -> RecordBinding:
    """Return the encryption binding of a managed secret's fields."""
    return RecordBinding("managed_secrets", secret_id, "fields")


class _Core:
    """What every identity-bound view of one vault shares: store, keys, catalogue, audit."""

    def __init__(
        self, settings: Settings, store: Store, envelope: Envelope, catalog: Catalog,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.store = store
        self.envelope = envelope
        self.catalog = catalog
        self.clock = clock
        self.audit = AuditLog(store, clock=clock)
        self.opened = False
        self.views = 0


class AlterVault:
    """The embedded credential vault: grants, secrets and audit, scoped to the caller."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        keyring: Keyring | None = None,
        catalog: Catalog | None = None,
        caller: str | None = None,
        caller_type: CallerType = CallerType.AGENT,
        identity: _identity.IdentitySource | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        settings = settings or load_settings()
        keyring = keyring or load_keyring(
            master_key=settings.master_key.get_secret_value() if settings.master_key else None,
            previous_keys=[
                k.strip() for k in (settings.previous_keys.get_secret_value()
                                    if settings.previous_keys else "").split(",") if k.strip()
            ],
            key_file=settings.resolved_key_file,
        )
        self._core = _Core(
            settings,
            store or open_store(settings.resolved_database_url),
            Envelope(keyring),
            catalog or load_catalog(settings.catalog),
            clock,
        )
        self._identity_source = identity
        self.caller = caller
        self.caller_type = caller_type

    @classmethod
    def _view(cls, core: _Core, source: _identity.IdentitySource, caller: str | None,
              caller_type: CallerType) -> AlterVault:
        view = cls.__new__(cls)
        view._core = core
        view._identity_source = source
        view.caller = caller
        view.caller_type = caller_type
        return view

    def with_identity(self, identity: _identity.IdentitySource) -> AlterVault:
        """Return a view of this vault that acts as ``identity`` (shares store and keys)."""
        return AlterVault._view(self._core, identity, self.caller, self.caller_type)

    def __repr__(self) -> str:
        return f"AlterVault(store={self._core.store!r}, caller={self.caller!r})"

    # -- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        """Open the store (applying migrations)."""
        if not self._core.opened:
            await self._core.store.open()
            self._core.opened = True

    async def close(self) -> None:
        """Close the store."""
        if self._core.opened:
            await self._core.store.close()
            self._core.opened = False

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def settings(self) -> Settings:
        """Return the settings this vault runs with."""
        return self._core.settings

    @property
    def catalog(self) -> Catalog:
        """Return the provider catalogue."""
        return self._core.catalog

    @property
    def store(self) -> Store:
        """Return the store (for administration and tests)."""
        return self._core.store

    @property
    def envelope(self) -> Envelope:
        """Return the envelope cipher bound to the current keyring."""
        return self._core.envelope

    async def current_identity(self) -> Identity:
        """Return the identity this call acts as."""
        return await _identity.resolve_identity(
            self._identity_source, caller=self.caller, caller_type=self.caller_type
        )

    # -- helpers shared by actions ---------------------------------------------------------
    async def _fail(self, action: str, exc: BaseException, ident: Identity | None,
                    **facts: Any) -> None:
        await self._core.audit.record(AuditEntry.failed(action, exc, identity=ident, **facts))

    async def _usable_grant(self, ident: Identity, grant_id: str) -> Grant:
        if not isinstance(grant_id, str) or not grant_id.strip():
            raise InvalidInputError("grant_id is empty.", field="grant_id",
                                    hint="Pass a grant id from list_grants.")
        grant = await self._core.store.get_grant(grant_id)
        if grant is None or not _identity.can_use(ident, grant):
            raise GrantNotFoundError(
                f"No grant {grant_id!r} is available to this caller.",
                grant_id=grant_id,
                hint="Call list_grants to see the grants you can use.",
            )
        return grant

    def _require_admin(self, ident: Identity, action: str) -> None:
        if not isinstance(ident.principal, SystemPrincipal):
            raise PolicyViolationError(
                f"Only the system principal (an operator) may {action}.",
                rule="admin_only",
            )

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

    async def revoke_grant(self, grant_id: str, *, reason: str | None = None) -> RevokeResult:
        """Revoke one of the caller's grants: delete its credential and mark it revoked."""
        ident = await self.current_identity()
        try:
            grant = await self._usable_grant(ident, grant_id)
            if grant.status is GrantStatus.REVOKED:
                raise GrantNotFoundError(f"Grant {grant_id!r} is already revoked.",
                                         grant_id=grant_id)
            revoked_at = self._core.clock()
            entry = AuditEntry(
                "grant.revoke", Outcome.ALLOWED, identity=ident, grant_id=grant.grant_id,
                provider_id=grant.provider_id, reason=reason,
                detail={"provider_revocation": "not_applicable"},
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
                            provider_revocation="not_applicable")

    # -- managed secrets --------------------------------------------------------------------
    async def create_managed_secret(
        self, provider_id: str, fields: Mapping[str, str], *, label: str
    ) -> ManagedSecret:
        """Store a developer-owned credential (API key, basic pair, AWS keys) encrypted."""
        ident = await self.current_identity()
        try:
            self._require_admin(ident, "create managed secrets")
            provider = self._core.catalog.get(provider_id)
            values = admin.validate_secret_fields(provider, fields)
            if not isinstance(label, str) or not label.strip() or _CONTROL.search(label):
                raise InvalidInputError("label must be a non-empty single line.", field="label")
            secret = ManagedSecret(
                secret_id=str(uuid.uuid4()), provider_id=provider.id, label=label.strip(),
                field_names=tuple(sorted(values)), created_at=self._core.clock(),
            )
            blob = self._core.envelope.seal_json(values, aad=secret_binding(secret.secret_id))
            entry = AuditEntry("secret.create", Outcome.ALLOWED, identity=ident,
                               provider_id=provider.id, detail={"secret_id": secret.secret_id})
            await self._core.store.insert_secret(
                secret, blob, key_id_of(blob),
                audit=self._core.audit.sealer(entry, values.values()),
            )
        except AlterError as exc:
            await self._fail("secret.create", exc, ident, provider_id=_safe_id(provider_id),
                             detail={}, )
            raise
        return secret

    async def list_managed_secrets(self) -> list[ManagedSecret]:
        """Return every managed secret's metadata (operators only)."""
        ident = await self.current_identity()
        try:
            self._require_admin(ident, "list managed secrets")
            found = await self._core.store.list_secrets()
        except AlterError as exc:
            await self._fail("secret.list", exc, ident)
            raise
        await self._core.audit.record(AuditEntry("secret.list", Outcome.ALLOWED, identity=ident,
                                                 detail={"count": len(found)}))
        return found

    async def create_managed_secret_grant(
        self, secret_id: str, *, principal: Principal, label: str | None = None
    ) -> Grant:
        """Let ``principal`` (a user, group or the system) use a managed secret."""
        ident = await self.current_identity()
        try:
            self._require_admin(ident, "grant managed secrets")
            found = await self._core.store.get_secret(secret_id)
            if found is None:
                raise SecretNotFoundError(secret_id)
            secret, _ = found
            admin.check_grant_principal(principal, label)
            now = self._core.clock()
            grant = Grant(
                grant_id=str(uuid.uuid4()), kind=GrantKind.MANAGED_SECRET,
                provider_id=secret.provider_id, owner=principal,
                account_identifier=secret.label, label=label or principal.label or secret.label,
                status=GrantStatus.ACTIVE, secret_id=secret.secret_id, created_at=now,
                updated_at=now,
            )
            entry = AuditEntry("secret.grant", Outcome.ALLOWED, identity=ident,
                               grant_id=grant.grant_id, provider_id=grant.provider_id,
                               detail={"secret_id": secret.secret_id, "owner": principal.key})
            await self._core.store.insert_grant(grant, None,
                                                audit=self._core.audit.sealer(entry))
        except AlterError as exc:
            await self._fail("secret.grant", exc, ident, detail={"secret_id": _safe_id(secret_id)})
            raise
        return grant

    async def _secret_values(self, secret_id: str) -> dict[str, Secret]:
        found = await self._core.store.get_secret(secret_id)
        if found is None:
            raise SecretNotFoundError(secret_id)
        data = self._core.envelope.open_json(found[1], aad=secret_binding(secret_id))
        return {name: Secret(str(value)) for name, value in data.items()}

    # -- audit ------------------------------------------------------------------------------
    async def verify_audit(self) -> ChainReport:
        """Walk the audit hash chain and report the first broken link, if any."""
        return await self._core.audit.verify()

    @property
    def audit_log(self) -> AuditLog:
        """Return the audit log (events, export, verification)."""
        return self._core.audit

    def new_token(self, nbytes: int = 32) -> str:
        """Return a fresh URL-safe random token."""
        return _secrets.token_urlsafe(nbytes)


def _safe_id(value: object) -> str | None:
    text = str(value) if value is not None else None
    return text[:200] if text else None


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
