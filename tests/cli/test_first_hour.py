"""The first hour on a desk: init, a provider in the file init wrote, two stdio servers and
the CLI connecting through one loopback port, a request, a revocation — fresh HOME."""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from fastmcp import Client
from fastmcp.client.elicitation import ElicitResult
from fastmcp.client.transports import StdioTransport
from mcp_types import ElicitRequestURLParams

from alter_mcp.testing import SandboxProvider
from tests.cli.conftest import EXE, arun, cli_env
from tests.peers.process import free_port

_LINK = re.compile(r"http://127\.0\.0\.1:\d+/connect/\S+")


class Human:
    """The user at Claude Desktop: opens URL-mode links in the browser, confirms questions."""

    def __init__(self, sandbox: SandboxProvider) -> None:
        self.sandbox = sandbox
        self.links: list[str] = []

    async def __call__(self, message: str, response_type: Any, params: Any,
                       context: Any) -> Any:
        """Answer one elicitation."""
        if isinstance(params, ElicitRequestURLParams):
            self.links.append(params.url)
            await self.sandbox.approve(params.url)
            return ElicitResult(action="accept")
        return ElicitResult(action="accept", content={"confirm": True})


async def _connect_through(client: Client[Any], sandbox: SandboxProvider,
                           human: Human | None) -> dict[str, Any]:
    """Call connect, let the user approve the link (shown or returned), return the status."""
    started = await client.call_tool("connect", {"providers": [sandbox.provider_id],
                                                 "wait_seconds": 0})
    data = started.structured_content
    assert data is not None, started
    if human is None:
        url = data["connect_url"]  # a client that cannot show links: the model passes it on
        await sandbox.approve(url)
    else:
        url = human.links[-1]
    status = await client.call_tool("connect_status", {"session_id": data["session_id"],
                                                       "wait_seconds": 20})
    assert status.structured_content is not None
    return {"url": url, **status.structured_content}


async def _cli_connect(env: dict[str, str], sandbox: SandboxProvider) -> tuple[str, str]:
    """Run `alter-mcp connect` with --no-browser, approve the printed link; return it and out."""
    assert EXE
    proc = await asyncio.create_subprocess_exec(
        EXE, "connect", sandbox.provider_id, "--no-browser", "--timeout", "60", "--json",
        env=cli_env(env), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None and proc.stdout is not None
    seen = ""
    while (found := _LINK.search(seen)) is None:
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert line, f"connect exited before printing a link: {seen}"
        seen += line.decode()
    await sandbox.approve(found.group(0))
    out, rest = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, seen + rest.decode()
    return found.group(0), out.decode()


@pytest.mark.slow
async def test_first_hour_init_two_servers_and_the_cli_share_one_port(tmp_path: Path) -> None:
    """init → provider added to init's file → 2 servers + CLI connect → request → revoke."""
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local" / "share")}
    done = await arun(["init", "--json"], env)
    assert done.returncode == 0, done.stderr
    config = home / ".config" / "alter-mcp" / "config.toml"
    assert config.is_file()
    port = free_port()
    async with SandboxProvider() as sandbox:
        values = tomllib.loads(config.read_text())
        values.update(sandbox.settings_overrides(), connect_port=port)
        config.write_text(tomli_w.dumps(values))
        doctor = await arun(["doctor"], env)
        assert f"file {config}" in doctor.stdout, doctor.stdout
        assert f"http://127.0.0.1:{port}/oauth/callback" in doctor.stdout
        server_env = cli_env(env)
        human = Human(sandbox)
        desktop = Client(StdioTransport(EXE or "alter-mcp", ["serve"], env=server_env),
                         elicitation_handler=human)
        ide = Client(StdioTransport(EXE or "alter-mcp", ["serve"], env=server_env))
        async with desktop, ide:
            first = await _connect_through(desktop, sandbox, human)
            second = await _connect_through(ide, sandbox, None)
            link, printed = await _cli_connect(env, sandbox)
            prefix = f"http://127.0.0.1:{port}/connect/"
            assert first["url"].startswith(prefix) and second["url"].startswith(prefix)
            assert link.startswith(prefix)
            assert first["status"] == second["status"] == "completed"
            grant_id = second["grants"][0]["grant_id"]
            assert '"grant_id"' in printed and grant_id in printed
            answer = await ide.call_tool("authenticated_request", {
                "method": "GET", "url": sandbox.api_url + "/me", "grant_id": grant_id})
            assert answer.structured_content is not None
            assert answer.structured_content["status"] == 200
            revoked = await desktop.call_tool("revoke_grant", {"grant_id": grant_id})
            assert revoked.structured_content is not None
            assert revoked.structured_content["revoked"] is True
            after = await ide.call_tool("authenticated_request", {
                "method": "GET", "url": sandbox.api_url + "/me", "grant_id": grant_id},
                raise_on_error=False)
            assert after.is_error
