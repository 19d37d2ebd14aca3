"""Who is calling this tool: the identity of one MCP request, bound to a vault view.

Over HTTP the identity comes from the request's verified credential (``AlterAuth``); nothing
else is trusted there. Over stdio and in memory it comes from the server's identity source
(the system principal, or the configured user token verified on every call). Either way the
MCP client's name, the tool and the request id are added for the audit log.
"""

from __future__ import annotations

from fastmcp import Context
from fastmcp.server.dependencies import get_access_token

from alter_mcp.errors import AuthenticationError
from alter_mcp.identity import IdentitySource, resolve_identity
from alter_mcp.models import AgentPrincipal, CallerType, Identity
from alter_mcp.server.auth import AlterAccessToken
from alter_mcp.vault import AlterVault

__all__ = ["CallerBinder", "client_name"]

_HTTP_TRANSPORTS = ("streamable-http", "sse")


def client_name(ctx: Context) -> str | None:
    """Return the MCP client's name from its initialize ``clientInfo`` or request envelope."""
    try:
        params = ctx.session.client_params
    except RuntimeError:
        return None
    if params is None:
        return None
    name = params.client_info.name
    return name[:100] if name else None


def _request_id(ctx: Context) -> str | None:
    try:
        return ctx.request_id[:100]
    except RuntimeError:
        return None


class CallerBinder:
    """Builds the per-request identity and returns the vault view acting as it."""

    def __init__(self, vault: AlterVault, default: IdentitySource | None = None) -> None:
        self.vault = vault
        self.default = default

    async def identity(self, ctx: Context, tool: str) -> Identity:
        """Return the identity of the request ``ctx`` belongs to, as ``tool`` sees it."""
        token = get_access_token()
        if isinstance(token, AlterAccessToken):
            ident = token.identity
        elif ctx.transport in _HTTP_TRANSPORTS:
            raise AuthenticationError("This HTTP request carries no verified identity.",
                                      hint="Send a bearer token or an agent API key.")
        elif self.default is not None:
            ident = await resolve_identity(self.default, caller=None,
                                           caller_type=CallerType.MCP_CLIENT)
        else:
            # The vault's own source: the system principal, or the user signed in with
            # ``authenticate()``.
            ident = await self.vault.current_identity()
        client = client_name(ctx)
        update: dict[str, object] = {"mcp_client": client, "tool": tool,
                                     "request_id": _request_id(ctx)}
        if not isinstance(ident.principal, AgentPrincipal):  # an agent's caller is its key name
            update.update(caller=client or "mcp-client", caller_type=CallerType.MCP_CLIENT)
        return ident.model_copy(update=update)

    async def vault_for(self, ctx: Context, tool: str) -> AlterVault:
        """Return a view of the vault acting as this request's caller."""
        return self.vault.with_identity(await self.identity(ctx, tool))
