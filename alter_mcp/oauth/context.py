"""What every OAuth component shares: settings, store, keys, audit, clock, HTTP and catalogue."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from alter_mcp.audit import AuditLog
from alter_mcp.config import Settings
from alter_mcp.crypto import Envelope
from alter_mcp.errors import InvalidInputError
from alter_mcp.models import CallerType, GroupPrincipal, Identity, Principal
from alter_mcp.oauth.client import OAuthHttp
from alter_mcp.oauth.clients import OAuthClientConfig, configured_scopes, resolve_client
from alter_mcp.providers.schema import Provider
from alter_mcp.store import Store

__all__ = ["OAuthContext", "ProviderLookup", "owner_identity"]

#: Returns a catalogue entry by id or raises ``ProviderNotFoundError``.
ProviderLookup = Callable[[str], Provider]


@dataclass(frozen=True, slots=True)
class OAuthContext:
    """The injected seams of the OAuth package (one per vault)."""

    settings: Settings
    store: Store
    envelope: Envelope
    audit: AuditLog
    clock: Callable[[], datetime]
    oauth: OAuthHttp
    lookup: ProviderLookup

    def oauth_provider(self, provider_id: str, *, field: str = "provider_id") -> Provider:
        """Return the catalogue entry of an OAuth provider, or say why it cannot connect."""
        provider = self.lookup(provider_id)
        if not provider.is_oauth:
            raise InvalidInputError(
                f"Provider {provider_id!r} does not use OAuth, so it cannot be connected.",
                field=field,
                hint="Ask an operator to provision a managed-secret grant for it instead.",
            )
        return provider

    async def client_for(self, provider: Provider) -> OAuthClientConfig:
        """Return this deployment's OAuth client for ``provider``."""
        return await resolve_client(provider, settings=self.settings, store=self.store,
                                    envelope=self.envelope)

    @staticmethod
    def requested_scopes(
        provider: Provider, client: OAuthClientConfig, extra: Sequence[str]
    ) -> tuple[str, ...]:
        """Return the configured scopes followed by a session's additional ones."""
        merged = dict.fromkeys(configured_scopes(provider, client))
        merged.update(dict.fromkeys(extra))
        return tuple(merged)

    def redirect_uri(self, client: OAuthClientConfig, base_url: str) -> str:
        """Return the callback URL the provider redirects to."""
        return client.redirect_uri or base_url.rstrip("/") + "/oauth/callback"


def owner_identity(owner: Principal, *, caller: str) -> Identity | None:
    """Return an audit identity acting as a session's owner (None for a group)."""
    if isinstance(owner, GroupPrincipal):
        return None
    return Identity(principal=owner, caller=caller, caller_type=CallerType.SERVICE)
