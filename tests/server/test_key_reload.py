"""A running ``alter-mcp serve`` process picks up a key that ``alter-mcp keys rotate`` added."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from alter_mcp.config import load_settings
from alter_mcp.models import SystemPrincipal
from alter_mcp.vault import AlterVault
from tests.cli.conftest import arun, cli_env
from tests.peers.httpbin import HttpbinPeer
from tests.test_vault_request import catalog_for

pytestmark = pytest.mark.peers

ALTER_MCP = shutil.which("alter-mcp", path=str(Path(sys.executable).parent)) or "alter-mcp"
API_KEY = "sk-rotate-reload-0123456789abcdef"


async def test_serve_stdio_uses_records_rewrapped_by_keys_rotate_in_another_process(
        tmp_path: Path, httpbin_peer: HttpbinPeer) -> None:
    """A stdio server started before `keys rotate` still sends the rewrapped secret, unshown."""
    data = tmp_path / "data"
    config = tmp_path / "config.toml"
    config.write_text(tomli_w.dumps({
        "data_dir": str(data), "allow_insecure_http": True, "connect_port": 0,
        "catalog": {"bin-bearer": catalog_for(httpbin_peer.port)["bin-bearer"]}}))
    env = {"ALTER_MCP_CONFIG": str(config)}
    async with AlterVault(load_settings(config=config)) as vault:
        secret = await vault.create_managed_secret("bin-bearer", {"api_key": API_KEY},
                                                   label="k")
        grant = await vault.create_managed_secret_grant(
            secret.secret_id, principal=SystemPrincipal(), label="k")
        old = vault.envelope.keyring.active.id

    async def echoed(client: Client[Any]) -> dict[str, Any]:
        result = await client.call_tool("authenticated_request", {
            "method": "GET", "url": f"http://localhost:{httpbin_peer.port}/headers",
            "grant_id": grant.grant_id},
            raise_on_error=False)
        assert not result.is_error, result.content
        assert API_KEY not in str(result)
        body: dict[str, Any] = result.structured_content or {}
        return body

    transport = StdioTransport(ALTER_MCP, ["serve"], env=cli_env(env))
    async with Client(transport) as client:
        assert (await echoed(client))["status"] == 200
        rotated = await arun(["keys", "rotate", "--json"], env)
        assert rotated.returncode == 0, rotated.stderr
        report = json.loads(rotated.stdout)
        assert report["complete"] and report["rewrapped"] >= 1 and report["key_id"] != old
        after = await echoed(client)
        # Redacted in the answer because it is exactly the stored secret: the one that was sent.
        assert after["status"] == 200
        assert after["body"]["headers"]["Authorization"] == "Bearer [redacted]"
    keys = json.loads((data / "master.key").read_text())
    assert keys["active"] == report["key_id"] and set(keys["keys"]) == {old, report["key_id"]}
