"""Every MCP tool writes an audit event, allowed and denied: the tools are listed, not assumed.

The tool names come from ``tools/list`` on the in-memory server, so a new tool with no case
here fails ``test_every_tool_has_a_case``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from alter_mcp.config import load_settings
from alter_mcp.models import Outcome, SystemPrincipal
from alter_mcp.store import AuditFilter
from alter_mcp.vault import AlterVault
from tests.peers.fixtures import CONF_APP, CONF_APP_SECRET
from tests.peers.oidc import OidcProviderPeer
from tests.peers.recorder import RequestRecorder
from tests.server.conftest import PROVIDER, answering, era_client, provider_entry, server_for

pytestmark = pytest.mark.peers

API = "rec"


@dataclass
class World:
    """A vault with an OAuth provider, a recorder API and a grant of it, and a session."""

    vault: AlterVault
    recorder: RequestRecorder
    grant_id: str
    spare_grant_id: str
    session_id: str


Args = Callable[[World], dict[str, Any]]

#: tool -> (arguments of an allowed call, arguments of a denied call).
CASES: dict[str, tuple[Args, Args]] = {
    "list_grants": (lambda w: {}, lambda w: {"provider": "nope"}),
    "revoke_grant": (lambda w: {"grant_id": w.spare_grant_id},
                     lambda w: {"grant_id": "no-such-grant"}),
    "authenticated_request": (
        lambda w: {"method": "GET", "url": f"http://localhost:{w.recorder.port}/x",
                   "grant_id": w.grant_id},
        lambda w: {"method": "GET", "url": f"http://localhost:{w.recorder.port}/x",
                   "grant_id": "no-such-grant"}),
    "connect": (lambda w: {"providers": [PROVIDER], "wait_seconds": 0},
                lambda w: {"providers": ["nope"], "wait_seconds": 0}),
    "connect_status": (lambda w: {"session_id": w.session_id},
                       lambda w: {"session_id": "no-such-session"}),
}


@pytest.fixture
async def world(tmp_path: Path, master_key: str, oidc_peer: OidcProviderPeer,
                recorder_factory: Callable[..., RequestRecorder]) -> AsyncIterator[World]:
    """Yield a system vault knowing the oidc peer and a recorder-backed API provider."""
    recorder = recorder_factory()
    api = {"name": "Recorder", "auth_kind": "api_key", "api_hosts": ["localhost"],
           "api_ports": [recorder.port], "injection": [{"kind": "bearer",
                                                        "format": "{api_key}"}],
           "secret_fields": [{"name": "api_key", "label": "Key"}]}
    settings = load_settings(
        {"ALTER_MCP_DATA_DIR": str(tmp_path / "d"), "ALTER_MCP_MASTER_KEY": master_key,
         "ALTER_MCP_ALLOW_INSECURE_HTTP": "true"}, connect_port=0,
        catalog={PROVIDER: provider_entry(oidc_peer), API: api},
        providers={PROVIDER: {"client_id": CONF_APP, "client_secret": CONF_APP_SECRET}})
    async with AlterVault(settings, caller="tests") as vault:
        secret = await vault.create_managed_secret(API, {"api_key": "b" * 24}, label="api")
        grants = [await vault.create_managed_secret_grant(secret.secret_id,
                                                          principal=SystemPrincipal())
                  for _ in range(2)]
        session = await vault.create_connect_session(allowed_providers=[PROVIDER])
        yield World(vault=vault, recorder=recorder, grant_id=grants[0].grant_id,
                    spare_grant_id=grants[1].grant_id, session_id=session.session_id)


async def _count(vault: AlterVault) -> int:
    return len(await vault.store.list_audit(AuditFilter(limit=100_000)))


async def test_every_tool_has_a_case(world: World) -> None:
    """The tools the server lists are exactly the tools with an audited case here."""
    async with era_client(server_for(world.vault), "legacy") as client:
        names = {tool.name for tool in await client.list_tools()}
    assert names == set(CASES), f"without a case: {sorted(names - set(CASES))}"


@pytest.mark.parametrize("tool", sorted(CASES))
async def test_tool_audited_when_allowed_and_denied(tool: str, world: World) -> None:
    """A tool call writes an allowed outcome when it succeeds and a denied event when not."""
    allowed, denied = CASES[tool]
    human = answering("accept", confirm=True)
    async with era_client(server_for(world.vault), "legacy",
                          elicitation_handler=human) as client:
        seen = await _count(world.vault)
        ok = await client.call_tool(tool, allowed(world), raise_on_error=False)
        assert not ok.is_error, ok.content
        events = (await world.vault.store.list_audit(AuditFilter(limit=100_000)))[seen:]
        assert any(e.outcome is Outcome.ALLOWED and not e.detail.get("intent")
                   for e in events), f"{tool} (allowed) wrote no allowed outcome event"
        seen += len(events)
        refused = await client.call_tool(tool, denied(world), raise_on_error=False)
        assert refused.is_error and "Traceback" not in str(refused.content)
        events = (await world.vault.store.list_audit(AuditFilter(limit=100_000)))[seen:]
        assert any(e.outcome is Outcome.DENIED for e in events), (
            f"{tool} (denied) wrote no denied event: {[e.action for e in events]}")
