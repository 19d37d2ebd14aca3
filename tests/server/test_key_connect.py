"""``connect`` for a key-based provider through MCP: a link to paste the key, never a loop."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest

from alter_mcp.config import load_settings
from alter_mcp.server import build_server
from alter_mcp.vault import AlterVault
from tests.oauth.test_key_page import API_KEY, PROVIDER, entry, posted
from tests.peers.httpbin import HttpbinPeer
from tests.server.conftest import ERAS, era_client

pytestmark = pytest.mark.peers


@pytest.mark.parametrize("era", ERAS)
async def test_key_connect_tool_gives_a_link_then_the_request_works(
        tmp_path: Path, master_key: str, httpbin_peer: HttpbinPeer, era: str) -> None:
    """No grant → connect gives a link → the user pastes the key → the request succeeds."""
    settings = load_settings(
        {"ALTER_MCP_DATA_DIR": str(tmp_path / "data"), "ALTER_MCP_MASTER_KEY": master_key},
        catalog={PROVIDER: entry(httpbin_peer)}, allow_insecure_http=True, connect_port=0)
    async with AlterVault(settings, caller="tests") as vault, \
            era_client(build_server(vault), era) as client:
        missing = await client.call_tool("authenticated_request", {
            "method": "GET", "url": httpbin_peer.url("/headers"), "provider": PROVIDER},
            raise_on_error=False)
        assert missing.is_error
        text = missing.content[0].text  # type: ignore[union-attr]
        assert f"Call `connect` with providers=['{PROVIDER}']" in text
        started = await client.call_tool("connect", {"providers": [PROVIDER],
                                                     "wait_seconds": 0})
        data = started.structured_content
        assert data is not None and data["status"] == "pending"
        async with httpx2.AsyncClient() as http:
            done = await http.post(data["connect_url"], data=posted(api_key=API_KEY))
            assert done.status_code == 200
        status = await client.call_tool("connect_status", {"session_id": data["session_id"]})
        assert status.structured_content is not None
        assert status.structured_content["status"] == "completed"
        answer = await client.call_tool("authenticated_request", {
            "method": "GET", "url": httpbin_peer.url("/headers"), "provider": PROVIDER})
        assert answer.structured_content is not None
        assert answer.structured_content["status"] == 200
        every = json.dumps([started.structured_content, status.structured_content,
                            answer.structured_content])
        assert API_KEY not in every
