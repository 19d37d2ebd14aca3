"""Who is calling: identity sources, and the rule of which grants a principal may use.

An identity is established per call. A vault is given a static :class:`Identity`, a callable
returning one (sync or async), a ``user_token_getter`` returning the end user's JWT (verified
on every call, as the MCP server verifies bearer tokens), an agent key, or nothing (the system
principal). The MCP server builds one per request from the verified bearer token or agent key
and binds it with ``vault.with_identity``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable

from alter_mcp.config import Settings
from alter_mcp.errors import AlterError, AuthenticationError, ConfigurationError, InvalidInputError
from alter_mcp.models import (
    AgentPrincipal,
    CallerType,
    Grant,
    GroupPrincipal,
    Identity,
    SystemPrincipal,
    UserPrincipal,
)

__all__ = [
    "IdentitySource",
    "TokenGetter",
    "can_use",
    "issuer_for_idp",
    "resolve_identity",
    "token_source",
]

#: A static identity, or a callable (sync or async) returning the identity of the current call.
IdentitySource = Identity | Callable[[], Identity | Awaitable[Identity]]
#: Returns the current end user's JWT (sync or async), as the Alter SDK's ``user_token_getter``.
TokenGetter = Callable[[], str | Awaitable[str | None] | None]


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


def token_source(getter: TokenGetter, verify: Callable[[str], Awaitable[Identity]]
                 ) -> Callable[[], Awaitable[Identity]]:
    """Return an identity source that asks ``getter`` for a JWT and verifies it on every call."""
    if not callable(getter):
        raise InvalidInputError("user_token_getter must be a function returning a JWT.",
                                field="user_token_getter",
                                hint="Pass e.g. user_token_getter=lambda: current_user_jwt().")

    async def source() -> Identity:
        try:
            produced = getter()
            token = await produced if inspect.isawaitable(produced) else produced
        except AlterError:
            raise
        except Exception as exc:
            # The getter is the application's code: name what failed, keep it chained.
            raise AuthenticationError(
                f"user_token_getter raised {type(exc).__name__}, so the user is unknown.",
                hint="Fix the getter; it must return the signed-in user's JWT.",
                reason="token_getter_failed") from exc
        if not isinstance(token, str) or not token.strip():
            got = "an empty string" if isinstance(token, str) else type(token).__name__
            raise AuthenticationError(
                f"user_token_getter returned {got}, not a JWT, so the user is unknown.",
                hint="Return the signed-in user's JWT (a string); build the vault without "
                     "user_token_getter to act as the system principal.",
                reason="no_user_token")
        return await verify(token)

    return source


def issuer_for_idp(idp_id: str, settings: Settings) -> str:
    """Return the configured issuer that ``idp_id`` (the issuer URL or ``idp_id``) names."""
    issuer = settings.idp_issuer
    if issuer is None:
        raise ConfigurationError(
            "No identity provider is configured, so a group cannot be named by idp_id.",
            setting="ALTER_MCP_IDP_ISSUER",
            hint="Set ALTER_MCP_IDP_ISSUER (and optionally ALTER_MCP_IDP_ID), or give "
                 "GroupPrincipal(issuer=…, group=…).")
    if idp_id in (issuer, settings.idp_id):
        return issuer
    known = f"{issuer!r}" + (f" or {settings.idp_id!r}" if settings.idp_id else "")
    raise InvalidInputError(
        f"idp_id {idp_id[:100]!r} is not this vault's identity provider.",
        field="principal.idp_id",
        hint=f"Use {known} (ALTER_MCP_IDP_ISSUER / ALTER_MCP_IDP_ID).")
