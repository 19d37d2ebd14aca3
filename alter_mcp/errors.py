"""The one exception tree of alter-mcp.

Every error a user can meet derives from :class:`AlterError`, carries a machine-readable
``code``, a ``message`` saying what happened and a ``hint`` saying what to do, plus
structured, non-secret fields. No error ever carries a credential value.

    AlterError
    ├── ConfigurationError           a setting is missing or invalid (names the setting)
    ├── InvalidInputError            an argument is invalid (names the field)
    ├── CryptoError
    │   ├── KeyUnavailableError      no key-encryption key: the vault refuses to start
    │   │   └── KeyMismatchError     the keys cannot open the database's records: no start
    │   └── DecryptionError          wrong key, tampered blob, or blob moved to another record
    ├── VaultClosedError             the vault was closed: make a new one (or reopen it)
    ├── StoreError                   the database failed (backend errors translated once)
    │   └── ConcurrentUpdateError    a compare-and-swap lost against another writer
    ├── AuditWriteError              the audit event could not be written: the action fails
    │                                (before a credential use: nothing was sent)
    ├── RequestSentUnauditedError    sent to the provider, but its outcome was not audited
    ├── SentRequestFailedError       sent to the provider, then the vault failed on the answer
    ├── ProviderNotFoundError        no such provider in the catalogue
    ├── ProviderNotConfiguredError   the provider has no OAuth client configured here
    ├── GrantNotFoundError           no grant this caller may use (never hints it exists)
    ├── SecretNotFoundError          no managed secret with that id
    ├── AmbiguousGrantError          several grants match: pick one (candidates listed)
    ├── ReAuthRequiredError          the user must re-authorize (carries the repair URL)
    │   └── ScopeReauthRequiredError the grant lacks scopes now required
    ├── TokenRefreshInProgressError  another worker is refreshing: retry shortly
    ├── PolicyViolationError         a policy rule denied the action (names the rule)
    ├── BlockedDestinationError      the URL or a header would send the credential elsewhere
    ├── ProviderAPIError             the provider answered with an error
    │   └── RateLimitedError         the provider said 429 (carries Retry-After)
    ├── ProviderBusyError            every connection to the provider's host stayed busy: not sent
    ├── ConnectFlowError             a connect session or OAuth callback was refused
    ├── AuthenticationError          the caller's identity could not be established
    └── IdentityProviderUnavailableError  the IdP's keys could not be fetched: retry later

A ``StoreError`` or an ``IdentityProviderUnavailableError`` while checking a credential means
the server *could not check* it, never that it is bad: HTTP answers 503, not 401.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

__all__ = [
    "AlterError",
    "AmbiguousGrantError",
    "AuditWriteError",
    "AuthenticationError",
    "BlockedDestinationError",
    "ConcurrentUpdateError",
    "ConfigurationError",
    "ConnectFlowError",
    "CryptoError",
    "DecryptionError",
    "GrantNotFoundError",
    "IdentityProviderUnavailableError",
    "InvalidInputError",
    "KeyMismatchError",
    "KeyUnavailableError",
    "PolicyViolationError",
    "ProviderAPIError",
    "ProviderBusyError",
    "ProviderNotConfiguredError",
    "ProviderNotFoundError",
    "RateLimitedError",
    "ReAuthRequiredError",
    "RequestSentUnauditedError",
    "ScopeReauthRequiredError",
    "SecretNotFoundError",
    "SentRequestFailedError",
    "StoreError",
    "TokenRefreshInProgressError",
    "VaultClosedError",
]


def format_seconds(value: float) -> str:
    """Return a duration for people: ``2``, ``1.5``, ``0.25`` seconds, never ``1.99956``.

    A helper for messages, not part of the exception tree (so not in ``__all__``).
    """
    rounded = round(value) if value >= 10 else round(value, 2 if value < 1 else 1)
    return f"{rounded:g}"


class AlterError(Exception):
    """Base of every alter-mcp error: a message, a hint, and non-secret details."""

    code: ClassVar[str] = "alter_error"

    def __init__(self, message: str, *, hint: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details: dict[str, Any] = details

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def to_dict(self) -> dict[str, Any]:
        """Return the error as JSON-ready data for tool results and audit rows."""
        data: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.hint:
            data["hint"] = self.hint
        data.update({k: v for k, v in self.details.items() if v is not None})
        return data


class ConfigurationError(AlterError):
    """A setting is missing or invalid; ``setting`` names it."""

    code = "configuration_error"

    def __init__(self, message: str, *, setting: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, setting=setting)
        self.setting = setting


class InvalidInputError(AlterError):
    """An argument is invalid; ``field`` names it and the hint says how to fix it."""

    code = "invalid_input"

    def __init__(self, message: str, *, field: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, field=field)
        self.field = field


class CryptoError(AlterError):
    """Encryption or decryption could not be done safely."""

    code = "crypto_error"


class KeyUnavailableError(CryptoError):
    """No usable key-encryption key: the vault refuses to run rather than store plaintext."""

    code = "key_unavailable"


class KeyMismatchError(KeyUnavailableError):
    """The keyring cannot open what the database holds; ``key_ids`` names the keys it needs."""

    code = "key_mismatch"

    def __init__(self, message: str, *, key_ids: Sequence[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint, key_ids=list(key_ids))
        self.key_ids = tuple(key_ids)


class DecryptionError(CryptoError):
    """A blob did not decrypt: wrong key, tampering, or a blob moved to another record."""

    code = "decryption_failed"


class VaultClosedError(AlterError):
    """The vault was closed; an action after ``close()`` is refused rather than half-done."""

    code = "vault_closed"

    def __init__(self) -> None:
        super().__init__(
            "This AlterVault was closed, so it runs no more actions.",
            hint="Create a new AlterVault, or call `await vault.open()` to open this one again.",
        )


class StoreError(AlterError):
    """The database failed; the backend's own exception is chained, never shown to clients."""

    code = "store_error"


class ConcurrentUpdateError(StoreError):
    """A compare-and-swap lost: someone else changed the record first."""

    code = "concurrent_update"


class AuditWriteError(AlterError):
    """The audit event could not be written, so the action was not performed."""

    code = "audit_write_failed"


def _answered(status: int | None) -> str:
    return f"the provider answered HTTP {status}" if status is not None else "no answer was read"


class RequestSentUnauditedError(AlterError):
    """A credential use reached the provider, but its outcome could not be audited.

    Never a reason to send again: the request (``what``: an API request, a token refresh, a
    revocation) was already made. Its intent event (``intent_seq``) stays in the log with no
    outcome, which ``alter-mcp audit verify`` lists as "sent, outcome unknown".
    """

    code = "audit_outcome_failed"

    def __init__(self, *, what: str, status: int | None, intent_seq: int | None,
                 note: str | None = None) -> None:
        message = (f"The {what} was sent and {_answered(status)}, but its outcome could not "
                   f"be written to the audit log (intent event {intent_seq}).")
        super().__init__(
            message + (f" {note}" if note else ""),
            hint="Do not send it again: it was already sent. An operator must repair the audit "
                 "store (alter-mcp doctor); alter-mcp audit verify lists it as sent, outcome "
                 "unknown.",
            what=what, status=status, intent_seq=intent_seq)
        self.what = what
        self.status = status
        self.intent_seq = intent_seq


class SentRequestFailedError(AlterError):
    """The request was sent, then the vault failed unexpectedly while handling the answer."""

    code = "sent_request_failed"

    def __init__(self, *, what: str, sent: bool, status: int | None,
                 intent_seq: int | None) -> None:
        if sent:
            message = (f"The {what} was sent ({_answered(status)}), then the vault failed "
                       "unexpectedly while handling the answer.")
            hint = ("Do not send it again blindly: it may have taken effect. The audit log "
                    f"holds its outcome (intent event {intent_seq}).")
        else:
            message = f"The vault failed unexpectedly before the {what} was sent; nothing was sent."
            hint = "An operator should check the server's log."
        super().__init__(message, hint=hint, what=what, sent=sent, status=status,
                         intent_seq=intent_seq)
        self.sent = sent
        self.status = status
        self.intent_seq = intent_seq


class ProviderNotFoundError(AlterError):
    """The provider id is not in the catalogue."""

    code = "provider_not_found"

    def __init__(self, provider_id: str) -> None:
        super().__init__(
            f"Unknown provider {provider_id!r}.",
            hint="Read providers://catalog for the available provider ids.",
            provider_id=provider_id,
        )
        self.provider_id = provider_id


class ProviderNotConfiguredError(AlterError):
    """The provider exists but this deployment has no OAuth client for it."""

    code = "provider_not_configured"

    def __init__(self, provider_id: str, *, redirect_uri: str | None = None,
                 config_file: str | None = None, console_url: str | None = None) -> None:
        where = f" ({config_file})" if config_file else ""
        app = f"the provider's OAuth app (created at {console_url})" if console_url else \
            "the provider's OAuth app"
        register = (f" Register the redirect URI {redirect_uri} with {app}."
                    if redirect_uri else "")
        super().__init__(
            f"Provider {provider_id!r} has no OAuth client configured on this server.",
            hint=(
                f"An operator sets [providers.{provider_id}] client_id and client_secret (or "
                f"client_secret_env) in the alter-mcp configuration file{where}, or runs "
                f"`alter-mcp providers configure {provider_id}`.{register}"
            ),
            provider_id=provider_id,
            redirect_uri=redirect_uri,
            console_url=console_url,
        )
        self.provider_id = provider_id
        self.redirect_uri = redirect_uri


class GrantNotFoundError(AlterError):
    """No grant this caller may use matches; whether another principal's exists is not said."""

    code = "grant_not_found"

    def __init__(
        self,
        message: str = "No grant found.",
        *,
        grant_id: str | None = None,
        provider_id: str | None = None,
        connect_url: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(
            message,
            hint=hint,
            grant_id=grant_id,
            provider_id=provider_id,
            connect_url=connect_url,
        )
        self.grant_id = grant_id
        self.provider_id = provider_id
        self.connect_url = connect_url


class SecretNotFoundError(AlterError):
    """No managed secret with that id."""

    code = "secret_not_found"

    def __init__(self, secret_id: str) -> None:
        super().__init__(f"No managed secret {secret_id!r}.", secret_id=secret_id)
        self.secret_id = secret_id


class AmbiguousGrantError(AlterError):
    """Several grants match; ``candidates`` lists each one's account, label and grant id."""

    code = "ambiguous_grant"

    def __init__(self, provider_id: str, candidates: Sequence[Mapping[str, Any]]) -> None:
        listed = "; ".join(
            f"{c.get('account_identifier') or '?'} ({c.get('label') or 'no label'}): "
            f"grant_id={c.get('grant_id')}"
            for c in candidates
        )
        super().__init__(
            f"Several grants for provider {provider_id!r} match: {listed}.",
            hint="Pass `account` or `grant_id` to choose one.",
            provider_id=provider_id,
            candidates=[dict(c) for c in candidates],
        )
        self.provider_id = provider_id
        self.candidates = [dict(c) for c in candidates]

    @property
    def account_identifiers(self) -> list[str]:
        """Return the account identifiers of the matching grants."""
        return [str(c.get("account_identifier")) for c in self.candidates]


class ReAuthRequiredError(AlterError):
    """The grant can no longer be used until the user re-authorizes it at ``connect_url``."""

    code = "reauth_required"

    def __init__(
        self,
        message: str,
        *,
        grant_id: str,
        provider_id: str,
        connect_url: str | None = None,
        **details: Any,
    ) -> None:
        hint = (
            f"Ask the user to re-authorize at {connect_url}"
            if connect_url
            else "Ask the user to re-authorize this grant with `connect`."
        )
        super().__init__(
            message,
            hint=hint,
            grant_id=grant_id,
            provider_id=provider_id,
            connect_url=connect_url,
            **details,
        )
        self.grant_id = grant_id
        self.provider_id = provider_id
        self.connect_url = connect_url


class ScopeReauthRequiredError(ReAuthRequiredError):
    """The grant lacks scopes that are now required; ``missing_scopes`` names them."""

    code = "scope_reauth_required"

    def __init__(
        self,
        message: str,
        *,
        grant_id: str,
        provider_id: str,
        missing_scopes: Sequence[str],
        connect_url: str | None = None,
    ) -> None:
        super().__init__(
            message,
            grant_id=grant_id,
            provider_id=provider_id,
            connect_url=connect_url,
            missing_scopes=list(missing_scopes),
        )
        self.missing_scopes = list(missing_scopes)


class TokenRefreshInProgressError(AlterError):
    """Another worker holds this grant's refresh for longer than the bounded wait."""

    code = "token_refresh_in_progress"

    def __init__(self, grant_id: str) -> None:
        super().__init__(
            f"The token of grant {grant_id} is being refreshed by another worker.",
            hint="Retry after a short backoff.",
            grant_id=grant_id,
        )
        self.grant_id = grant_id


class PolicyViolationError(AlterError):
    """A policy rule denied the action; ``policy_error`` names the rule."""

    code = "policy_violation"

    def __init__(self, message: str, *, rule: str, reason: str | None = None) -> None:
        super().__init__(message, hint=None, rule=rule, reason=reason)
        self.rule = rule
        self.policy_error = rule
        self.reason = reason


class BlockedDestinationError(AlterError):
    """The request would send the credential outside its provider's API hosts."""

    code = "blocked_destination"

    def __init__(self, message: str, *, field: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, field=field)
        self.field = field


class ProviderAPIError(AlterError):
    """The provider answered with an error status."""

    code = "provider_api_error"

    def __init__(
        self, message: str, *, status: int | None = None, provider_id: str | None = None,
        hint: str | None = None, **details: Any,
    ) -> None:
        super().__init__(message, hint=hint, status=status, provider_id=provider_id, **details)
        self.status = status
        self.provider_id = provider_id


class RateLimitedError(ProviderAPIError):
    """The provider answered 429; ``retry_after`` is its Retry-After in seconds, if given."""

    code = "rate_limited"

    def __init__(self, *, provider_id: str, retry_after: float | None) -> None:
        wait = ("later" if retry_after is None
                else f"after {format_seconds(retry_after)} seconds")
        super().__init__(
            f"Provider {provider_id!r} is rate limiting requests (HTTP 429).",
            status=429,
            provider_id=provider_id,
            hint=f"Retry {wait}; the request was not retried automatically.",
            retry_after=retry_after,
        )
        self.retry_after = retry_after


class ProviderBusyError(AlterError):
    """Every connection slot to a provider's host stayed in use for the bounded wait."""

    code = "provider_busy"

    def __init__(self, *, provider_id: str, origin: str, limit: int, waited: float,
                 limit_setting: str, wait_setting: str) -> None:
        # The slow requests ahead of this one may take a while: suggest at least a second.
        retry_after = max(1.0, waited)
        super().__init__(
            f"Provider {provider_id!r} is busy: all {limit} connections to {origin} stayed in "
            f"use for {waited:g} seconds, so this request was not sent.",
            hint=f"Retry after {retry_after:g} second{'' if retry_after == 1 else 's'}. If "
                 f"this persists, an operator can raise {limit_setting} (now {limit}) or "
                 f"{wait_setting}.",
            provider_id=provider_id, origin=origin, limit=limit, setting=limit_setting,
            retry_after=retry_after, sent=False,
        )
        self.provider_id = provider_id
        self.origin = origin
        self.limit = limit
        self.retry_after = retry_after


class ConnectFlowError(AlterError):
    """A connect session or OAuth callback was refused; nothing was written."""

    code = "connect_failed"

    def __init__(self, message: str, *, reason: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, reason=reason)
        self.reason = reason


class AuthenticationError(AlterError):
    """The caller's identity could not be established from its token or key."""

    code = "authentication_failed"


class IdentityProviderUnavailableError(AlterError):
    """The identity provider's discovery document or keys could not be fetched (not a bad token)."""

    code = "identity_provider_unavailable"

    def __init__(self, message: str, *, hint: str | None = None, url: str | None = None) -> None:
        super().__init__(message, hint=hint, url=url)
        self.url = url
