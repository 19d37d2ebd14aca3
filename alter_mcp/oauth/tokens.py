"""The token set of an OAuth grant: typed secrets, expiry, scopes, and its sealed form.

A :class:`TokenSet` lives in plaintext only in memory; at rest it is one JSON object sealed
with the envelope under ``RecordBinding("credentials", grant_id, "credential")``, so a blob
copied onto another grant does not open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from alter_mcp.crypto import Envelope, RecordBinding, key_id_of
from alter_mcp.errors import DecryptionError
from alter_mcp.redaction import Secret
from alter_mcp.store import CredentialRecord

__all__ = [
    "TokenSet",
    "credential_binding",
    "open_credential",
    "seal_credential",
    "split_scopes",
]

_PAYLOAD_VERSION = 1


def credential_binding(grant_id: str) -> RecordBinding:
    """Return the encryption binding of a grant's OAuth credential."""
    return RecordBinding("credentials", grant_id, "credential")


def split_scopes(value: object, separator: str = " ") -> tuple[str, ...]:
    """Return the scopes of a ``scope`` value (string or list), split on the separator."""
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        items = [str(v) for v in value]
    else:
        text = str(value)
        items = (text.replace(separator, " ") if separator != " " else text).split()
    seen: dict[str, None] = {}
    for item in items:
        if item.strip():
            seen.setdefault(item.strip(), None)
    return tuple(seen)


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: object) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(float(str(value)), UTC)


def _secret(value: object) -> Secret | None:
    return Secret(str(value)) if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class TokenSet:
    """An access token, its optional refresh and ID tokens, expiry, scopes and extras."""

    access_token: Secret
    obtained_at: datetime
    refresh_token: Secret | None = None
    id_token: Secret | None = None
    token_type: str = "Bearer"
    expires_at: datetime | None = None
    #: Scopes the provider granted (or, when its response omits them, those requested).
    scopes: tuple[str, ...] = ()
    #: Scopes asked for when the grant was connected or last repaired.
    requested_scopes: tuple[str, ...] = ()
    #: Non-secret values from the token response the API needs (e.g. ``instance_url``).
    extras: Mapping[str, str] = field(default_factory=dict)

    def secrets(self) -> list[Secret]:
        """Return every secret value in the set (for value redaction)."""
        return [s for s in (self.access_token, self.refresh_token, self.id_token) if s]

    def is_due(self, now: datetime, leeway: float) -> bool:
        """Return True when the access token expires within the leeway (never without expiry).

        The leeway is capped at half the token's lifetime, so a provider issuing one-minute
        tokens with a one-minute leeway does not make every fresh token look due at once.
        """
        if self.expires_at is None:
            return False
        lifetime = (self.expires_at - self.obtained_at).total_seconds()
        margin = max(0.0, min(leeway, lifetime / 2))
        return now >= self.expires_at - timedelta(seconds=margin)

    def after_refresh(self, newer: TokenSet) -> TokenSet:
        """Return ``newer`` completed by what a refresh response may omit (RFC 6749 §6)."""
        return replace(
            newer,
            refresh_token=newer.refresh_token or self.refresh_token,
            id_token=newer.id_token or self.id_token,
            scopes=newer.scopes or self.scopes,
            requested_scopes=self.requested_scopes,
            extras={**self.extras, **newer.extras},
        )

    def to_payload(self) -> dict[str, Any]:
        """Return the JSON object that is sealed at rest."""
        return {
            "v": _PAYLOAD_VERSION,
            "access_token": self.access_token.reveal(),
            "refresh_token": self.refresh_token.reveal() if self.refresh_token else None,
            "id_token": self.id_token.reveal() if self.id_token else None,
            "token_type": self.token_type,
            "expires_at": _ts(self.expires_at),
            "obtained_at": _ts(self.obtained_at),
            "scopes": list(self.scopes),
            "requested_scopes": list(self.requested_scopes),
            "extras": dict(self.extras),
        }

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> TokenSet:
        """Rebuild a token set from its sealed JSON object."""
        access = _secret(data.get("access_token"))
        obtained = _dt(data.get("obtained_at"))
        if access is None or obtained is None or data.get("v") != _PAYLOAD_VERSION:
            raise DecryptionError("The stored OAuth credential is not in a format this "
                                  "version understands.")
        extras = data.get("extras") or {}
        return cls(
            access_token=access,
            obtained_at=obtained,
            refresh_token=_secret(data.get("refresh_token")),
            id_token=_secret(data.get("id_token")),
            token_type=str(data.get("token_type") or "Bearer"),
            expires_at=_dt(data.get("expires_at")),
            scopes=tuple(str(s) for s in data.get("scopes") or ()),
            requested_scopes=tuple(str(s) for s in data.get("requested_scopes") or ()),
            extras={str(k): str(v) for k, v in extras.items()},
        )


def seal_credential(
    envelope: Envelope, grant_id: str, tokens: TokenSet, *, version: int, now: datetime
) -> CredentialRecord:
    """Return the credential record holding ``tokens`` sealed for ``grant_id``."""
    blob = envelope.seal_json(tokens.to_payload(), aad=credential_binding(grant_id))
    return CredentialRecord(
        grant_id=grant_id, blob=blob, key_id=key_id_of(blob), version=version,
        expires_at=tokens.expires_at, updated_at=now,
    )


def open_credential(envelope: Envelope, record: CredentialRecord) -> TokenSet:
    """Return the token set sealed in ``record``."""
    return TokenSet.from_payload(
        envelope.open_json(record.blob, aad=credential_binding(record.grant_id))
    )
