"""``AlterVault``: the async facade with one method per user action.

Every action runs in the same order: identify the caller, resolve the grant, check it may be
used, act, and write the audit event before answering (in the same transaction as any change
it makes). Errors are typed; none carries a secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets as _secrets
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import httpx2

from alter_mcp import identity as _identity
from alter_mcp import managed as admin
from alter_mcp.audit import AuditEntry, AuditLog, ChainReport
from alter_mcp.config import Settings, load_settings
from alter_mcp.crypto import Envelope, Keyring, RecordBinding, key_id_of, load_keyring
from alter_mcp.errors import (
    AlterError,
    AuthenticationError,
    GrantNotFoundError,
    InvalidInputError,
    PolicyViolationError,
    SecretNotFoundError,
    StoreError,
)
from alter_mcp.models import (
    ApiKeyRecord,
    CallerType,
    ConnectSession,
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
from alter_mcp.oauth.clients import OAuthClientInfo
from alter_mcp.oauth.service import OAuthService, Opener
from alter_mcp.oauth.sessions import ConnectLink, ConnectResult
from alter_mcp.outbound import Approver, Outbound, RequestResult
from alter_mcp.policy import PolicyFile, Rule
from alter_mcp.providers import Catalog, load_catalog
from alter_mcp.proxy import Sender, new_client
from alter_mcp.redaction import Secret
from alter_mcp.store import Store, open_store

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from alter_mcp.login import AuthResult
    from alter_mcp.tokens import JwtVerifier, VerifiedToken

__all__ = ["AlterVault"]

_MAX_PAGE = 200
_SECRET_CACHE_SIZE = 1024
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
        http_client: httpx2.AsyncClient | None = None,
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
            http_client,
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

    # -- OAuth connect ----------------------------------------------------------------------
    @property
    def _oauth(self) -> OAuthService:
        if self._core.oauth is None:
            raise StoreError("The vault is not open.", hint="Use the vault as `async with`.")
        return self._core.oauth

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
        if self._core.outbound is None:
            raise StoreError("The vault is not open.", hint="Use the vault as `async with`.")
        return await self._core.outbound.request(
            await self.current_identity(), method, url, credential=self._credential_for,
            repair_link=self._oauth.repair_link, grant_id=grant_id, provider=provider,
            account=account, json=json, body=body, extra_headers=extra_headers,
            query_params=query_params, path_params=path_params, reason=reason,
            timeout=timeout, approver=approver)

    async def _credential_for(
        self, grant: Grant, *, force_refresh: bool = False
    ) -> dict[str, Secret]:
        """Return the grant's credential fields, refreshing an OAuth token first if due."""
        if grant.status is GrantStatus.REVOKED:
            raise GrantNotFoundError(f"Grant {grant.grant_id} is revoked.",
                                     grant_id=grant.grant_id)
        if grant.kind is GrantKind.MANAGED_SECRET:
            if grant.secret_id is None:
                raise GrantNotFoundError(grant_id=grant.grant_id)
            return await self._secret_values(grant.secret_id)
        tokens = await self._oauth.credential(grant, force=force_refresh,
                                              identity=await self.current_identity())
        fields = {"access_token": tokens.access_token}
        fields.update((name, Secret(value)) for name, value in tokens.extras.items())
        return fields

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
        blob = found[1]
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
        """Walk the audit hash chain and report the first broken link, if any."""
        return await self._core.audit.verify()

    @property
    def audit_log(self) -> AuditLog:
        """Return the audit log (events, export, verification)."""
        return self._core.audit

    def new_token(self, nbytes: int = 32) -> str:
        """Return a fresh URL-safe random token."""
        return _secrets.token_urlsafe(nbytes)

    # -- agent API keys and identity (server) -----------------------------------------------
    async def create_api_key(self, name: str) -> tuple[ApiKeyRecord, Secret]:
        """Create an agent API key (operators only); the key itself is returned once only."""
        from alter_mcp import apikeys

        ident = await self.current_identity()
        try:
            self._require_admin(ident, "create agent API keys")
            record, key = apikeys.new_key(name, now=self._core.clock())
            entry = AuditEntry("apikey.create", Outcome.ALLOWED, identity=ident, detail={
                "key_id": record.key_id, "name": record.name, "prefix": record.prefix})
            await self._core.store.insert_api_key(
                record, audit=self._core.audit.sealer(entry, [key]))
        except AlterError as exc:
            await self._fail("apikey.create", exc, ident)
            raise
        return record, key

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """Return every agent API key's record: name, prefix, dates; never a key (operators)."""
        ident = await self.current_identity()
        try:
            self._require_admin(ident, "list agent API keys")
            found = await self._core.store.list_api_keys()
        except AlterError as exc:
            await self._fail("apikey.list", exc, ident)
            raise
        await self._core.audit.record(AuditEntry("apikey.list", Outcome.ALLOWED, identity=ident,
                                                 detail={"count": len(found)}))
        return found

    async def revoke_api_key(self, key_id: str) -> None:
        """Revoke an agent API key at once (operators only); its next request is refused."""
        ident = await self.current_identity()
        try:
            self._require_admin(ident, "revoke agent API keys")
            entry = AuditEntry("apikey.revoke", Outcome.ALLOWED, identity=ident,
                               detail={"key_id": _safe_id(key_id)})
            done = await self._core.store.revoke_api_key(
                str(key_id), self._core.clock(), audit=self._core.audit.sealer(entry))
            if not done:
                raise InvalidInputError(f"No active API key {str(key_id)[:64]!r}.",
                                        field="key_id",
                                        hint="List the keys with `alter-mcp keys list`.")
        except AlterError as exc:
            await self._fail("apikey.revoke", exc, ident, detail={"key_id": _safe_id(key_id)})
            raise

    async def authenticate_api_key(self, key: str) -> Identity:
        """Return the agent identity of a presented key, or raise ``AuthenticationError``."""
        from alter_mcp import apikeys

        record = await self._core.store.get_api_key_by_hash(
            apikeys.hash_key(apikeys.check_shape(key)))
        if record is None or record.revoked_at is not None:
            raise AuthenticationError(
                "The agent API key is unknown or revoked.",
                hint="Ask an operator for a new key (alter-mcp keys create NAME).",
                reason="invalid_api_key",
            )
        return apikeys.agent_identity(record)

    async def verify_user_token(self, token: str) -> VerifiedToken:
        """Verify an end user's JWT against the configured identity provider."""
        from alter_mcp.tokens import JwtVerifier

        # One verifier (and so one JWKS cache) per vault; views share it through the core.
        verifier = getattr(self._core, "jwt_verifier", None)
        if verifier is None:
            verifier = JwtVerifier.from_settings(self._core.settings)
            self._core.jwt_verifier = verifier  # type: ignore[attr-defined]
        result: VerifiedToken = await verifier.verify(token)
        return result

    def use_jwt_verifier(self, verifier: JwtVerifier) -> None:
        """Verify user tokens with ``verifier`` (e.g. one with an injected HTTP client)."""
        self._core.jwt_verifier = verifier  # type: ignore[attr-defined]

    async def authenticate(
        self, *, open_browser: bool | Callable[[str], Any] = True,
        timeout: float = 300.0,  # noqa: ASYNC109 - the documented SDK parameter
        reuse: bool = True,
    ) -> AuthResult:
        """Sign the user in with the identity provider in a browser; act as them from now on.

        Overrides any identity source given at construction. With ``reuse`` a cached,
        still-refreshable login (sealed in the data directory) is used without a browser.
        """
        from alter_mcp.login import BrowserLogin

        login = BrowserLogin(settings=self._core.settings, envelope=self._core.envelope)
        result = await login.restore() if reuse else None
        if result is None:
            result = await login.run(open_browser, limit=timeout)
        self._identity_source = login.identity
        return result

    async def configured_providers(self) -> frozenset[str]:
        """Return the ids of providers with an OAuth client on this deployment."""
        stored = await self._core.store.list_provider_configs()
        return frozenset(self._core.settings.providers) | {r.provider_id for r in stored}


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
