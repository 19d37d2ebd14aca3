"""Test helpers for alter-mcp and for your own tests: a sandbox OAuth provider on loopback.

::

    from alter_mcp.config import load_settings
    from alter_mcp.testing import SandboxProvider
    from alter_mcp.vault import AlterVault

    async with SandboxProvider() as sandbox:
        settings = load_settings(data_dir=tmp_path, connect_port=0,
                                 **sandbox.settings_overrides())
        async with AlterVault(settings) as vault:
            [result] = await vault.connect([sandbox.provider_id], open_browser=sandbox.approve)
            answer = await vault.request("GET", sandbox.api_url + "/me",
                                         grant_id=result.grant_id)
"""

from __future__ import annotations

from alter_mcp.testing._authserver import SCOPES, Dialect, SandboxToken
from alter_mcp.testing._sandbox import SandboxProvider

__all__ = ["SCOPES", "Dialect", "SandboxProvider", "SandboxToken"]
