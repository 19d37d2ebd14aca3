"""Key-based providers through ``connect``: the user pastes the key on the vault's own page."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from alter_mcp.config import load_settings
from alter_mcp.errors import ConnectFlowError, GrantNotFoundError
from alter_mcp.models import ConnectSessionStatus, GrantKind
from alter_mcp.store import AuditFilter
from alter_mcp.vault import AlterVault
from tests.oauth.conftest import ALICE, BOB, Clock
from tests.peers.httpbin import HttpbinPeer

pytestmark = pytest.mark.peers

PROVIDER = "httpbin-key"
# Base64-style, so every encoded form (/, +, =) is exercised by the scrubbing too.
API_KEY = "sk-live/Kp9+Zq2=wX7vT4rN8sB3yL6mQ1d"


def entry(peer: HttpbinPeer) -> dict[str, Any]:
    """Return a catalogue entry for httpbin as an API-key provider on 127.0.0.1."""
    return {"name": "Echo API", "auth_kind": "api_key", "api_hosts": ["127.0.0.1"],
            "api_ports": [peer.port], "docs_url": "https://echo.example.test/keys",
            "secret_fields": [{"name": "api_key", "label": "API key"}],
            "injection": [{"kind": "header", "name": "X-Api-Key", "format": "{api_key}"}]}


@pytest.fixture
async def kvault(tmp_path: Path, master_key: str, httpbin_peer: HttpbinPeer
                 ) -> AsyncIterator[tuple[AlterVault, Clock]]:
    """Yield a vault (system principal) that knows httpbin as a key-based provider."""
    clock = Clock()
    settings = load_settings(
        {"ALTER_MCP_DATA_DIR": str(tmp_path / "data"), "ALTER_MCP_MASTER_KEY": master_key},
        catalog={PROVIDER: entry(httpbin_peer)}, allow_insecure_http=True, connect_port=0)
    async with AlterVault(settings, caller="tests", clock=clock) as vault:
        yield vault, clock


def posted(provider: str = PROVIDER, **fields: str) -> dict[str, str]:
    """Return the form body the key page posts."""
    return {"provider": provider, **{f"field.{k}": v for k, v in fields.items()}}


async def test_key_page_pasted_key_becomes_the_owners_grant_and_is_never_shown(
        kvault: tuple[AlterVault, Clock], httpbin_peer: HttpbinPeer, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """The key typed in the page is used by a request and appears in no result, log or row."""
    caplog.set_level(logging.DEBUG)
    vault, _ = kvault
    alice = vault.with_identity(ALICE)
    link = await alice.create_connect_session(allowed_providers=[PROVIDER])
    async with httpx2.AsyncClient() as http:
        page = await http.get(link.connect_url)
        assert page.status_code == 200 and "name='field.api_key'" in page.text
        assert "type=password" in page.text and "echo.example.test/keys" in page.text
        csp = page.headers["content-security-policy"]
        assert "form-action 'self'" in csp and "script-src" not in csp
        done = await http.post(link.connect_url, data=posted(api_key=API_KEY))
        assert done.status_code == 200 and "connected" in done.text
        assert API_KEY not in done.text
    session = await alice.connect_status(link.session_id)
    assert session.status is ConnectSessionStatus.COMPLETED
    [grant_id] = session.grant_ids
    grant = await alice.get_grant(grant_id)
    assert grant.kind is GrantKind.MANAGED_SECRET and grant.owner == ALICE.principal
    answer = await alice.request("GET", httpbin_peer.url("/headers"), grant_id=grant_id)
    assert answer.status == 200 and "X-Api-Key" in answer.json()["headers"]
    shown = json.dumps(answer.to_dict())
    assert API_KEY not in shown
    with pytest.raises(GrantNotFoundError):
        await vault.with_identity(BOB).request("GET", httpbin_peer.url("/headers"),
                                               grant_id=grant_id)
    events = await vault.audit_log.events(AuditFilter(limit=1000))
    actions = [e.action for e in events]
    assert "secret.create" in actions and "secret.grant" in actions
    assert API_KEY not in json.dumps([e.model_dump(mode="json") for e in events])
    assert API_KEY not in caplog.text and API_KEY not in link.connect_url
    for path in (tmp_path / "data").iterdir():
        assert API_KEY.encode() not in path.read_bytes(), path


async def test_key_page_link_is_single_use(kvault: tuple[AlterVault, Clock]) -> None:
    """A second post of the same link is refused and adds no grant."""
    vault, _ = kvault
    link = await vault.create_connect_session(allowed_providers=[PROVIDER])
    async with httpx2.AsyncClient() as http:
        assert (await http.post(link.connect_url, data=posted(api_key=API_KEY))
                ).status_code == 200
        again = await http.post(link.connect_url, data=posted(api_key="sk-other-123456789"))
        assert again.status_code == 409 and "already used" in again.text
        reopened = await http.get(link.connect_url)
        assert reopened.status_code == 409
    page = await vault.list_grants(provider_id=PROVIDER)
    assert len(page.grants) == 1


async def test_key_page_expired_link_is_refused(kvault: tuple[AlterVault, Clock]) -> None:
    """After the session's lifetime the page and the post are refused; nothing is stored."""
    vault, clock = kvault
    link = await vault.create_connect_session(allowed_providers=[PROVIDER])
    clock.advance(vault.settings.connect_session_ttl + 1)
    async with httpx2.AsyncClient() as http:
        assert (await http.get(link.connect_url)).status_code == 410
        late = await http.post(link.connect_url, data=posted(api_key=API_KEY))
        assert late.status_code == 410 and "expired" in late.text
    assert not (await vault.list_grants(provider_id=PROVIDER)).grants


async def test_key_page_session_belongs_to_its_principal(
        kvault: tuple[AlterVault, Clock]) -> None:
    """Another principal cannot read the session, and the grant is the creator's alone."""
    vault, _ = kvault
    alice, bob = vault.with_identity(ALICE), vault.with_identity(BOB)
    link = await alice.create_connect_session(allowed_providers=[PROVIDER])
    with pytest.raises(ConnectFlowError):
        await bob.connect_status(link.session_id)
    async with httpx2.AsyncClient() as http:
        await http.post(link.connect_url, data=posted(api_key=API_KEY))
    assert not (await bob.list_grants(provider_id=PROVIDER)).grants
    assert len((await alice.list_grants(provider_id=PROVIDER)).grants) == 1


async def test_key_page_missing_field_is_named_and_the_link_still_works(
        kvault: tuple[AlterVault, Clock]) -> None:
    """An empty key re-shows the form naming the field; the link is not used up."""
    vault, _ = kvault
    link = await vault.create_connect_session(allowed_providers=[PROVIDER])
    async with httpx2.AsyncClient() as http:
        empty = await http.post(link.connect_url, data=posted(api_key=""))
        assert empty.status_code == 400 and "api_key" in empty.text
        assert "aria-invalid=true" in empty.text
        unknown = await http.post(link.connect_url,
                                  data={**posted(api_key=API_KEY), "field.extra": "x"})
        assert unknown.status_code == 400 and "extra" in unknown.text
        ok = await http.post(link.connect_url, data=posted(api_key=API_KEY))
        assert ok.status_code == 200
    assert len((await vault.list_grants(provider_id=PROVIDER)).grants) == 1


async def test_key_page_headless_connect_waits_for_the_pasted_key(
        kvault: tuple[AlterVault, Clock]) -> None:
    """vault.connect for a key-based provider completes when the page is posted."""
    vault, _ = kvault

    async def paste(url: str) -> None:
        async with httpx2.AsyncClient() as http:
            assert (await http.post(url, data=posted(api_key=API_KEY))).status_code == 200

    [result] = await vault.connect([PROVIDER], open_browser=paste, timeout=20)
    assert result.provider_id == PROVIDER and result.account_identifier == "Echo API key"


async def test_key_page_asks_a_tenant_providers_account_value(
        kvault: tuple[AlterVault, Clock]) -> None:
    """A per-account provider's page asks for its value too; the grant reaches only that host."""
    vault, _ = kvault
    link = await vault.create_connect_session(allowed_providers=["shopify-admin"])
    async with httpx2.AsyncClient() as http:
        page = await http.get(link.connect_url)
        assert "name='field.shop'" in page.text and "name='field.access_token'" in page.text
        bad = await http.post(link.connect_url, data=posted(
            "shopify-admin", shop="evil.example.com/x", access_token="shpat_0123456789"))
        assert bad.status_code == 400 and "shop" in bad.text
        done = await http.post(link.connect_url, data=posted(
            "shopify-admin", shop="acme", access_token="shpat_0123456789"))
        assert done.status_code == 200
    [grant] = (await vault.list_grants(provider_id="shopify-admin")).grants
    assert grant.connection == {"shop": "acme"}
