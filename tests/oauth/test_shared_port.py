"""Several processes of one vault share the loopback connect port; strangers are refused."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alter_mcp.config import load_settings
from alter_mcp.errors import ConfigurationError
from alter_mcp.oauth.loopback import LoopbackServer
from alter_mcp.oauth.peer import PEER_PATH
from alter_mcp.testing import SandboxProvider
from alter_mcp.vault import AlterVault


def free_port() -> int:
    """Return a loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxProvider]:
    """Yield a running sandbox provider."""
    async with SandboxProvider() as provider:
        yield provider


def vault_for(data_dir: Path, master_key: str, port: int, sandbox: SandboxProvider,
              caller: str) -> AlterVault:
    """Return a vault on ``data_dir`` whose connect pages use ``port``."""
    settings = load_settings({"ALTER_MCP_MASTER_KEY": master_key}, data_dir=data_dir,
                             connect_port=port, **sandbox.settings_overrides())
    return AlterVault(settings, caller=caller)


async def test_shared_port_second_vault_process_connects_through_the_first(
        sandbox: SandboxProvider, tmp_path: Path, master_key: str) -> None:
    """A second vault on the same data finishes a connect through the first one's port."""
    port = free_port()
    async with vault_for(tmp_path, master_key, port, sandbox, "desktop") as first, \
            vault_for(tmp_path, master_key, port, sandbox, "ide") as second:
        [one] = await first.connect([sandbox.provider_id], open_browser=sandbox.approve,
                                    timeout=20)
        seen: list[str] = []

        async def approve(url: str) -> None:
            seen.append(url)
            await sandbox.approve(url)

        [two] = await second.connect([sandbox.provider_id], open_browser=approve, timeout=20)
        assert seen and seen[0].startswith(f"http://127.0.0.1:{port}/connect/")
        # Same principal, same account: the second connect renews the same grant.
        assert one.session_id != two.session_id and one.grant_id == two.grant_id
        answer = await second.request("GET", sandbox.api_url + "/me", grant_id=two.grant_id)
        assert answer.status == 200


async def test_shared_port_takes_over_when_the_holder_has_gone(
        sandbox: SandboxProvider, tmp_path: Path, master_key: str) -> None:
    """When the process holding the port stops, the next connect binds the port itself."""
    port = free_port()
    async with vault_for(tmp_path, master_key, port, sandbox, "ide") as second:
        async with vault_for(tmp_path, master_key, port, sandbox, "desktop") as first:
            await first.connect([sandbox.provider_id], open_browser=sandbox.approve, timeout=20)
            await second.connect([sandbox.provider_id], open_browser=sandbox.approve,
                                 timeout=20)
        [again] = await second.connect([sandbox.provider_id], open_browser=sandbox.approve,
                                       timeout=20)
        assert again.account_identifier == sandbox.account


async def test_shared_port_refuses_a_port_held_by_another_vault(
        sandbox: SandboxProvider, tmp_path: Path, master_key: str) -> None:
    """A port held by a different vault (other database) is refused, naming the setting."""
    port = free_port()
    other_key = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
    async with vault_for(tmp_path / "a", master_key, port, sandbox, "a") as first, \
            vault_for(tmp_path / "b", other_key, port, sandbox, "b") as stranger:
        await first.connect([sandbox.provider_id], open_browser=sandbox.approve, timeout=20)
        opened: list[str] = []
        with pytest.raises(ConfigurationError) as info:
            await stranger.connect([sandbox.provider_id], open_browser=opened.append,
                                   timeout=5)
        assert opened == []
        assert info.value.setting == "ALTER_MCP_CONNECT_PORT"
        assert f"Port {port}" in str(info.value) and "not a process of this vault" in str(
            info.value)


async def test_shared_port_refuses_a_port_held_by_a_stranger_that_echoes(
        sandbox: SandboxProvider, tmp_path: Path, master_key: str) -> None:
    """A foreign server answering the challenge path with junk never gets a connect link."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    hits: list[str] = []

    async def echo(request: Request) -> JSONResponse:
        hits.append(str(request.url))
        return JSONResponse({"proof": request.query_params.get("nonce")})

    port = free_port()
    stranger = LoopbackServer(Starlette(routes=[Route(PEER_PATH, echo),
                                                Route("/connect/{token}", echo)]), port=port)
    await stranger.start()
    try:
        async with vault_for(tmp_path, master_key, port, sandbox, "ide") as vault:
            with pytest.raises(ConfigurationError):
                await vault.connect([sandbox.provider_id], open_browser=False, timeout=5)
    finally:
        await stranger.stop()
    assert hits and all(PEER_PATH in hit for hit in hits)
