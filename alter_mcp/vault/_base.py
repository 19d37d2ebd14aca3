"""The vault's shared core and the base every group of actions builds on.

Every public action runs through :meth:`VaultBase._action`, in the same order: identify the
caller, resolve the grant, check it may be used, act, and write the audit event before
answering (in the same transaction as any change it makes), denied or failed actions too.
Errors are typed; none carries a secret.
"""

from __future__ import annotations

import hashlib
import secrets as _secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx2

from alter_mcp import identity as _identity
from alter_mcp.audit import AuditEntry, AuditLog, ChainReport
from alter_mcp.config import Settings, load_settings
from alter_mcp.crypto import Envelope, Keyring, RecordBinding, load_keyring_for
from alter_mcp.errors import (
    AuditWriteError,
    ConfigurationError,
    GrantNotFoundError,
    InvalidInputError,
    PolicyViolationError,
    RequestSentUnauditedError,
    SecretNotFoundError,
    StoreError,
)
from alter_mcp.models import (
    CallerType,
    Grant,
    Identity,
    SystemPrincipal,
)
from alter_mcp.oauth.service import OAuthService
from alter_mcp.outbound import Outbound
from alter_mcp.policy import PolicyFile, Rule
from alter_mcp.providers import Catalog, load_catalog
from alter_mcp.proxy import Sender, new_client
from alter_mcp.redaction import Secret
from alter_mcp.store import Store, open_store
from alter_mcp.store.base import PruneResult
from alter_mcp.vault._action import Action

__all__ = ["VaultBase", "secret_binding"]

T = TypeVar("T")

_SECRET_CACHE_SIZE = 1024


def _utcnow() -> datetime:
    return datetime.now(UTC)


def secret_binding(secret_id: str) -> RecordBinding:
    """Return the encryption binding of a managed secret's fields."""
    return RecordBinding("managed_secrets", secret_id, "fields")


class _Core:
    """What every identity-bound view of one vault shares: store, keys, catalogue, audit."""

    def __init__(
        self, settings: Settings, store: Store, envelope: Envelope, catalog: Catalog,
        clock: Callable[[], datetime], http: httpx2.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.envelope = envelope
        self.catalog = catalog
        self.clock = clock
        self.audit = AuditLog(store, clock=clock)
        self.opened = False
        self.views = 0
        # An injected client is the caller's to close; the default one is the vault's.
        self.http = http
        self.owns_http = http is None
        self.oauth: OAuthService | None = None
        self.outbound: Outbound | None = None
        #: Decrypted managed secrets by (secret id, ciphertext digest); the key-encryption key
        #: is in this process's memory anyway, so this adds no new exposure, only speed.
        self.secret_cache: OrderedDict[tuple[str, bytes], dict[str, Secret]] = OrderedDict()
        self.api_http: httpx2.AsyncClient | None = None
        self.policy = PolicyFile(settings.policy_file) if settings.policy_file else None

    def rules(self) -> tuple[Rule, ...]:
        """Return the current policy rules (reloaded if the policy file changed)."""
        return self.policy.rules() if self.policy is not None else ()



class VaultBase:
    """Construction, lifecycle and the helpers shared by every group of vault actions."""

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
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        settings = settings or load_settings()
        keyring = keyring or load_keyring_for(settings)
        self._core = _Core(
            settings,
            store or open_store(settings.resolved_database_url),
            Envelope(keyring),
            catalog or load_catalog(settings.catalog),
            clock,
            http_client,
        )
        self._identity_source = identity
        self.caller = caller
        self.caller_type = caller_type

    @classmethod
    def _view(cls, core: _Core, source: _identity.IdentitySource, caller: str | None,
              caller_type: CallerType) -> Self:
        view = cls.__new__(cls)
        view._core = core
        view._identity_source = source
        view.caller = caller
        view.caller_type = caller_type
        return view

    def with_identity(self, identity: _identity.IdentitySource) -> Self:
        """Return a view of this vault that acts as ``identity`` (shares store and keys)."""
        return type(self)._view(self._core, identity, self.caller, self.caller_type)
    def __repr__(self) -> str:
        return f"AlterVault(store={self._core.store!r}, caller={self.caller!r})"

    # -- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        """Open the store (applying migrations) and the outbound HTTP client."""
        core = self._core
        if not core.opened:
            await core.store.open()
            if core.http is None:
                core.http = httpx2.AsyncClient(timeout=core.settings.request_timeout,
                                               follow_redirects=False)
            core.oauth = OAuthService(
                settings=core.settings, store=core.store, envelope=core.envelope,
                audit=core.audit, clock=core.clock, http=core.http, lookup=core.catalog.get)
            # Provider APIs get their own pool: no redirects, no cookie jar shared by grants.
            core.api_http = new_client(timeout=core.settings.request_timeout)
            sender = Sender(core.api_http, timeout=core.settings.request_timeout,
                            max_bytes=core.settings.response_max_bytes,
                            allow_insecure_http=core.settings.allow_insecure_http)
            core.outbound = Outbound(
                store=core.store, catalog=core.catalog, audit=core.audit, sender=sender,
                clock=core.clock, allow_insecure_http=core.settings.allow_insecure_http,
                rules=core.rules)
            core.opened = True

    async def close(self) -> None:
        """Stop the connect listener, close the HTTP client the vault made, close the store."""
        core = self._core
        if core.opened:
            core.opened = False
            if core.oauth is not None:
                await core.oauth.aclose()
                core.oauth = None
            if core.owns_http and core.http is not None:
                await core.http.aclose()
                core.http = None
            if core.api_http is not None:
                await core.api_http.aclose()
                core.api_http = None
            core.outbound = None
            await core.store.close()

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
    async def _action(self, name: str, body: Callable[[Action], Awaitable[T]],
                      **facts: Any) -> T:
        """Identify the caller, run ``body``, and audit the outcome, allowed or denied."""
        try:
            ident = await self.current_identity()
        except Exception as exc:
            await self._fail(name, exc, None, **facts)
            raise
        act = Action(self._core.audit, name, ident, facts)
        try:
            result = await body(act)
        except Exception as exc:
            await self._fail(name, exc, ident, secrets=act.secrets, **act.facts)
            raise
        if not act.audited:
            await self._core.audit.record(act.entry(), act.secrets)
        return result

    async def _fail(self, action: str, exc: BaseException, ident: Identity | None, *,
                    secrets: Iterable[str | Secret] = (), **facts: Any) -> None:
        try:
            await self._core.audit.record(
                AuditEntry.failed(action, exc, identity=ident, **facts), secrets)
        except AuditWriteError:
            # An error that already says what the audit failure means (nothing sent, or sent
            # but not recorded) must reach the caller unchanged.
            if isinstance(exc, AuditWriteError | RequestSentUnauditedError):
                raise exc from None
            raise

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

    # -- OAuth connect ----------------------------------------------------------------------
    @property
    def _oauth(self) -> OAuthService:
        if self._core.oauth is None:
            raise StoreError("The vault is not open.", hint="Use the vault as `async with`.")
        return self._core.oauth

    async def _secret_values(self, secret_id: str) -> dict[str, Secret]:
        blob = await self._core.store.get_secret_blob(secret_id)
        if blob is None:
            raise SecretNotFoundError(secret_id)
        # Managed secrets are immutable rows: the ciphertext's digest identifies the plaintext.
        key = (secret_id, hashlib.sha256(blob).digest())
        cached = self._core.secret_cache.get(key)
        if cached is not None:
            self._core.secret_cache.move_to_end(key)
            return dict(cached)
        data = self._core.envelope.open_json(blob, aad=secret_binding(secret_id))
        values = {name: Secret(str(value)) for name, value in data.items()}
        self._core.secret_cache[key] = values
        while len(self._core.secret_cache) > _SECRET_CACHE_SIZE:
            self._core.secret_cache.popitem(last=False)
        return dict(values)

    # -- audit ------------------------------------------------------------------------------
    async def verify_audit(self) -> ChainReport:
        """Walk the audit hash chain (from its signed checkpoint) and report the first break."""
        return await self._core.audit.verify(keyring=self._core.envelope.keyring)

    async def prune_audit(self, older_than: timedelta | datetime | None = None) -> PruneResult:
        """Delete audit events older than the retention behind a signed checkpoint (operators)."""
        async def act(action: Action) -> PruneResult:
            self._require_admin(action.identity, "prune the audit log")
            cutoff = older_than
            if cutoff is None:
                days = self._core.settings.audit_retention_days
                if days is None:
                    raise ConfigurationError(
                        "No audit retention is configured.",
                        setting="ALTER_MCP_AUDIT_RETENTION_DAYS",
                        hint="Set ALTER_MCP_AUDIT_RETENTION_DAYS (in days), or pass older_than"
                             " (alter-mcp audit prune --older-than-days N).")
                cutoff = timedelta(days=days)
            action.audited_by_callee()  # the prune's own transaction writes "audit.prune"
            return await self._core.audit.prune(
                cutoff, keyring=self._core.envelope.keyring, identity=action.identity)

        return await self._action("audit.prune", act)

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
