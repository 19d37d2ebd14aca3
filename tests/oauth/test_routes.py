"""The connect pages as HTTP: safe headers, plain pages, and an app the server can mount."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from tests.oauth.conftest import PROVIDER, VaultFactory
from tests.peers.oidc import BrowserlessAgent

pytestmark = pytest.mark.peers


async def test_routes_pages_forbid_caching_referrers_and_external_assets(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent,
) -> None:
    """Every page is no-store, no-referrer, framing-proof and loads nothing from elsewhere."""
    vault = await make_vault()
    link = await vault.create_connect_session(allowed_providers=[PROVIDER])
    base = link.connect_url.split("/connect/")[0]
    for url, status in ((base + "/connect/not-a-token", 404),
                        (base + "/oauth/callback?state=x&code=y", 400),
                        (link.connect_url, 303)):
        response = await browser_agent.get(url)
        assert response.status_code == status
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert "http" not in response.text.replace(base, "")
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    assert "path=/oauth/callback" in cookie


async def test_routes_app_mounts_with_public_url_and_secure_cookie(make_vault: VaultFactory,
                                                                   ) -> None:
    """With a public https URL the app serves the link itself; no loopback listener starts."""
    vault = await make_vault(public_url="https://vault.example.test")
    link = await vault.create_connect_session(allowed_providers=[PROVIDER])
    assert link.connect_url.startswith("https://vault.example.test/connect/")
    transport = httpx2.ASGITransport(app=vault.connect_app())
    async with httpx2.AsyncClient(transport=transport, base_url="https://vault.example.test"
                                  ) as client:
        response = await client.get(urlsplit(link.connect_url).path)
    assert response.status_code == 303
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["redirect_uri"] == ["https://vault.example.test/oauth/callback"]
    assert "secure" in response.headers["set-cookie"].lower()
    assert vault._oauth._loopback is None


async def test_routes_completed_link_cannot_be_reused(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent,
) -> None:
    """Opening a link whose session already completed says so instead of starting again."""
    vault = await make_vault()
    link = await vault.create_connect_session(allowed_providers=[PROVIDER])
    assert (await browser_agent.follow_response(link.connect_url)).status_code == 200
    again = await browser_agent.get(link.connect_url)
    assert again.status_code == 409 and "already used" in again.text
