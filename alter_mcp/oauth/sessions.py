"""Connect sessions: single-use, short-lived invitations bound to the principal that made them.

The connect token (in the URL the user opens) and the OAuth ``state`` are stored only as
SHA-256 hashes; the PKCE verifier is sealed under
``RecordBinding("connect_sessions", session_id, "pkce_verifier")``. The state names its
session (``<session_id>.<random>``) so a callback can be checked against the session, the
browser and the clock before anything is consumed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit

from pydantic import BaseModel, ConfigDict

from alter_mcp.crypto import RecordBinding
from alter_mcp.errors import ConnectFlowError, InvalidInputError
from alter_mcp.models import ConnectSession, ConnectSessionStatus, Principal
from alter_mcp.oauth.clients import OAuthClientConfig
from alter_mcp.oauth.quirks import hooks_for
from alter_mcp.providers.schema import Provider
from alter_mcp.redaction import Secret
from alter_mcp.store import SessionRecord

__all__ = [
    "COOKIE_PREFIX",
    "ConnectLink",
    "ConnectResult",
    "authorization_url",
    "check_return_url",
    "cookie_name",
    "handles_match",
    "hash_handle",
    "new_pkce",
    "new_session",
    "new_state",
    "open_link",
    "refuse",
    "session_id_of_state",
    "session_status",
    "verifier_binding",
]

COOKIE_PREFIX = "alter_connect_"
_SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ConnectLink(BaseModel):
    """What ``create_connect_session`` returns: the URL to open and the session's handle."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    session_id: str
    connect_url: str
    expires_at: datetime
    allowed_providers: tuple[str, ...]
    repair_grant_id: str | None = None


class ConnectResult(BaseModel):
    """One provider's outcome of a headless ``connect``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    provider_id: str
    grant_id: str
    account_identifier: str | None = None
    scopes: tuple[str, ...] = ()
    session_id: str


def hash_handle(value: str | Secret) -> str:
    """Return the SHA-256 hex digest under which a token or state is stored."""
    raw = value.reveal() if isinstance(value, Secret) else value
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def handles_match(value: str | Secret, stored_hash: str | None) -> bool:
    """Return True when ``value`` hashes to ``stored_hash`` (constant time)."""
    return stored_hash is not None and hmac.compare_digest(hash_handle(value), stored_hash)


def verifier_binding(session_id: str) -> RecordBinding:
    """Return the encryption binding of a session's PKCE verifier."""
    return RecordBinding("connect_sessions", session_id, "pkce_verifier")


def new_pkce() -> tuple[Secret, str]:
    """Return a PKCE verifier (43+ unreserved chars) and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return Secret(verifier), base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_state(session_id: str) -> Secret:
    """Return a fresh state naming its session."""
    return Secret(f"{session_id}.{secrets.token_urlsafe(32)}")


def session_id_of_state(state: str) -> str | None:
    """Return the session id a state names, or None if it is not one of ours."""
    head, _, tail = state.partition(".")
    return head if _SESSION_ID.match(head) and len(tail) >= 32 else None


def cookie_name(session_id: str) -> str:
    """Return the name of the cookie binding a browser to a session."""
    return COOKIE_PREFIX + session_id


def check_return_url(value: object) -> str | None:
    """Return a valid return URL (absolute https, or http on loopback) or None."""
    if value is None:
        return None
    hint = "Pass an absolute https:// URL (http:// only for 127.0.0.1 or localhost)."
    if not isinstance(value, str) or _CONTROL.search(value) or len(value) > 2048:
        raise InvalidInputError("return_url must be a single-line URL.", field="return_url",
                                hint=hint)
    parts = urlsplit(value)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http"
                                                              and loopback)):
        raise InvalidInputError("return_url must be an absolute https URL.",
                                field="return_url", hint=hint)
    return value


def new_session(
    *, owner: Principal, allowed: Sequence[str], scopes: Sequence[str], account_hint: str | None,
    repair_grant_id: str | None, return_url: str | None, now: datetime, ttl: float,
) -> tuple[SessionRecord, Secret]:
    """Return a new pending session record and its connect token."""
    token = Secret(secrets.token_urlsafe(32))
    session = ConnectSession(
        session_id=uuid.uuid4().hex, owner=owner, allowed_providers=tuple(allowed),
        scopes=tuple(scopes), account_hint=account_hint, repair_grant_id=repair_grant_id,
        return_url=return_url, created_at=now, expires_at=now + timedelta(seconds=ttl),
    )
    return SessionRecord(session=session, token_hash=hash_handle(token)), token


def session_status(session: ConnectSession, now: datetime) -> ConnectSessionStatus:
    """Return the session's status as of ``now`` (a pending session past expiry is expired)."""
    if session.status is ConnectSessionStatus.PENDING and now >= session.expires_at:
        return ConnectSessionStatus.EXPIRED
    return session.status


def open_link(record: SessionRecord | None, now: datetime) -> SessionRecord:
    """Return the record of a link that can still be used, or raise why it cannot."""
    if record is None:
        raise refuse("unknown_link")
    status = session_status(record.session, now)
    if status is not ConnectSessionStatus.PENDING:
        raise refuse("expired" if status is ConnectSessionStatus.EXPIRED else "used")
    return record


def refuse(reason: str) -> ConnectFlowError:
    """Return the error of a refused connect step, with a message for the user."""
    messages = {
        "unknown_link": ("This connect link is not valid.", "Ask for a new connect link."),
        "expired": ("This connect link has expired.", "Ask for a new connect link."),
        "used": ("This connect link was already used.", "Ask for a new connect link."),
        "unknown_state": ("This authorization response does not belong to any connect "
                          "session here.", "Start again from a new connect link."),
        "replayed": ("This authorization response was already used.",
                     "Start again from a new connect link."),
        "foreign_state": ("This authorization response belongs to a connect session that "
                          "was not opened in this browser.",
                          "Open the connect link you were given in this browser."),
        "issuer_mismatch": ("The authorization response came from an unexpected server.",
                            "Start again from the connect link; do not follow links from "
                            "elsewhere."),
        "issuer_missing": ("The authorization response did not say which server sent it.",
                           "Start again from the connect link; do not follow links from "
                           "elsewhere."),
        "provider_not_allowed": ("This provider is not offered by this connect link.",
                                 "Choose one of the providers listed."),
        "account_mismatch": ("You signed in with a different account than the grant being "
                             "re-authorized.", "Sign in with the original account."),
        "grant_unavailable": ("The grant being re-authorized no longer exists.",
                              "Ask for a new connect link."),
    }
    message, hint = messages.get(reason, ("The connection could not be completed.", None))
    return ConnectFlowError(message, reason=reason, hint=hint)


def authorization_url(
    provider: Provider, client: OAuthClientConfig, *, redirect_uri: str, state: Secret,
    challenge: str, scopes: Sequence[str], account_hint: str | None,
) -> str:
    """Return the provider's authorization URL for this session's attempt."""
    spec = provider.oauth
    assert spec is not None  # callers pass OAuth providers only
    params: dict[str, str] = {
        "response_type": "code", "client_id": client.client_id, "redirect_uri": redirect_uri,
        "state": state.reveal(),
    }
    if scopes:
        # "+" is a space once form-encoded, so join with the space urlencode turns into it.
        params["scope"] = (" " if spec.scope_separator == "+" else spec.scope_separator).join(
            scopes)
    if spec.pkce:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    if account_hint:
        params["login_hint"] = account_hint
    for key, value in spec.extra_authorize_params.items():
        params.setdefault(key, value)
    for reshape in hooks_for(spec).authorize:
        reshape(spec, params)
    separator = "&" if urlsplit(spec.authorization_url).query else "?"
    return spec.authorization_url + separator + urlencode(params)
