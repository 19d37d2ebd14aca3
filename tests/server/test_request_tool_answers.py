"""``authenticated_request`` answers that would break a tool result or hide a credential.

A provider (the loopback echo server) answers with lone surrogates, under a charset label that
names no text encoding, or with the key across the vault's cap; through a real in-memory MCP
client, in both protocol eras, the tool result stays valid, shows no piece of the key, and the
call is audited.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from alter_mcp.models import SystemPrincipal
from alter_mcp.proxy.inject import secret_forms
from alter_mcp.proxy.scrub import MIN_PARTIAL
from alter_mcp.redaction import REDACTED
from alter_mcp.store import AuditFilter
from alter_mcp.vault import AlterVault
from tests.peers.echo import EchoServer
from tests.server.conftest import ERAS, audit_text, era_client, server_for

KEY = "q8/Jd+Zx0W3nK=pL7/vR+tY2mB9sH4cF6gA1eU5i"
PROVIDER = "echo-test"
CAP = 1024


@pytest.fixture
def echo() -> Iterator[int]:
    """Start the echo server on 127.0.0.1 and return its port."""
    with EchoServer() as server:
        yield server.port


@pytest.fixture
async def evault(tmp_path: Path, master_key: str, echo: int) -> AsyncIterator[
        tuple[AlterVault, str]]:
    """A vault that knows the echo server as an API-key provider, with a system grant."""
    from alter_mcp.config import load_settings

    entry = {"name": "echo", "auth_kind": "api_key", "api_hosts": ["127.0.0.1"],
             "api_ports": [echo], "secret_fields": [{"name": "api_key", "label": "Key"}],
             "injection": [{"kind": "header", "name": "X-Api-Key", "format": "{api_key}"}]}
    settings = load_settings(
        {"ALTER_MCP_DATA_DIR": str(tmp_path / "edata"), "ALTER_MCP_MASTER_KEY": master_key},
        catalog={PROVIDER: entry}, allow_insecure_http=True, response_max_bytes=CAP)
    vault = AlterVault(settings, caller="tests")
    await vault.open()
    secret = await vault.create_managed_secret(PROVIDER, {"api_key": KEY}, label="echo")
    grant = await vault.create_managed_secret_grant(secret.secret_id,
                                                    principal=SystemPrincipal())
    yield vault, grant.grant_id
    await vault.close()


async def _call(vault: AlterVault, era: str, url: str) -> Any:
    async with era_client(server_for(vault), era) as client:
        return await client.call_tool("authenticated_request", {
            "method": "GET", "url": url, "provider": PROVIDER}, raise_on_error=False)


def _pieces(text: str) -> list[str]:
    return [KEY[i:i + MIN_PARTIAL] for i in range(len(KEY) - MIN_PARTIAL + 1)
            if KEY[i:i + MIN_PARTIAL] in text]


@pytest.mark.parametrize("era", ERAS)
async def test_authenticated_request_key_across_the_cap_shows_no_piece(
    evault: tuple[AlterVault, str], echo: int, era: str,
) -> None:
    """Calls whose padding shifts the echoed key across the vault's cap never show 4+ of it."""
    vault, _ = evault
    seen: list[str] = []
    async with era_client(server_for(vault), era) as client:
        for pad in range(650, 1050, 7):
            result = await client.call_tool("authenticated_request", {
                "method": "GET", "url": f"http://127.0.0.1:{echo}/echo", "provider": PROVIDER,
                "headers": {"X-Pad": "a" * pad}})
            assert not result.is_error
            seen.append(json.dumps(result.structured_content, ensure_ascii=False))
    assert _pieces("\n".join(seen)) == []
    assert any('"truncated": true' in text for text in seen)
    assert any('"truncated": false' in text and REDACTED in text for text in seen)


def _no_form(result: Any) -> None:
    text = json.dumps(result.structured_content, ensure_ascii=False) + str(result.content)
    assert not any(form in text for form in secret_forms([KEY]))


@pytest.mark.parametrize("era", ERAS)
async def test_authenticated_request_json_lone_surrogate_returns_valid_result(
    evault: tuple[AlterVault, str], echo: int, era: str,
) -> None:
    """A JSON answer with a "\\ud800" escape comes back as U+FFFD in a valid tool result."""
    vault, _ = evault
    result = await _call(vault, era, f"http://127.0.0.1:{echo}/echo?style=surrogate")
    assert not result.is_error
    assert result.structured_content["body"] == {
        "lone": "\ufffd", "key": REDACTED, "pair": "\U0001f600"}
    _no_form(result)


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("label", ["utf-8", "utf-16-le"])
async def test_authenticated_request_text_lone_surrogate_returns_valid_result(
    evault: tuple[AlterVault, str], echo: int, era: str, label: str,
) -> None:
    """A text answer holding an encoded lone surrogate comes back with U+FFFD instead."""
    vault, _ = evault
    result = await _call(
        vault, era, f"http://127.0.0.1:{echo}/echo?style=surrogate-text&label={label}")
    assert not result.is_error
    body = result.structured_content["body"]
    assert body.startswith("lone \ufffd") and body.endswith(f"key {REDACTED}")
    _no_form(result)


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("label", ["base64", "rot13", "hex", "zlib"])
async def test_authenticated_request_transform_charset_is_summarised_and_audited(
    evault: tuple[AlterVault, str], echo: int, era: str, label: str,
) -> None:
    """An answer labelled with a bytes-to-bytes codec is a binary summary, and audited."""
    vault, _ = evault
    before = len(await vault.store.list_audit(AuditFilter(limit=10_000)))
    result = await _call(vault, era, f"http://127.0.0.1:{echo}/echo?label={label}")
    assert not result.is_error
    data = result.structured_content
    assert data["status"] == 200 and data["body_kind"] == "binary"
    assert "not a text encoding" in data["body"]["note"]
    _no_form(result)
    events = await vault.store.list_audit(AuditFilter(limit=10_000))
    assert len(events) > before
    assert any(e.status == 200 and e.provider_id == PROVIDER for e in events)
    assert KEY not in await audit_text(vault)
