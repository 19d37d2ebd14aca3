"""Browser-based MCP clients: metadata readable cross-origin, CORS on /mcp for allowed origins,
and DNS-rebinding protection unchanged for everything else. Real HTTP requests to uvicorn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
import uvicorn

from alter_mcp.vault import AlterVault
from tests.browser.conftest import page  # noqa: F401 - Chromium via Playwright
from tests.peers.mockidp import MockIdpPeer
from tests.peers.process import free_port
from tests.server.conftest import VaultFactory, audience, http_server
from tests.server.test_http_auth import INIT, MCP_HEADERS

APP = "http://app.example.test:3000"
EVIL = "http://evil.example"
METADATA = ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp")


@pytest.fixture
async def web_vault(make_vault: VaultFactory, mockidp: MockIdpPeer) -> AlterVault:
    """An HTTP vault that trusts the browser origin ``APP``."""
    return await make_vault(public_url=f"http://127.0.0.1:{free_port()}",
                            idp_issuer=mockidp.issuer, allowed_origins=[APP])


def preflight(origin: str) -> dict[str, str]:
    """Return the headers of a browser's CORS preflight for an MCP POST from ``origin``."""
    return {"origin": origin, "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type,mcp-protocol-version"}


async def test_browser_metadata_is_readable_from_any_origin(web_vault: AlterVault) -> None:
    """A foreign Origin reads both metadata documents (and their preflight), not a 403."""
    async with http_server(web_vault) as url, httpx2.AsyncClient(timeout=10,
                                                                 trust_env=False) as client:
        reads = [await client.get(url + path, headers={"origin": EVIL}) for path in METADATA]
        checks = [await client.options(url + path, headers={
            "origin": EVIL, "access-control-request-method": "GET"}) for path in METADATA]
    for response in reads:
        assert response.status_code == 200 and response.json()["resource"] == url + "/mcp"
        assert response.headers["access-control-allow-origin"] == "*"
    assert [r.status_code for r in checks] == [200, 200]


async def test_browser_metadata_still_checks_host(web_vault: AlterVault) -> None:
    """DNS rebinding: a foreign Host gets 421 even on the public metadata."""
    async with http_server(web_vault) as url, httpx2.AsyncClient(timeout=10,
                                                                 trust_env=False) as client:
        response = await client.get(url + METADATA[1], headers={"host": "evil.example",
                                                                "origin": EVIL})
    assert response.status_code == 421


async def test_browser_allowed_origin_gets_cors_on_mcp(web_vault: AlterVault,
                                                       mockidp: MockIdpPeer) -> None:
    """An allowed origin's preflight is answered; its 401 challenge and session id are
    readable by the page."""
    token = mockidp.token(sub="alice", aud=audience(web_vault))
    async with http_server(web_vault) as url, httpx2.AsyncClient(timeout=10,
                                                                 trust_env=False) as client:
        check = await client.options(url + "/mcp", headers=preflight(APP))
        challenged = await client.post(url + "/mcp", json=INIT,
                                       headers={**MCP_HEADERS, "origin": APP})
        opened = await client.post(url + "/mcp", json=INIT, headers={
            **MCP_HEADERS, "origin": APP, "authorization": f"Bearer {token}"})
    assert check.status_code == 200
    assert check.headers["access-control-allow-origin"] == APP
    assert "POST" in check.headers["access-control-allow-methods"]
    assert "authorization" in check.headers["access-control-allow-headers"].lower()
    assert challenged.status_code == 401 and challenged.headers["www-authenticate"]
    for response in (challenged, opened):
        assert response.headers["access-control-allow-origin"] == APP
        exposed = response.headers["access-control-expose-headers"].lower()
        assert "www-authenticate" in exposed and "mcp-session-id" in exposed
    assert opened.status_code == 200 and opened.headers["mcp-session-id"]
    assert "access-control-allow-credentials" not in opened.headers


async def test_browser_foreign_origin_is_refused_everywhere_else(web_vault: AlterVault,
                                                                 mockidp: MockIdpPeer) -> None:
    """A foreign Origin gets 403 on /mcp (preflight and POST, even with a valid token), the
    connect pages and /health, and no CORS header anywhere."""
    token = mockidp.token(sub="alice", aud=audience(web_vault))
    async with http_server(web_vault) as url, httpx2.AsyncClient(timeout=10,
                                                                 trust_env=False) as client:
        answers = [
            await client.options(url + "/mcp", headers=preflight(EVIL)),
            await client.post(url + "/mcp", json=INIT, headers={
                **MCP_HEADERS, "origin": EVIL, "authorization": f"Bearer {token}"}),
            await client.get(url + "/connect/some-session", headers={"origin": EVIL}),
            await client.get(url + "/health", headers={"origin": EVIL}),
            await client.get(url + "/health", headers={"origin": APP}),
        ]
    assert [r.status_code for r in answers] == [403, 403, 403, 403, 200]
    assert not any("access-control-allow-origin" in r.headers for r in answers)


async def test_browser_no_cors_without_allowed_origins(make_vault: VaultFactory,
                                                       mockidp: MockIdpPeer) -> None:
    """With no allowed origins configured, /mcp answers no preflight, even to its own origin."""
    vault = await make_vault(public_url=f"http://127.0.0.1:{free_port()}",
                             idp_issuer=mockidp.issuer)
    async with http_server(vault) as url, httpx2.AsyncClient(timeout=10,
                                                             trust_env=False) as client:
        own = await client.options(url + "/mcp", headers=preflight(url))
    assert own.status_code == 405 and "access-control-allow-origin" not in own.headers


#: What a browser MCP client does first: read the metadata, then POST to /mcp and read the
#: challenge and session id. Returns what the page could see (or the fetch error).
PAGE_SCRIPT = """async ([base, token, init]) => {
  const seen = {};
  try {
    const meta = await fetch(base + "/.well-known/oauth-protected-resource/mcp");
    seen.resource = (await meta.json()).resource;
  } catch (e) { seen.metadata_error = String(e); }
  const headers = {"content-type": "application/json",
                   "accept": "application/json, text/event-stream"};
  if (token) headers.authorization = "Bearer " + token;
  try {
    const r = await fetch(base + "/mcp", {method: "POST", headers, body: JSON.stringify(init)});
    seen.status = r.status;
    seen.challenge = r.headers.get("www-authenticate");
    seen.session = r.headers.get("mcp-session-id");
  } catch (e) { seen.mcp_error = String(e); }
  return seen;
}"""


async def blank_page(scope: Any, receive: Any, send: Any) -> None:
    """Serve an empty HTML page (the browser client's own origin)."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/html")]})
    await send({"type": "http.response.body", "body": b"<!doctype html><p>app"})


@asynccontextmanager
async def page_origin() -> AsyncIterator[str]:
    """Serve ``blank_page`` on loopback (so Chromium lets it reach loopback); yield its origin."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(blank_page, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off",
                                           log_config=None))
    task = asyncio.get_running_loop().create_task(server.serve())
    for _ in range(500):  # uvicorn's own readiness flag is the signal, as in http_server
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "the page server did not start"
    try:
        yield f"http://localhost:{port}"
    finally:
        server.should_exit = True
        await task


async def run_page(tab: Any, origin: str, url: str, token: str | None) -> dict[str, Any]:
    """Open the page at ``origin`` in ``tab`` and run ``PAGE_SCRIPT`` against ``url``."""
    await tab.goto(origin + "/app.html")
    result: dict[str, Any] = await tab.evaluate(PAGE_SCRIPT, [url, token, INIT])
    return result


async def test_browser_chromium_client_on_allowed_origin_connects(
        make_vault: VaultFactory, mockidp: MockIdpPeer, page: Any,  # noqa: F811 - fixture
) -> None:
    """In Chromium, a page on an allowed origin reads the metadata, the 401 challenge and,
    with a token, the session id; a page on another origin reads only the metadata."""
    async with page_origin() as app_origin, page_origin() as other_origin:
        vault = await make_vault(public_url=f"http://127.0.0.1:{free_port()}",
                                 idp_issuer=mockidp.issuer, allowed_origins=[app_origin])
        token = mockidp.token(sub="alice", aud=audience(vault))
        async with http_server(vault) as url:
            anonymous = await run_page(page, app_origin, url, None)
            signed_in = await run_page(page, app_origin, url, token)
            elsewhere = await run_page(page, other_origin, url, token)
    assert anonymous["resource"] == signed_in["resource"] == url + "/mcp"
    assert anonymous["status"] == 401 and "resource_metadata=" in anonymous["challenge"]
    assert signed_in["status"] == 200 and signed_in["session"]
    assert elsewhere["resource"] == url + "/mcp"
    assert "mcp_error" in elsewhere and "status" not in elsewhere


async def test_browser_origin_pattern_gets_cors_on_mcp(make_vault: VaultFactory,
                                                       mockidp: MockIdpPeer) -> None:
    """An allowed-origin pattern (``http://*.example.test:3000``) gets CORS for its matches
    only; a look-alike host is refused."""
    vault = await make_vault(public_url=f"http://127.0.0.1:{free_port()}",
                             idp_issuer=mockidp.issuer,
                             allowed_origins=["http://*.example.test:3000"])
    async with http_server(vault) as url, httpx2.AsyncClient(timeout=10,
                                                             trust_env=False) as client:
        match = await client.options(url + "/mcp", headers=preflight(APP))
        lookalike = await client.options(url + "/mcp", headers=preflight(
            "http://app.example.test.evil.example:3000"))
    assert match.status_code == 200 and match.headers["access-control-allow-origin"] == APP
    assert lookalike.status_code == 403
    assert "access-control-allow-origin" not in lookalike.headers
