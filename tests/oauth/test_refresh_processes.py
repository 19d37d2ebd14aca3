"""Refresh single flight across two OS processes sharing one SQLite file and one master key."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream

from alter_mcp.vault import AlterVault
from tests.oauth.conftest import (
    PROVIDER,
    Clock,
    VaultFactory,
    audit_dump,
    connect_in_browser,
    oidc_entry,
)
from tests.peers.fixtures import CONF_APP, CONF_APP_SECRET
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer

pytestmark = [pytest.mark.peers, pytest.mark.slow]

WORKER = Path(__file__).with_name("refresh_worker.py")
USES_PER_PROCESS = 100


def _digest(vault_token: str) -> str:
    return hashlib.sha256(vault_token.encode()).hexdigest()


async def test_refresh_storm_across_two_processes_makes_one_request(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, clock: Clock,
    oidc_peer: OidcProviderPeer, master_key: str, tmp_path: Path,
) -> None:
    """200 uses split over two processes on one SQLite file cause exactly one refresh."""
    vault: AlterVault = await make_vault()
    grant = await connect_in_browser(vault, browser_agent)
    clock.advance(3600)
    job = {
        "data_dir": str(tmp_path / "data"), "grant_id": grant.grant_id,
        "uses": USES_PER_PROCESS,
        "clock_offset": clock.offset.total_seconds(),
        "settings": {"connect_port": 0, "catalog": {PROVIDER: oidc_entry(oidc_peer)},
                     "providers": {PROVIDER: {"client_id": CONF_APP,
                                              "client_secret": CONF_APP_SECRET}}},
    }
    env = {**os.environ, "ALTER_MCP_MASTER_KEY": master_key,
           "OAUTH_WORKER_JOB": json.dumps(job)}
    env.pop("ALTER_MCP_CONFIG", None)
    async with await anyio.open_process([sys.executable, str(WORKER)], env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=None) as worker:
        assert worker.stdin is not None and worker.stdout is not None
        lines = TextReceiveStream(worker.stdout)
        buffer = ""
        with anyio.fail_after(20):
            while "READY\n" not in buffer:
                buffer += await lines.receive()
        buffer = buffer.split("READY\n", 1)[1]
        local: list[str] = []

        async def use() -> None:
            local.append(_digest((await vault._credential_for(grant))["access_token"].reveal()))

        await worker.stdin.send(b"GO\n")
        async with anyio.create_task_group() as group:
            for _ in range(USES_PER_PROCESS):
                group.start_soon(use)
        with anyio.fail_after(20):
            while not buffer.endswith("\n"):
                buffer += await lines.receive()
            assert await worker.wait() == 0
    report = json.loads(buffer)
    assert report["errors"] == []
    assert len(report["tokens"]) == len(local) == USES_PER_PROCESS
    assert set(report["tokens"]) == set(local) and len(set(local)) == 1
    assert (await oidc_peer.astats())["token"].get("refresh_token") == 1
    refreshes = [e for e in await audit_dump(vault) if e["action"] == "grant.refresh"]
    assert len(refreshes) == 1 and refreshes[0]["caller"] in ("tests", "worker")
    assert (await vault.verify_audit()).ok
