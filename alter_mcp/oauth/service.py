"""The vault's OAuth machinery in one object: sessions, the connect flow, refresh, revocation.

``AlterVault`` owns one :class:`OAuthService` and delegates to it; the service writes the
audit event of every step it performs (failures of the vault's own checks are audited there).
"""

from __future__ import annotations

import inspect
import re
import sys
import webbrowser
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread
import httpx2

from alter_mcp import identity as _identity
from alter_mcp.audit import AuditEntry, AuditLog
from alter_mcp.config import Settings
from alter_mcp.crypto import Envelope
from alter_mcp.errors import (
    AlterError,
    ConfigurationError,
    ConnectFlowError,
    GrantNotFoundError,
    InvalidInputError,
    ReAuthRequiredError,
    ScopeReauthRequiredError,
    format_seconds,
)
from alter_mcp.models import (
    ConnectSession,
    ConnectSessionStatus,
    Grant,
    GrantKind,
    GrantStatus,
    Identity,
    Outcome,
    Principal,
)
from alter_mcp.oauth.client import OAuthHttp
from alter_mcp.oauth.clients import (
    OAuthClientInfo,
    configured_scopes,
    provider_config_record,
    validate_scopes,
)
from alter_mcp.oauth.context import OAuthContext, ProviderLookup, owner_identity
from alter_mcp.oauth.flow import ConnectFlow
from alter_mcp.oauth.refresh import RefreshCoordinator
from alter_mcp.oauth.sessions import (
    ConnectLink,
    check_return_url,
    new_session,
    refuse,
    session_status,
)
from alter_mcp.oauth.tokens import TokenSet, open_credential
from alter_mcp.store import Store

if TYPE_CHECKING:
    from datetime import datetime

    from starlette.applications import Starlette

    from alter_mcp.oauth.loopback import LoopbackServer

__all__ = ["OAuthService", "Opener"]

#: How headless connect shows the URL: open a browser, print it, or call this function.
Opener = bool | Callable[[str], Awaitable[Any] | None]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_POLL = 0.5
_REPAIR_MARGIN = timedelta(seconds=60)


class OAuthService:
    """Run connect sessions, serve their pages, and keep grants' tokens fresh."""

    def __init__(
        self, *, settings: Settings, store: Store, envelope: Envelope, audit: AuditLog,
        clock: Callable[[], datetime], http: httpx2.AsyncClient, lookup: ProviderLookup,
    ) -> None:
        self.ctx = OAuthContext(settings, store, envelope, audit, clock,
                                OAuthHttp(http, timeout=settings.request_timeout), lookup)
        self.flow = ConnectFlow(self.ctx, base_url=self.base_url, notify=self._notify)
        self.refresher = RefreshCoordinator(
            store=store, envelope=envelope, oauth=self.ctx.oauth, audit=audit, clock=clock,
            leeway=settings.refresh_leeway, wait=settings.refresh_wait,
            lease_ttl=settings.request_timeout + 5.0, repair_link=self.repair_link)
        self._loopback: LoopbackServer | None = None
        self._loopback_lock = anyio.Lock()
        self._events: dict[str, anyio.Event] = {}
        self._denials: dict[str, ConnectFlowError] = {}
        self._repairs: dict[tuple[str, tuple[str, ...]], ConnectLink] = {}

    async def aclose(self) -> None:
        """Stop the loopback listener if one was started."""
        if self._loopback is not None:
            await self._loopback.stop()
            self._loopback = None

    # -- where the pages live ---------------------------------------------------------------
    async def base_url(self) -> str:
        """Return the base URL of the connect pages, starting the loopback listener if needed."""
        if self.ctx.settings.public_url:
            return self.ctx.settings.public_url.rstrip("/")
        async with self._loopback_lock:
            if self._loopback is None or not self._loopback.running:
                from alter_mcp.oauth.loopback import LoopbackServer, PortInUseError

                port = self.ctx.settings.connect_port
                server = LoopbackServer(self._loopback_app(), port=port)
                try:
                    await server.start()
                except PortInUseError:
                    # Another process of this vault (Claude Desktop beside an IDE, or the
                    # CLI beside a server) may serve the pages there; sessions live in the
                    # shared store, so its pages finish ours. Try binding again next time.
                    return await self._shared_loopback(port)
                self._loopback = server
            return self._loopback.url

    def _loopback_app(self) -> Starlette:
        from alter_mcp.oauth.peer import peer_route

        app = self.connect_app()
        app.router.routes.append(peer_route(self.ctx.envelope.keyring,
                                            self.ctx.settings.resolved_database_url))
        return app

    async def _shared_loopback(self, port: int) -> str:
        from alter_mcp.oauth.peer import same_vault_at

        url = f"http://127.0.0.1:{port}"
        if await same_vault_at(url, self.ctx.envelope.keyring,
                               self.ctx.settings.resolved_database_url):
            return url
        raise ConfigurationError(
            f"Port {port} on 127.0.0.1, where the connect pages are served, is held by "
            "another program (not a process of this vault), so the connect link cannot be "
            "served.", setting="ALTER_MCP_CONNECT_PORT",
            hint=f"Stop the program on port {port}, or set ALTER_MCP_CONNECT_PORT to a free "
                 "port and register http://127.0.0.1:PORT/oauth/callback as the redirect URI "
                 "at your providers.")

    def connect_app(self) -> Starlette:
        """Return the Starlette app of the connect pages (for the HTTP server to mount)."""
        from alter_mcp.oauth.routes import build_connect_app

        public = self.ctx.settings.public_url
        return build_connect_app(self.flow, secure_cookies=bool(public and public.startswith(
            "https://")))

    # -- sessions ----------------------------------------------------------------------------
    async def create_session(
        self, identity: Identity, *, providers: Sequence[str] | None, scopes: object = None,
        account_hint: object = None, repair_grant_id: str | None = None,
        return_url: object = None,
    ) -> ConnectLink:
        """Create a connect session owned by the caller and return its link."""
        extra = validate_scopes(scopes, field="scopes")
        hint = _account_hint(account_hint)
        back = check_return_url(return_url)
        allowed = await self._allowed(identity, providers, repair_grant_id)
        keyed = [p for p in allowed if not self.ctx.lookup(p).is_oauth]
        if extra and keyed:
            raise InvalidInputError(
                f"scopes apply to OAuth providers only, and {keyed[0]!r} uses a key.",
                field="scopes", hint="Connect key-based providers without scopes.")
        return await self._open_session(identity, identity.principal, allowed, extra, hint,
                                        repair_grant_id, back)

    async def repair_link(self, grant: Grant, scopes: Sequence[str]) -> str:
        """Return a link re-authorizing ``grant`` in place (one session per grant at a time)."""
        key = (grant.grant_id, tuple(scopes))
        cached = self._repairs.get(key)
        if cached is not None:
            record = await self.ctx.store.get_session(cached.session_id)
            # Reused only while it can still be finished comfortably.
            if record is not None and session_status(
                    record.session, self.ctx.clock() + _REPAIR_MARGIN
            ) is ConnectSessionStatus.PENDING:
                return cached.connect_url
        ident = owner_identity(grant.owner, caller="vault")
        # No login hint: an account identifier (an id, a login) is not always a valid hint;
        # signing in with another account is refused at the callback.
        link = await self._open_session(ident, grant.owner, (grant.provider_id,), tuple(scopes),
                                        None, grant.grant_id, None)
        self._repairs[key] = link
        return link.connect_url

    async def _allowed(self, identity: Identity, providers: Sequence[str] | None,
                       repair_grant_id: str | None) -> tuple[str, ...]:
        if repair_grant_id is not None:
            grant = await self.ctx.store.get_grant(str(repair_grant_id))
            if (grant is None or not _identity.can_use(identity, grant)
                    or grant.kind is not GrantKind.OAUTH or grant.status is GrantStatus.REVOKED):
                raise GrantNotFoundError(
                    f"No grant {str(repair_grant_id)[:80]!r} can be re-authorized by this "
                    "caller.", grant_id=str(repair_grant_id)[:80],
                    hint="Call list_grants to see your OAuth grants.")
            if providers is not None and list(providers) != [grant.provider_id]:
                raise InvalidInputError(
                    "A repair session re-authorizes one grant, so allowed_providers must be "
                    f"[{grant.provider_id!r}] or omitted.", field="allowed_providers")
            providers = [grant.provider_id]
        if (providers is None or isinstance(providers, str) or not providers
                or not all(isinstance(p, str) for p in providers)):
            raise InvalidInputError("allowed_providers must be a non-empty list of provider ids.",
                                    field="allowed_providers",
                                    hint="Read providers://catalog for the OAuth providers.")
        unique = tuple(dict.fromkeys(providers))
        for provider_id in unique:
            provider = self.ctx.lookup(provider_id)
            if provider.is_oauth:
                await self.ctx.client_for(provider)  # fail now, not on the user's page
            elif not provider.secret_fields:
                raise InvalidInputError(
                    f"Provider {provider_id!r} has no fields a user could paste.",
                    field="allowed_providers", hint="Pick another provider.")
        return unique

    async def _open_session(
        self, identity: Identity | None, owner: Principal, allowed: tuple[str, ...],
        scopes: tuple[str, ...], hint: str | None, repair_grant_id: str | None,
        return_url: str | None,
    ) -> ConnectLink:
        ctx = self.ctx
        record, token = new_session(
            owner=owner, allowed=allowed, scopes=scopes, account_hint=hint,
            repair_grant_id=repair_grant_id, return_url=return_url, now=ctx.clock(),
            ttl=ctx.settings.connect_session_ttl)
        url = f"{await self.base_url()}/connect/{token.reveal()}"
        await ctx.store.insert_session(record)
        session = record.session
        await ctx.audit.record(AuditEntry(
            "connect.create", Outcome.ALLOWED, identity=identity, grant_id=repair_grant_id,
            provider_id=allowed[0] if len(allowed) == 1 else None,
            detail={"session_id": session.session_id, "allowed_providers": list(allowed),
                    "scopes": list(scopes), "repair": repair_grant_id is not None},
        ), [token])
        return ConnectLink(session_id=session.session_id, connect_url=url,
                           expires_at=session.expires_at, allowed_providers=allowed,
                           repair_grant_id=repair_grant_id)

    async def session(self, identity: Identity, session_id: str) -> ConnectSession:
        """Return one of the caller's connect sessions (its status as of now)."""
        record = await self.ctx.store.get_session(session_id) if isinstance(
            session_id, str) and session_id else None
        if record is None or record.session.owner.key != identity.principal.key:
            raise ConnectFlowError("No such connect session for this caller.",
                                   reason="unknown_session",
                                   hint="Pass the session_id the connect tool returned "
                                        "(vault.create_connect_session in Python), or "
                                        "connect again.")
        session = record.session
        status = session_status(session, self.ctx.clock())
        return session if status is session.status else session.model_copy(
            update={"status": status})

    def _notify(self, session_id: str, denial: ConnectFlowError | None) -> None:
        event = self._events.pop(session_id, None)
        if event is not None:
            if denial is not None:
                self._denials[session_id] = denial
            event.set()

    async def wait(self, session_id: str, seconds: float) -> ConnectSession:
        """Wait until the session completes; raise ``ConnectFlowError`` if it cannot."""
        with anyio.move_on_after(seconds):
            while True:
                denial = self._denials.pop(session_id, None)
                if denial is not None:
                    raise denial
                record = await self.ctx.store.get_session(session_id)
                if record is None:
                    raise refuse("unknown_link")
                session = record.session
                status = session_status(session, self.ctx.clock())
                if status is ConnectSessionStatus.COMPLETED:
                    return session
                if status is ConnectSessionStatus.FAILED:
                    raise ConnectFlowError(f"The connection failed ({session.error}).",
                                           reason="failed", hint="Run connect again.")
                if status is ConnectSessionStatus.EXPIRED:
                    raise refuse("expired")
                event = self._events.setdefault(session_id, anyio.Event())
                with anyio.move_on_after(_POLL):
                    await event.wait()
        self._events.pop(session_id, None)
        raise ConnectFlowError(
            f"No authorization arrived within {format_seconds(seconds)} seconds.", reason="timeout",
            hint="Run connect again and finish signing in within the time limit.")

    async def present_and_wait(self, link: ConnectLink, opener: Opener,
                               seconds: float) -> ConnectSession:
        """Show the link (browser, stderr or ``opener``) and wait for the session to finish."""
        # Watch before showing: a fast browser may finish (or refuse) before we wait.
        self._events.setdefault(link.session_id, anyio.Event())
        deadline = anyio.current_time() + seconds
        with anyio.move_on_after(seconds):
            await _present(link.connect_url, opener)
        return await self.wait(link.session_id, max(0.1, deadline - anyio.current_time()))

    # -- grants -------------------------------------------------------------------------------
    async def credential(self, grant: Grant, *, force: bool = False,
                         identity: Identity | None = None) -> TokenSet:
        """Return an OAuth grant's fresh tokens, or say what the user must do first."""
        if grant.status is GrantStatus.REVOKED:
            raise GrantNotFoundError(f"Grant {grant.grant_id} is revoked.",
                                     grant_id=grant.grant_id)
        if grant.status is GrantStatus.NEEDS_REAUTH:
            raise ReAuthRequiredError(
                f"Grant {grant.grant_id} must be re-authorized before it can be used.",
                grant_id=grant.grant_id, provider_id=grant.provider_id,
                connect_url=await self.repair_link(grant, ()))
        provider = self.ctx.oauth_provider(grant.provider_id)
        client = await self.ctx.client_for(provider)
        tokens = await self.refresher.tokens(grant, provider, client, force=force,
                                             identity=identity)
        have = set(tokens.scopes) | set(tokens.requested_scopes)
        missing = [s for s in configured_scopes(provider, client) if s not in have]
        if missing:
            raise ScopeReauthRequiredError(
                f"Grant {grant.grant_id} lacks scopes this server now requires: "
                f"{', '.join(missing)}.", grant_id=grant.grant_id, provider_id=provider.id,
                missing_scopes=missing, connect_url=await self.repair_link(grant, missing))
        return tokens

    async def revoke_at_provider(
        self, grant: Grant, identity: Identity | None = None,
    ) -> tuple[Literal["revoked", "failed", "not_supported", "not_applicable"], str | None,
               int | None]:
        """Revoke a grant's tokens at the provider (RFC 7009); return the outcome, why, and
        the seq of the intent event committed before the tokens were decrypted (if sent).

        Raise ``AuditWriteError`` (nothing sent) if the intent cannot be written; the
        caller's event about the revocation is its outcome.
        """
        if grant.kind is not GrantKind.OAUTH:
            return "not_applicable", None, None
        try:
            provider = self.ctx.oauth_provider(grant.provider_id)
            if provider.oauth is None or provider.oauth.revocation_url is None:
                return "not_supported", None, None
            record = await self.ctx.store.get_credential(grant.grant_id)
            if record is None:
                return "not_applicable", "no stored credential", None
            client = await self.ctx.client_for(provider)
        except AlterError as exc:
            return "failed", exc.message, None
        intent = await self.ctx.audit.intent(AuditEntry(
            "grant.revoke.intent", Outcome.ALLOWED, identity=identity, grant_id=grant.grant_id,
            provider_id=grant.provider_id, method="POST", url=provider.oauth.revocation_url),
            what="revocation at the provider")
        try:
            tokens = open_credential(self.ctx.envelope, record)
            if tokens.refresh_token is not None:
                await self.ctx.oauth.revoke(provider, client, tokens.refresh_token,
                                            hint="refresh_token")
            await self.ctx.oauth.revoke(provider, client, tokens.access_token,
                                        hint="access_token")
        except AlterError as exc:
            return "failed", exc.message, intent
        except Exception as exc:  # a bug after sending: the caller's event records it
            return "failed", f"unexpected error ({type(exc).__name__})", intent
        return "revoked", None, intent

    async def configure_provider(
        self, identity: Identity, provider_id: str, *, client_id: object,
        client_secret: object = None, scopes: Sequence[str] | None = None,
        redirect_uri: object = None,
    ) -> OAuthClientInfo:
        """Store an OAuth client for a provider (its secret sealed) and audit it."""
        ctx = self.ctx
        provider = ctx.lookup(provider_id)
        record, secret = provider_config_record(
            provider, client_id=client_id, client_secret=client_secret, scopes=scopes,
            redirect_uri=redirect_uri, envelope=ctx.envelope, now=ctx.clock())
        shadowed = provider.id in ctx.settings.providers
        detail: dict[str, Any] = {"client_id": record.client_id,
                                  "has_client_secret": secret is not None,
                                  "shadowed_by_settings": shadowed}
        await ctx.store.put_provider_config(record, audit=ctx.audit.sealer(AuditEntry(
            "provider.configure", Outcome.ALLOWED, identity=identity, provider_id=provider.id,
            detail=detail), [secret] if secret else []))
        return OAuthClientInfo(
            provider_id=provider.id, client_id=record.client_id,
            has_client_secret=secret is not None, scopes=record.scopes,
            redirect_uri=record.redirect_uri, source="store")


def _account_hint(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or _CONTROL.search(value) or len(
            value) > 256:
        raise InvalidInputError("account_hint must be one line of at most 256 characters.",
                                field="account_hint", hint="Pass the account's email or login.")
    return value.strip()


async def _present(url: str, opener: Opener) -> None:
    if opener is True:
        opened = await anyio.to_thread.run_sync(webbrowser.open, url)
        if opened:
            return
    if isinstance(opener, bool):
        # stderr: in stdio mode stdout carries the MCP protocol.
        print(f"Open this URL to authorize: {url}", file=sys.stderr, flush=True)
        return
    result = opener(url)
    if inspect.isawaitable(result):
        await result
