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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import httpx2

from alter_mcp import apikeys
from alter_mcp import identity as _identity
from alter_mcp.audit import AuditEntry, AuditLog, ChainReport
from alter_mcp.config import Settings, load_settings
from alter_mcp.crypto import Envelope, Keyring
from alter_mcp.errors import (
    AuditWriteError,
    AuthenticationError,
    ConfigurationError,
    GrantNotFoundError,
    InvalidInputError,
    PolicyViolationError,
    RequestSentUnauditedError,
    SecretNotFoundError,
    StoreError,
    VaultClosedError,
)
from alter_mcp.managed import secret_binding
from alter_mcp.models import (
    CallerType,
    Grant,
    GroupPrincipal,
    Identity,
    Principal,
    SystemPrincipal,
    UserPrincipal,
)
from alter_mcp.oauth.service import OAuthService
from alter_mcp.outbound import Outbound
from alter_mcp.policy import PolicyFile, Rule
from alter_mcp.providers import Catalog, load_catalog
from alter_mcp.proxy import OriginSlots, Sender, new_client
from alter_mcp.redaction import Secret
from alter_mcp.store import Store, open_store
from alter_mcp.store.base import PruneResult
from alter_mcp.tokens import TokenVerifier, VerifiedToken, verifier_from_settings
from alter_mcp.vault._action import Action
from alter_mcp.vault.keycheck import existing_keyring, keyring_loader, settle_keyring

__all__ = ["VaultBase", "secret_binding"]

T = TypeVar("T")

_SECRET_CACHE_SIZE = 1024


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Core:
    """What every identity-bound view of one vault shares: store, keys, catalogue, audit."""

    def __init__(
        self, settings: Settings, store: Store, keyring: Keyring | None, catalog: Catalog,
        clock: Callable[[], datetime], http: httpx2.AsyncClient | None = None, *,
        reload: Callable[[], Keyring] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        #: The keyring to check against the store at open; None: make one if the vault is new.
        self.keyring = keyring
        self.reload = reload
        self._envelope: Envelope | None = None
        self.catalog = catalog
        self.clock = clock
        self.audit = AuditLog(store, clock=clock)
        self.opened = False
        self.closed = False
        # Two first actions may race to open the vault lazily; one opens, the other waits.
        self.open_lock = anyio.Lock()
        self.jwt_verifier: TokenVerifier | None = None
        #: The verifier above was built on ``http`` by the vault (dropped when it closes).
        self.own_verifier = False
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

    def rules(self) -> Sequence[Rule]:
        """Return the current policy rules (reloaded if the policy file changed)."""
        return self.policy.rules() if self.policy is not None else ()

    @property
    def envelope(self) -> Envelope:
        """Return the envelope cipher, once open has checked its keyring against the store."""
        if self._envelope is None:
            raise StoreError("The vault is not open.", hint="Use the vault as `async with`.")
        return self._envelope

    async def open_keys(self) -> None:
        """Settle the keyring against the open store and build the envelope cipher."""
        # Checked at every open, with the keys a reload may have added: the database may have
        # changed while the vault was closed.
        held = self._envelope.keyring if self._envelope is not None else self.keyring
        self.keyring = await settle_keyring(self.store, self.settings, held)
        self._envelope = Envelope(self.keyring, reload=self.reload)
        # The audit head is signed with the keys just checked against this database.
        self.audit.use_keyring(self.keyring)


class VaultBase:
    """Construction, lifecycle and the helpers shared by every group of vault actions."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        api_key: str | None = None,
        caller: str | None = None,
        caller_type: CallerType = CallerType.AGENT,
        timeout: float | None = None,
        user_token_getter: _identity.TokenGetter | None = None,
        identity: _identity.IdentitySource | None = None,
        store: Store | None = None,
        keyring: Keyring | None = None,
        catalog: Catalog | None = None,
        clock: Callable[[], datetime] = _utcnow,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        """Build a vault; nothing is opened until ``open()``, ``async with`` or a first action.

        ``caller`` and ``caller_type`` name the software in the audit log. ``timeout`` (seconds)
        bounds each outbound request. The vault acts as the system principal unless given
        ``user_token_getter`` (a sync or async function returning the end user's JWT, verified
        on every action against ``ALTER_MCP_IDP_*``), ``api_key`` (an agent key, ``amk_…``) or
        ``identity`` (an :class:`Identity` or a function returning one); these exclude each
        other.
        """
        settings = settings or load_settings()
        if timeout is not None:
            settings = settings.model_copy(update={"request_timeout": _check_timeout(timeout)})
        # Arguments are checked before the keyring is read, so a refusal creates no key file.
        source = self._identity_from(identity, user_token_getter, api_key)
        # A getter's tokens can only be verified with an identity provider: say so now.
        if user_token_getter is not None:
            verifier_from_settings(settings)
        reload = None
        if keyring is None:
            reload = keyring_loader(settings)
            # A bad key setting fails here; a key file that does not exist yet is made at open,
            # and only if the store holds nothing (settle_keyring).
            keyring = existing_keyring(settings)
        self._core = _Core(
            settings,
            store or open_store(settings.resolved_database_url),
            keyring,
            catalog or load_catalog(settings.catalog),
            clock,
            http_client,
            reload=reload,
        )
        self._identity_source = source
        self.caller = caller
        self.caller_type = caller_type

    def _identity_from(
        self, identity: _identity.IdentitySource | None,
        user_token_getter: _identity.TokenGetter | None, api_key: str | None,
    ) -> _identity.IdentitySource | None:
        given = [name for name, value in (("identity", identity),
                                          ("user_token_getter", user_token_getter),
                                          ("api_key", api_key)) if value is not None]
        if len(given) > 1:
            raise InvalidInputError(
                f"{' and '.join(given)} cannot be combined: each one says who is calling.",
                field=given[-1],
                hint="An agent key acts as its agent and a user token as its user; build one "
                     "vault per identity (they may share settings).")
        if user_token_getter is not None:
            return _identity.token_source(user_token_getter, self._user_identity)
        if api_key is not None:
            return self._agent_source(api_key)
        return identity

    def _agent_source(self, api_key: str) -> _identity.IdentitySource:
        if not isinstance(api_key, str) or not apikeys.looks_like_key(api_key):
            raise InvalidInputError(
                "api_key is not an agent key. An embedded vault needs no app key: it runs in "
                "your process, with your database and master key.",
                field="api_key",
                hint="Drop api_key= to act as the system principal (or pass user_token_getter "
                     "to act as a user); pass an agent key (amk_…, from `alter-mcp keys "
                     "create`) only to act as that agent.")
        key = Secret(apikeys.check_shape(api_key))

        # Looked up on every action, so revoking the key stops this vault at once.
        async def source() -> Identity:
            return await self._agent_identity(key.reveal())

        return source

    async def _agent_identity(self, key: str) -> Identity:
        await self._ensure_open()
        record = await self._core.store.get_api_key_by_hash(
            apikeys.hash_key(apikeys.check_shape(key)))
        if record is None or record.revoked_at is not None:
            raise AuthenticationError(
                "The agent API key is unknown or revoked.",
                hint="Ask an operator for a new key (alter-mcp keys create NAME).",
                reason="invalid_api_key",
            )
        return apikeys.agent_identity(record)

    async def _verified_token(self, token: str) -> VerifiedToken:
        core = self._core
        # One verifier (and so one JWKS or introspection cache) per vault; views share it
        # through the core. It uses the vault's HTTP client: a client per introspection would
        # cost a new connection pool each time (bench/introspection.py).
        if core.jwt_verifier is None:
            core.jwt_verifier = verifier_from_settings(core.settings, http=core.http)
            core.own_verifier = True
        return await core.jwt_verifier.verify(token)

    async def _user_identity(self, token: str) -> Identity:
        identity = (await self._verified_token(token)).identity
        return identity.model_copy(update={"caller_type": self.caller_type})

    async def resolve_principal(self, principal: Principal) -> Principal:
        """Return ``principal`` as stored: a user's JWT verified, a group's ``idp_id`` mapped."""
        if isinstance(principal, UserPrincipal) and principal.user_token is not None:
            token = principal.user_token.get_secret_value()
            found = (await self._verified_token(token)).identity.principal
            assert isinstance(found, UserPrincipal)  # a verified token always names a user
            return UserPrincipal(issuer=found.issuer, subject=found.subject,
                                 label=principal.label)
        if isinstance(principal, GroupPrincipal) and principal.idp_id is not None:
            issuer = _identity.issuer_for_idp(principal.idp_id, self._core.settings)
            return GroupPrincipal(issuer=issuer, group=principal.group, label=principal.label)
        return principal

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
        """Open the store (applying migrations), check the keys against it, open the HTTP client."""
        core = self._core
        async with core.open_lock:
            if core.opened:
                return
            await core.store.open()
            try:
                await core.open_keys()
            except BaseException:
                await core.store.close()
                raise
            if core.http is None:
                core.http = httpx2.AsyncClient(timeout=core.settings.request_timeout,
                                               follow_redirects=False)
            core.oauth = OAuthService(
                settings=core.settings, store=core.store, envelope=core.envelope,
                audit=core.audit, clock=core.clock, http=core.http, lookup=core.catalog.get)
            # Provider APIs get their own pool: no redirects, no cookie jar shared by grants.
            core.api_http = new_client(timeout=core.settings.request_timeout,
                                       max_connections=core.settings.max_connections)
            sender = Sender(core.api_http, timeout=core.settings.request_timeout,
                            max_bytes=core.settings.response_max_bytes,
                            allow_insecure_http=core.settings.allow_insecure_http,
                            slots=OriginSlots(limit=core.settings.provider_max_connections,
                                              wait=core.settings.provider_pool_timeout))
            core.outbound = Outbound(
                store=core.store, catalog=core.catalog, audit=core.audit, sender=sender,
                clock=core.clock, allow_insecure_http=core.settings.allow_insecure_http,
                rules=core.rules)
            core.opened = True
            core.closed = False

    async def _ensure_open(self) -> None:
        """Open the vault on its first action; refuse every action after ``close()``."""
        core = self._core
        if not core.opened:
            if core.closed:
                raise VaultClosedError()
            await self.open()

    async def close(self) -> None:
        """Stop the connect listener, close the HTTP client the vault made, close the store.

        Closing twice is harmless; an action after ``close()`` raises ``VaultClosedError``.
        """
        core = self._core
        core.closed = True
        if core.own_verifier:
            # Its HTTP client (and token cache) go with this vault.
            core.jwt_verifier, core.own_verifier = None, False
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
        """Return the identity this call acts as (opening the vault on its first action)."""
        await self._ensure_open()
        return await _identity.resolve_identity(
            self._identity_source, caller=self.caller, caller_type=self.caller_type
        )

    # -- helpers shared by actions ---------------------------------------------------------
    async def _action(self, name: str, body: Callable[[Action], Awaitable[T]],
                      **facts: Any) -> T:
        """Identify the caller, run ``body``, and audit the outcome, allowed or denied."""
        ident = await self._identify(name, **facts)
        act = Action(self._core.audit, name, ident, facts)
        try:
            result = await body(act)
        except Exception as exc:
            await self._fail(name, exc, ident, secrets=act.secrets, **act.facts)
            raise
        if not act.audited:
            await self._core.audit.record(act.entry(), act.secrets)
        return result

    async def _identify(self, name: str, **facts: Any) -> Identity:
        """Return who calls action ``name``; a caller that cannot be identified is audited."""
        try:
            return await self.current_identity()
        except Exception as exc:
            # A vault that is closed, or could not open (a wrong key, no database), has no
            # log to write to: its own error says what to fix.
            if self._core.opened:
                await self._fail(name, exc, None, **facts)
            raise

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
            if self._core.closed:
                raise VaultClosedError()
            raise StoreError("The vault is not open.", hint="Call `await vault.open()` first.")
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
        await self._ensure_open()
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


def _check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
            0 < timeout <= 600):
        raise InvalidInputError("timeout must be a number of seconds above 0 and at most 600.",
                                field="timeout", hint="Use e.g. timeout=30.0.")
    return float(timeout)


def _safe_id(value: object) -> str | None:
    text = str(value) if value is not None else None
    return text[:200] if text else None
