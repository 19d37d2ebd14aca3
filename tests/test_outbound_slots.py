"""The vault's request path waits for a connection slot before it reads the credential."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from alter_mcp.config import load_settings
from alter_mcp.errors import ProviderBusyError
from alter_mcp.models import Grant, SystemPrincipal
from alter_mcp.outbound import RequestResult
from alter_mcp.redaction import Secret
from alter_mcp.store import AuditFilter
from alter_mcp.vault import AlterVault
from tests.peers.stuck import StuckServer, stuck_server

TOKEN = "slow-api-key-7Hq2Zr9XwLpB4nV"


@pytest.fixture
async def slow() -> AsyncIterator[StuckServer]:
    """A provider on 127.0.0.1 that answers nothing until the test releases it."""
    async with stuck_server() as server:
        yield server


@pytest.fixture
async def slow_vault(tmp_path: Path, master_key: str,
                     slow: StuckServer) -> AsyncIterator[AlterVault]:
    """Yield a vault allowed one connection per origin and a short wait for it."""
    catalog = {"slowapi": {"name": "Slow API", "auth_kind": "api_key",
                           "api_hosts": ["127.0.0.1"], "api_ports": [slow.port],
                           "injection": [{"kind": "bearer", "format": "{api_key}"}],
                           "secret_fields": [{"name": "api_key", "label": "Key"}]}}
    settings = load_settings(
        {"ALTER_MCP_DATA_DIR": str(tmp_path / "d"), "ALTER_MCP_MASTER_KEY": master_key,
         "ALTER_MCP_ALLOW_INSECURE_HTTP": "true", "ALTER_MCP_PROVIDER_MAX_CONNECTIONS": "1",
         "ALTER_MCP_PROVIDER_POOL_TIMEOUT": "0.2", "ALTER_MCP_MAX_CONNECTIONS": "7"},
        catalog=catalog)
    async with AlterVault(settings, caller="slot-tests") as vault:
        yield vault


async def test_outbound_waits_for_a_slot_before_reading_the_credential(
    slow_vault: AlterVault, slow: StuckServer,
) -> None:
    """A request queued behind a full provider never reads the credential, is not sent, is audited.

    The credential reader is the vault's own, wrapped to count its calls: the first request
    (holding the only slot) reads it once; the second gets ProviderBusyError without a read.
    """
    secret = await slow_vault.create_managed_secret("slowapi", {"api_key": TOKEN}, label="s")
    grant = await slow_vault.create_managed_secret_grant(secret.secret_id,
                                                         principal=SystemPrincipal())
    outbound = slow_vault._core.outbound
    assert outbound is not None
    ident = await slow_vault.current_identity()
    reads: list[str] = []

    async def reading(grant: Grant, **kwargs: Any) -> dict[str, Secret]:
        reads.append(grant.grant_id)
        return await slow_vault._credential_for(grant, identity=ident, **kwargs)

    request = functools.partial(
        outbound.request, ident, "GET", f"http://127.0.0.1:{slow.port}/v1/items",
        credential=reading, repair_link=slow_vault._oauth.repair_link,
        grant_id=grant.grant_id)
    done: list[RequestResult] = []

    async def first() -> None:
        done.append(await request())

    async with anyio.create_task_group() as group:
        group.start_soon(first)
        await slow.wait_received(1)
        assert reads == [grant.grant_id]
        with pytest.raises(ProviderBusyError) as busy:
            await request()
        assert reads == [grant.grant_id] and len(slow.received) == 1
        slow.release()
    assert done[0].status == 200
    assert len(slow.received) == 1
    events = await slow_vault.audit_log.events(AuditFilter(action="request"))
    assert sorted(e.error or "ok" for e in events) == ["ok", "provider_busy"]
    shown = str(busy.value) + repr(busy.value.to_dict()) + repr(events)
    assert TOKEN not in shown
    assert slow.saw(f"Bearer {TOKEN}".encode())


async def test_outbound_vault_limits_come_from_the_settings(slow_vault: AlterVault) -> None:
    """The vault's pool and per-origin slots take their sizes and wait from the settings."""
    outbound = slow_vault._core.outbound
    api_http = slow_vault._core.api_http
    assert outbound is not None and api_http is not None
    slots = outbound._sender.slots
    assert (slots.limit, slots.wait) == (1, 0.2)
    pool = api_http._transport._pool  # type: ignore[attr-defined]
    assert pool._max_connections == 7
