"""Who is calling: identity sources, and the rule of which grants a principal may use.

An identity is established per call. A vault is given a static :class:`Identity`, a callable
returning one (sync or async), or nothing (the system principal). The MCP server builds one per
request from the verified bearer token or agent key and binds it with ``vault.with_identity``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable

from alter_mcp.models import (
    AgentPrincipal,
    CallerType,
    Grant,
    GroupPrincipal,
    Identity,
    SystemPrincipal,
    UserPrincipal,
)

__all__ = ["IdentitySource", "can_use", "resolve_identity"]

#: A static identity, or a callable (sync or async) returning the identity of the current call.
IdentitySource = Identity | Callable[[], Identity | Awaitable[Identity]]


async def resolve_identity(
    source: IdentitySource | None, *, caller: str | None, caller_type: CallerType
) -> Identity:
    """Return the identity for this call, defaulting to the system principal."""
    if source is None:
        return _system(caller, caller_type)
    if isinstance(source, Identity):
        identity = source
    else:
        produced = source()
        identity = await produced if inspect.isawaitable(produced) else produced
        if not isinstance(identity, Identity):
            raise TypeError("an identity source must return an alter_mcp.models.Identity")
    if identity.caller is None and caller is not None:
        identity = identity.model_copy(update={"caller": caller, "caller_type": caller_type})
    return identity


@functools.lru_cache(maxsize=256)
def _system(caller: str | None, caller_type: CallerType) -> Identity:
    # Identities are frozen, so the system identity of a caller is built once and shared.
    return Identity(principal=SystemPrincipal(), caller=caller, caller_type=caller_type)


def can_use(identity: Identity, grant: Grant) -> bool:
    """Return True when the identity's principal may see and use the grant."""
    owner = grant.owner
    principal = identity.principal
    if isinstance(owner, UserPrincipal):
        return isinstance(principal, UserPrincipal) and owner.key == principal.key
    if isinstance(owner, GroupPrincipal):
        return (
            isinstance(principal, UserPrincipal)
            and principal.issuer == owner.issuer
            and owner.group in identity.groups
        )
    if isinstance(owner, SystemPrincipal):
        return isinstance(principal, SystemPrincipal)
    if isinstance(owner, AgentPrincipal):
        return isinstance(principal, AgentPrincipal) and owner.key == principal.key
    return False
