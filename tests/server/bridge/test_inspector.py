"""The MCP Inspector CLI 2.x, given no token, completes the bridge's OAuth flow (discovery from
the 401, registration, PKCE, consent, upstream login) and calls tools as the logged-in user."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from alter_mcp.models import UserPrincipal
from tests.peers.httpbin import HttpbinPeer
from tests.peers.process import free_port
from tests.server.bridge.conftest import API_KEY, HTTPBIN, Bridge
from tests.server.conftest import http_server
from tests.server.test_transports import INSPECTOR, NODE22

pytestmark = [pytest.mark.peers, pytest.mark.slow]

BROWSER_USER = Path(__file__).with_name("browser_user.py")


def _browser(home: Path) -> Path:
    """Write the executable ``BROWSER`` the Inspector opens (xdg-open runs it with the URL)."""
    script = home / "browser"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {BROWSER_USER} \"$1\"\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def _inspector(url: str, home: Path, login: str, *args: str) -> tuple[int, Any, str]:
    """Run the Inspector CLI against ``url`` with a browser that logs ``login`` in."""
    if not (NODE22.is_file() and INSPECTOR.exists()):
        pytest.fail("the MCP Inspector is missing: run scripts/install-peers")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home),
           "MCP_INSPECTOR_SECRET_STORE": "memory", "MCP_AUTO_OPEN_ENABLED": "true",
           "BROWSER": str(_browser(home)), "BRIDGE_LOGIN_HINT": login}
    callback = f"http://127.0.0.1:{free_port()}/oauth/callback"
    done = subprocess.run([str(NODE22), str(INSPECTOR), "--cli", "--format", "json", "-q", url,
                           "--callback-url", callback, *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    try:
        return done.returncode, json.loads(done.stdout), done.stderr
    except ValueError:
        return done.returncode, done.stdout, done.stderr


async def test_inspector_logs_in_through_the_bridge_and_acts_as_that_user(
    bridge: Bridge, httpbin_peer: HttpbinPeer, tmp_path: Path,
) -> None:
    """The Inspector registers, logs bob in upstream, lists only bob's grant and uses it."""
    vault = bridge.vault
    grants = {}
    for name in ("alice", "bob"):
        secret = await vault.create_managed_secret(HTTPBIN, {"api_key": API_KEY}, label=name)
        owner = UserPrincipal(issuer=bridge.upstream.issuer, subject=name, label=name)
        grants[name] = (await vault.create_managed_secret_grant(
            secret.secret_id, principal=owner, label=name)).grant_id
    async with http_server(vault) as url:
        code, listed, err = await asyncio.to_thread(
            _inspector, url + "/mcp", tmp_path, "bob",
            "--method", "tools/call", "--tool-name", "list_grants")
        assert code == 0, err[-8000:]
        code, called, err = await asyncio.to_thread(
            _inspector, url + "/mcp", tmp_path, "bob", "--method", "tools/call",
            "--tool-name", "authenticated_request", "--tool-arg", "method=GET",
            "--tool-arg", f"url={httpbin_peer.url('/headers')}",
            "--tool-arg", f"grant_id={grants['bob']}")
        assert code == 0, err[-8000:]
    ids = {g["grant_id"] for g in listed["result"]["structuredContent"]["grants"]}
    assert ids == {grants["bob"]}
    result = called["result"]["structuredContent"]
    assert result["status"] == 200 and "X-Api-Key" in result["body"]["headers"]
