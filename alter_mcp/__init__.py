"""alter-mcp: an MCP server whose vault calls APIs for agents without showing them a credential.

Public names are imported lazily, so ``import alter_mcp`` stays cheap and builds nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alter_mcp.errors import (
        AlterError,
        AmbiguousGrantError,
        GrantNotFoundError,
        PolicyViolationError,
        ReAuthRequiredError,
        ScopeReauthRequiredError,
        TokenRefreshInProgressError,
    )
    from alter_mcp.models import (
        AgentPrincipal,
        CallerType,
        GroupPrincipal,
        HttpMethod,
        Identity,
        SystemPrincipal,
        UserPrincipal,
    )
    from alter_mcp.vault import AlterVault

__all__ = [
    "AgentPrincipal",
    "AlterError",
    "AlterVault",
    "AmbiguousGrantError",
    "CallerType",
    "GrantNotFoundError",
    "GroupPrincipal",
    "HttpMethod",
    "Identity",
    "PolicyViolationError",
    "ReAuthRequiredError",
    "ScopeReauthRequiredError",
    "SystemPrincipal",
    "TokenRefreshInProgressError",
    "UserPrincipal",
]

_HOMES = {
    "AlterVault": "alter_mcp.vault",
    "AgentPrincipal": "alter_mcp.models",
    "CallerType": "alter_mcp.models",
    "GroupPrincipal": "alter_mcp.models",
    "HttpMethod": "alter_mcp.models",
    "Identity": "alter_mcp.models",
    "SystemPrincipal": "alter_mcp.models",
    "UserPrincipal": "alter_mcp.models",
}


def __getattr__(name: str) -> Any:
    if name in __all__:
        module = importlib.import_module(_HOMES.get(name, "alter_mcp.errors"))
        return getattr(module, name)
    raise AttributeError(f"module 'alter_mcp' has no attribute {name!r}")
