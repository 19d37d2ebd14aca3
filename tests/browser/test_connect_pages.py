"""The connect pages in Debian's Chromium: picker, success, denied consent, expired link.

Playwright drives the browser through oidc-provider's own interactive login and consent
pages. Screenshots go to ``test-artifacts/browser/`` for people to look at.
"""

from __future__ import annotations

from typing import Any

import pytest

from alter_mcp.models import ConnectSessionStatus
from alter_mcp.store import AuditFilter
from tests.browser.conftest import shoot
from tests.oauth.conftest import PROVIDER, Clock, VaultFactory, oidc_entry
from tests.peers.oidc import OidcProviderPeer

pytestmark = [pytest.mark.peers, pytest.mark.slow]


async def accessibility(page: Any) -> dict[str, Any]:
    """Return what a screen-reader or keyboard user meets first on the page."""
    result: dict[str, Any] = await page.evaluate("""() => {
        const focused = document.activeElement;
        const style = getComputedStyle(focused);
        return {lang: document.documentElement.lang, title: document.title,
                h1: [...document.querySelectorAll('h1')].map(h => h.textContent),
                main: document.querySelectorAll('main').length,
                focused: focused.tagName + ':' + focused.textContent.trim(),
                outline: style.outlineStyle + ' ' + style.outlineWidth,
                scripts: document.scripts.length,
                external: [...document.querySelectorAll('[src],link[href]')].length};
    }""")
    return result


async def sign_in(page: Any, login: str = "alice") -> None:
    """Fill oidc-provider's own login form."""
    await page.fill("input[name=login]", login)
    await page.fill("input[name=password]", "any password")
    await page.click("button[type=submit]")
    await page.wait_for_selector("text=Continue")


async def test_browser_picker_login_consent_success_then_link_used(
        make_vault: VaultFactory, interactive_peer: OidcProviderPeer, page: Any) -> None:
    """Keyboard through the picker, sign in and consent at the provider, land connected."""
    second = oidc_entry(interactive_peer) | {"name": "Second IdP"}
    vault = await make_vault(peer=interactive_peer, entry=oidc_entry(interactive_peer),
                             more={"second-idp": second})
    link = await vault.create_connect_session(allowed_providers=[PROVIDER, "second-idp"])
    response = await page.goto(link.connect_url, wait_until="domcontentloaded")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp and "script-src" not in csp
    await shoot(page, "1-picker")
    seen = await accessibility(page)
    assert seen["lang"] == "en" and seen["h1"] == ["Choose an account to connect"]
    assert seen["main"] == 1 and seen["scripts"] == 0 and seen["external"] == 0
    assert seen["focused"].startswith("A:OIDC test") and seen["outline"] == "solid 3px"
    assert await page.get_attribute("nav", "aria-label") == "Services to connect"
    await page.set_viewport_size({"width": 360, "height": 640})
    await shoot(page, "1-picker-narrow")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360

    await page.keyboard.press("Enter")  # the first choice has focus
    await page.wait_for_selector("input[name=login]")
    await sign_in(page)
    async with page.expect_response(lambda r: "/oauth/callback" in r.url) as arrived:
        await page.click("button[type=submit]")
    assert (await arrived.value).status == 200
    await page.wait_for_load_state("domcontentloaded")
    await shoot(page, "2-connected")
    done = await accessibility(page)
    assert done["h1"] == ["OIDC test connected"] and done["focused"].startswith("H1:")
    assert "alice@example.test" in await page.text_content("main")
    session = await vault.connect_status(link.session_id)
    assert session.status is ConnectSessionStatus.COMPLETED

    again = await page.goto(link.connect_url, wait_until="domcontentloaded")
    assert again.status == 409
    await shoot(page, "3-link-used")
    assert (await accessibility(page))["h1"] == ["This link was already used"]
    assert page.console_errors == []


async def test_browser_denied_consent_shows_you_declined(
        make_vault: VaultFactory, interactive_peer: OidcProviderPeer, page: Any) -> None:
    """Cancelling at the provider's consent page lands on a plain-words failure page."""
    vault = await make_vault(peer=interactive_peer, entry=oidc_entry(interactive_peer))
    link = await vault.create_connect_session(allowed_providers=[PROVIDER])
    await page.goto(link.connect_url, wait_until="domcontentloaded")
    await sign_in(page)
    async with page.expect_response(lambda r: "/oauth/callback" in r.url) as arrived:
        await page.click("text=[ Cancel ]")
    assert (await arrived.value).status == 403
    await page.wait_for_load_state("domcontentloaded")
    await shoot(page, "4-declined")
    seen = await accessibility(page)
    assert seen["h1"] == ["You declined"] and seen["lang"] == "en"
    text = await page.text_content("main")
    assert "nothing was connected" in text and "access_denied" in text
    assert page.console_errors == []
    events = await vault.audit_log.events(AuditFilter(action="connect.callback"))
    assert [(e.outcome.value, e.error) for e in events] == [("denied", "connect_failed")]


@pytest.mark.parametrize("page", ["light", "dark"], indirect=True)
async def test_browser_expired_link_says_so_in_both_colour_schemes(
        make_vault: VaultFactory, interactive_peer: OidcProviderPeer, page: Any,
        clock: Clock) -> None:
    """A link opened after its lifetime shows the expired page (410), light and dark."""
    vault = await make_vault(peer=interactive_peer, entry=oidc_entry(interactive_peer))
    link = await vault.create_connect_session(allowed_providers=[PROVIDER])
    clock.advance(vault.settings.connect_session_ttl + 1)
    response = await page.goto(link.connect_url, wait_until="domcontentloaded")
    assert response.status == 410
    scheme = await page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    await shoot(page, f"5-expired-{'dark' if scheme else 'light'}")
    seen = await accessibility(page)
    assert seen["h1"] == ["This link has expired"]
    assert "new connect link" in await page.text_content("main")
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == ("rgb(22, 22, 26)" if scheme else "rgb(255, 255, 255)")
    assert page.console_errors == []
