"""Fixtures for the browser tests: Chromium via Playwright, an interactive oidc-provider."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.oauth.conftest import clock, make_vault  # noqa: F401 - fixtures used here too
from tests.oauth.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.peers.fixtures import _require_node, default_oidc_config
from tests.peers.oidc import OidcProviderPeer, assert_loopback_url

#: Screenshots land here (gitignored) for people to look at after a run.
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


@pytest.fixture(scope="module")
def interactive_peer() -> Iterator[OidcProviderPeer]:
    """Run oidc-provider with its own HTML login and consent pages."""
    config = copy.deepcopy(default_oidc_config()) | {"interactive": True}
    peer = OidcProviderPeer(node=_require_node()).start(config)
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
async def page(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Yield a fresh Chromium page that may reach loopback only; collect CSP violations."""
    from playwright.async_api import Route, async_playwright

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed")
    scheme = getattr(request, "param", "light")

    async def loopback_only(route: Route) -> None:
        # oidc-provider's pages import web fonts: nothing may leave this machine.
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
            context = await browser.new_context(color_scheme=scheme,
                                                viewport={"width": 900, "height": 640})
            opened = await context.new_page()
            # What the CSP blocked (an HTTP error status is reported too, and is expected).
            opened.console_errors = []  # type: ignore[attr-defined]
            opened.on("console", lambda m: "Content Security Policy" in m.text
                      and opened.console_errors.append(m.text))
            await opened.route("**/*", loopback_only)
            yield opened
        finally:
            await browser.close()


async def shoot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as a test artifact and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
