"""The offline demo's sandbox consent, clicked through in Debian's Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alter_mcp.config import load_settings
from alter_mcp.testing import SandboxProvider
from alter_mcp.vault import AlterVault
from tests.browser.conftest import shoot

pytestmark = pytest.mark.peers

WIDTHS = (1100, 375)


async def test_sandbox_consent_allow_in_chromium_finishes_the_connect(
        page: Any, tmp_path: Path, master_key: str) -> None:
    """Clicking Allow on the sandbox page reaches the vault's callback on another port."""
    async with SandboxProvider() as sandbox:
        settings = load_settings({"ALTER_MCP_MASTER_KEY": master_key}, data_dir=tmp_path,
                                 connect_port=0, **sandbox.settings_overrides())
        async with AlterVault(settings, caller="demo") as vault:

            async def click_through(url: str) -> None:
                await page.goto(url)
                await page.wait_for_selector("button[value=approve]")
                for width in WIDTHS:
                    await page.set_viewport_size({"width": width, "height": 700})
                    await shoot(page, f"sandbox-consent-{width}")
                await page.click("button[value=approve]")
                await page.wait_for_selector("text=Your Sandbox account is connected")
                for width in WIDTHS:
                    await page.set_viewport_size({"width": width, "height": 700})
                    await shoot(page, f"sandbox-connected-{width}")

            [result] = await vault.connect([sandbox.provider_id], open_browser=click_through,
                                           timeout=60)
            assert result.account_identifier == sandbox.account
            answer = await vault.request("GET", sandbox.api_url + "/items",
                                         grant_id=result.grant_id)
            assert answer.status == 200
    assert page.console_errors == []
