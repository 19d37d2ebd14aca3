"""``AlterVault``: the async facade with one method per user action.

The actions are grouped by concept in the modules of this package; ``AlterVault`` joins them.
Every action runs in the same order: identify the caller, resolve the grant, check it may be
used, act, and write the audit event before answering. Errors are typed; none carries a secret.
"""

from __future__ import annotations

from alter_mcp.vault._base import secret_binding
from alter_mcp.vault.access import AccessActions
from alter_mcp.vault.connect import ConnectActions
from alter_mcp.vault.grants import GrantActions
from alter_mcp.vault.keys import KeyActions
from alter_mcp.vault.secrets import SecretActions

__all__ = ["AlterVault", "secret_binding"]


class AlterVault(GrantActions, ConnectActions, SecretActions, AccessActions, KeyActions):
    """The embedded credential vault: grants, connections, requests, secrets and audit."""
