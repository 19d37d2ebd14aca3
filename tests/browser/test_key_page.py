"""The key page of a key-based provider, filled in and posted by Debian's Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alter_mcp.config import load_settings
from alter_mcp.models import ConnectSessionStatus
from alter_mcp.vault import AlterVault
from tests.browser.conftest import shoot
from tests.oauth.test_key_page import API_KEY, PROVIDER, entry
from tests.peers.httpbin import HttpbinPeer

pytestmark = pytest.mark.peers


async def test_key_page_in_chromium_stores_the_key(
        page: Any, tmp_path: Path, master_key: str, httpbin_peer: HttpbinPeer) -> None:
    """A user types the key into the page, presses Save, and the grant works."""
    settings = load_settings(
        {"ALTER_MCP_DATA_DIR": str(tmp_path / "data"), "ALTER_MCP_MASTER_KEY": master_key},
        catalog={PROVIDER: entry(httpbin_peer)}, allow_insecure_http=True, connect_port=0)
    async with AlterVault(settings, caller="tests") as vault:
        link = await vault.create_connect_session(allowed_providers=[PROVIDER])
        await page.goto(link.connect_url)
        for width in (1100, 375):
            await page.set_viewport_size({"width": width, "height": 760})
            await shoot(page, f"key-page-{width}")
        await page.click("button[type=submit]")  # empty: the browser's own check stops it
        assert (await vault.connect_status(link.session_id)).status is \
            ConnectSessionStatus.PENDING
        await page.fill("#field-api_key", API_KEY)
        await page.fill("#label", "work")
        await page.click("button[type=submit]")
        await page.wait_for_selector("text=Your Echo API account is connected")
        for width in (1100, 375):
            await page.set_viewport_size({"width": width, "height": 760})
            await shoot(page, f"key-page-saved-{width}")
        session = await vault.connect_status(link.session_id)
        assert session.status is ConnectSessionStatus.COMPLETED
        answer = await vault.request("GET", httpbin_peer.url("/headers"),
                                     grant_id=session.grant_ids[0])
        assert answer.status == 200 and API_KEY not in str(answer.to_dict())
        assert API_KEY not in page.url and API_KEY not in await page.content()
    assert page.console_errors == []
