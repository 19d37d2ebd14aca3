"""The provider catalogue as MCP resources: ``providers://catalog`` and ``providers://{id}``.

Catalogue data is public (endpoints, API hosts, scopes, secret field names); each entry also
says whether this deployment can use it now: an OAuth provider needs an OAuth client
configured here, a managed-secret provider needs an operator to store its secret.
"""

from __future__ import annotations

from typing import Any

from fastmcp import FastMCP
from mcp_types import Annotations

from alter_mcp.providers import Provider
from alter_mcp.server.errors import resource_errors
from alter_mcp.vault import AlterVault

__all__ = ["provider_summary", "register_resources"]


def provider_summary(provider: Provider, configured: frozenset[str]) -> dict[str, Any]:
    """Return the catalogue line of one provider."""
    summary: dict[str, Any] = {
        "id": provider.id,
        "name": provider.name,
        "auth_kind": provider.auth_kind.value,
        "category": provider.category,
        "api_hosts": list(provider.api_hosts),
    }
    if provider.is_oauth:
        summary["configured"] = provider.id in configured
        summary["how_to_connect"] = ("call connect" if summary["configured"] else
                                     "an operator must configure its OAuth client first")
    else:
        summary["configured"] = True
        summary["how_to_connect"] = "an operator stores a managed secret and grants it"
    return summary


def _details(provider: Provider, configured: frozenset[str]) -> dict[str, Any]:
    data = provider_summary(provider, configured)
    data.update(docs_url=provider.docs_url, notes=provider.notes,
                injection=[rule.kind.value for rule in provider.injection])
    if provider.oauth is not None:
        data["oauth"] = {
            "default_scopes": list(provider.oauth.default_scopes),
            "scope_separator": provider.oauth.scope_separator,
            "pkce": provider.oauth.pkce,
            "authorization_url": provider.oauth.authorization_url,
            "console_url": provider.oauth.console_url,
        }
    if provider.connection:
        data["connection"] = [{"name": v.name, "label": v.label, "source": v.source.value}
                              for v in provider.connection]
        data["api_base_url"] = provider.api_base_url
    if provider.default_headers:
        data["default_headers"] = dict(provider.default_headers)
    if provider.secret_fields:
        data["secret_fields"] = [{"name": f.name, "label": f.label, "required": f.required}
                                 for f in provider.secret_fields]
    return {k: v for k, v in data.items() if v is not None}


def register_resources(server: FastMCP, vault: AlterVault) -> None:
    """Add the catalogue resources to ``server``."""
    readonly = Annotations(audience=["assistant", "user"], priority=0.5)

    @server.resource("providers://catalog", name="provider_catalog",
                     mime_type="application/json", annotations=readonly)
    async def catalog() -> dict[str, Any]:
        """Every provider this server knows: id, name, auth kind, API hosts, configured.

        Read it to find the provider id to pass to `connect`, `list_grants` or
        `authenticated_request`, and the hosts a provider's credential may be sent to.
        """
        with resource_errors():
            configured = await vault.configured_providers()
            providers = [provider_summary(p, configured) for p in vault.catalog.providers()]
            return {"count": len(providers), "providers": providers}

    @server.resource("providers://{provider_id}", name="provider",
                     mime_type="application/json", annotations=readonly)
    async def provider(provider_id: str) -> dict[str, Any]:
        """One provider's entry: API hosts, default scopes, secret fields, configured here.

        Read it before `connect` to see the default scopes, or before
        `authenticated_request` to see which hosts the credential may be sent to. Hosts
        written `{name}` are per account: `list_grants` shows each grant's own hosts and
        `api_base_url`.
        """
        with resource_errors():
            configured = await vault.configured_providers()
            return _details(vault.catalog.get(provider_id), configured)
