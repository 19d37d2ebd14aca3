"""One connect in a real browser: Debian's Chromium, driven by Playwright, through the
connect page and oidc-provider's own interactive login and consent pages."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from alter_mcp.models import ConnectSessionStatus
from tests.oauth.conftest import PROVIDER, VaultFactory, oidc_entry
from tests.peers.fixtures import default_oidc_config
from tests.peers.oidc import OidcProviderPeer, assert_loopback_url

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]

pytestmark = [
    pytest.mark.peers,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


async def test_browser_connect_through_interactive_login_and_consent(
    make_vault: VaultFactory,
    oidc_factory: Callable[[Mapping[str, Any]], OidcProviderPeer],
    tmp_path: Path,
) -> None:
    """Chromium opens the link, signs in and consents at the provider, and lands connected."""
    from playwright.async_api import Route, async_playwright

    config = copy.deepcopy(default_oidc_config()) | {"interactive": True}
    peer = oidc_factory(config)
    vault = await make_vault(peer=peer, entry=oidc_entry(peer))
    link = await vault.create_connect_session(allowed_providers=[PROVIDER])

    async def loopback_only(route: Route) -> None:
        # The provider's built-in pages import web fonts: nothing leaves this machine.
        try:
            assert_loopback_url(route.request.url)
        except ValueError:
            await route.abort()
        else:
            await route.continue_()

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                   args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.route("**/*", loopback_only)
            await page.goto(link.connect_url, wait_until="domcontentloaded")
            assert urlsplit(page.url).port == peer.port
            await page.fill("input[name=login]", "alice")
            await page.fill("input[name=password]", "any password")
            await page.click("button[type=submit]")
            await page.wait_for_selector("text=Continue")
            await page.click("button[type=submit]")
            await page.wait_for_url("**/oauth/callback?**", wait_until="domcontentloaded")
            heading = await page.text_content("h1")
            await page.screenshot(path=str(tmp_path / "connected.png"))
        finally:
            await browser.close()
    assert heading == "OIDC test connected"
    session = await vault.connect_status(link.session_id)
    assert session.status is ConnectSessionStatus.COMPLETED
    grant = await vault.get_grant(session.grant_ids[0])
    assert grant.account_identifier == "alice@example.test"
