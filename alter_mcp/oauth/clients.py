"""This deployment's OAuth client for a provider: from the settings, else from the store.

``[providers.<id>]`` in the configuration wins; a client stored through
``AlterVault.configure_provider`` is the fallback, its secret sealed under
``RecordBinding("provider_configs", provider_id, "client_secret")``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from alter_mcp.config import Settings
from alter_mcp.crypto import Envelope, RecordBinding, key_id_of
from alter_mcp.errors import InvalidInputError, ProviderNotConfiguredError
from alter_mcp.providers.schema import Provider
from alter_mcp.redaction import Secret
from alter_mcp.store import ProviderConfigRecord, Store

__all__ = [
    "OAuthClientConfig",
    "OAuthClientInfo",
    "configured_scopes",
    "provider_config_record",
    "provider_secret_binding",
    "resolve_client",
    "validate_redirect_uri",
    "validate_scopes",
]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,512}$")  # RFC 6749 scope-token


def provider_secret_binding(provider_id: str) -> RecordBinding:
    """Return the encryption binding of a stored OAuth client secret."""
    return RecordBinding("provider_configs", provider_id, "client_secret")


@dataclass(frozen=True, slots=True)
class OAuthClientConfig:
    """A resolved OAuth client: id, secret (masked), scope override and redirect URI."""

    provider_id: str
    client_id: str
    client_secret: Secret | None
    scopes: tuple[str, ...] | None
    redirect_uri: str | None
    source: Literal["settings", "store"]

    def info(self) -> OAuthClientInfo:
        """Return the view shown to operators: never the secret itself."""
        return OAuthClientInfo(
            provider_id=self.provider_id, client_id=self.client_id,
            has_client_secret=self.client_secret is not None, scopes=self.scopes,
            redirect_uri=self.redirect_uri, source=self.source,
        )


class OAuthClientInfo(BaseModel):
    """An OAuth client as operators see it: whether a secret is set, never the secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    provider_id: str
    client_id: str
    has_client_secret: bool
    scopes: tuple[str, ...] | None = None
    redirect_uri: str | None = None
    source: Literal["settings", "store"]


async def resolve_client(
    provider: Provider, *, settings: Settings, store: Store, envelope: Envelope,
    environ: Mapping[str, str] | None = None,
) -> OAuthClientConfig:
    """Return the provider's OAuth client, or raise ``ProviderNotConfiguredError``."""
    configured = settings.providers.get(provider.id)
    if configured is not None:
        secret = configured.secret(os.environ if environ is None else environ)
        return OAuthClientConfig(
            provider_id=provider.id, client_id=configured.client_id,
            client_secret=Secret(secret.get_secret_value()) if secret else None,
            scopes=configured.scopes, redirect_uri=configured.redirect_uri, source="settings",
        )
    record = await store.get_provider_config(provider.id)
    if record is None:
        raise ProviderNotConfiguredError(
            provider.id, redirect_uri=settings.default_redirect_uri,
            config_file=str(settings.config) if settings.config else None,
            console_url=provider.oauth.console_url if provider.oauth else None)
    secret_value = None
    if record.secret_blob is not None:
        secret_value = Secret(envelope.open_text(
            record.secret_blob, aad=provider_secret_binding(provider.id)))
    return OAuthClientConfig(
        provider_id=provider.id, client_id=record.client_id, client_secret=secret_value,
        scopes=record.scopes, redirect_uri=record.redirect_uri, source="store",
    )


def configured_scopes(provider: Provider, client: OAuthClientConfig) -> tuple[str, ...]:
    """Return the scopes this deployment asks for: the client's override, else the defaults."""
    if client.scopes is not None:
        return client.scopes
    return provider.oauth.default_scopes if provider.oauth else ()


def validate_scopes(scopes: object, *, field: str) -> tuple[str, ...]:
    """Return ``scopes`` as a de-duplicated tuple, or say which one is malformed."""
    if scopes is None:
        return ()
    if isinstance(scopes, str) or not isinstance(scopes, Iterable):
        raise InvalidInputError(f"{field} must be a list of scope strings.", field=field,
                                hint='Pass e.g. ["openid", "email"].')
    out: dict[str, None] = {}
    for item in scopes:
        if not isinstance(item, str) or not _SCOPE.match(item):
            raise InvalidInputError(
                f"{field} contains an invalid scope {str(item)[:60]!r}.", field=field,
                hint="A scope is printable ASCII without spaces, quotes or backslashes.",
            )
        out.setdefault(item, None)
    return tuple(out)


def _single_line(value: object, *, field: str, limit: int = 4096) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{field} must be a non-empty string.", field=field)
    if _CONTROL.search(value) or len(value) > limit or value != value.strip():
        raise InvalidInputError(
            f"{field} must be one line without surrounding whitespace, at most {limit} "
            "characters.", field=field, hint="Paste the value exactly as the provider shows it.",
        )
    return value


def validate_redirect_uri(value: object, *, field: str = "redirect_uri") -> str:
    """Return an absolute http(s) redirect URI without fragment, or say what is wrong."""
    text = _single_line(value, field=field)
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.fragment:
        raise InvalidInputError(
            f"{field} must be an absolute http(s) URL without a fragment.", field=field,
            hint="Use the public URL of this server followed by /oauth/callback.",
        )
    return text


def provider_config_record(
    provider: Provider, *, client_id: object, client_secret: object, scopes: Sequence[str] | None,
    redirect_uri: object, envelope: Envelope, now: datetime,
) -> tuple[ProviderConfigRecord, Secret | None]:
    """Validate an operator's OAuth client and return its record (secret sealed) and secret."""
    if not provider.is_oauth:
        raise InvalidInputError(
            f"Provider {provider.id!r} does not use OAuth; it has no OAuth client.",
            field="provider_id", hint="Use create_managed_secret for API-key providers.",
        )
    cid = _single_line(client_id, field="client_id", limit=512)
    secret: Secret | None = None
    blob: bytes | None = None
    if client_secret is not None:
        secret = Secret(_single_line(client_secret, field="client_secret"))
        blob = envelope.seal_text(secret.reveal(), aad=provider_secret_binding(provider.id))
    scope_tuple = validate_scopes(scopes, field="scopes") if scopes is not None else None
    uri = validate_redirect_uri(redirect_uri) if redirect_uri is not None else None
    record = ProviderConfigRecord(
        provider_id=provider.id, client_id=cid, secret_blob=blob,
        key_id=key_id_of(blob) if blob else None, scopes=scope_tuple, redirect_uri=uri,
        updated_at=now,
    )
    return record, secret
