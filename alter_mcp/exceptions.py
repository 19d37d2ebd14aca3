"""The exception tree under the Alter Vault SDK's module path (``alter_sdk.exceptions``).

The same classes as :mod:`alter_mcp.errors` (one tree, rooted in ``AlterError``), so code
written against the SDK's ``alter_sdk.exceptions`` runs with only the package name changed.
"""

from __future__ import annotations

# This module is the errors module under a second name: every name, the same objects.
from alter_mcp.errors import *  # noqa: F403
from alter_mcp.errors import __all__ as __all__
