"""Any replica answers any MCP request: two ``alter-mcp serve`` processes on one PostgreSQL
database, every HTTP request sent to the next replica in turn, in both protocol eras."""

from __future__ import annotations

from typing import Any

import pytest
from fastmcp.client.elicitation import ElicitResult
from mcp.shared.exceptions import MCPError

from tests.replicas.conftest import SceneFactory, digest, secret_grant

pytestmark = [pytest.mark.peers, pytest.mark.slow]

SECRET = "echo-secret-0123456789abcdef"


def confirming() -> Any:
    """Return an elicitation handler that confirms every question (the human says yes)."""

    async def handler(message: str, response_type: Any, params: Any, context: Any) -> Any:
        return ElicitResult(action="accept", content={"confirm": True})

    return handler


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_replicas_answer_alternating_requests(scene: SceneFactory, era: str) -> None:
    """Tool calls alternate between two replicas and every one of them succeeds."""
    built = await scene()
    grant_id = await secret_grant(built, SECRET, "echo")
    built.balancer.alternate()
    async with built.deployment.client(key=built.key, era=era) as client:
        for i in range(6):
            listed = await client.call_tool("list_grants", {})
            assert [g["grant_id"] for g in listed.structured_content["grants"]] == [grant_id]
            sent = await client.call_tool("authenticated_request", {
                "method": "GET", "url": built.api.url(f"/call/{i}"), "grant_id": grant_id})
            body = sent.structured_content["body"]
            assert body["x-api-key"] == digest(SECRET) and body["path"] == f"/call/{i}"
    assert built.balancer.served() == [0, 1] * 6
    assert "ALTER_MCP_" not in built.deployment.replicas[0].process.stderr  # no warning


async def test_input_required_retry_is_answered_by_the_other_replica(
        scene: SceneFactory) -> None:
    """A 2026-07-28 confirmation asked by one replica is accepted when retried on the other."""
    built = await scene()
    grant_id = await secret_grant(built, SECRET, "to-revoke")
    built.balancer.alternate()
    async with built.deployment.client(key=built.key, era="modern",
                                       elicitation_handler=confirming()) as client:
        result = await client.call_tool("revoke_grant", {"grant_id": grant_id})
    assert result.structured_content["revoked"] is True
    assert result.structured_content["confirmed_by_user"] is True
    assert built.balancer.served("revoke_grant") == [0, 1]  # asked by 0, answered on 1
    stored = await built.admin.store.get_grant(grant_id)
    assert stored is not None and stored.status.value == "revoked"


async def test_replicas_not_sharing_session_state_refuse_each_others_requests(
        scene: SceneFactory) -> None:
    """Without stateless HTTP or with different request-state keys, the other replica refuses."""
    built = await scene(stateless=False, overrides=[
        {}, {"ALTER_MCP_REQUEST_STATE_KEY": "another-key-0123456789abcdef0123"}])
    grant_id = await secret_grant(built, SECRET, "kept")
    with pytest.raises(MCPError, match="Session not found"):
        async with built.deployment.client(key=built.key, era="legacy") as client:
            await client.call_tool("list_grants", {})
    built.balancer.alternate()  # the question from one replica, the answer to the other
    async with built.deployment.client(key=built.key, era="modern",
                                       elicitation_handler=confirming()) as client:
        with pytest.raises(MCPError, match="Invalid or expired requestState"):
            await client.call_tool("revoke_grant", {"grant_id": grant_id})
    stored = await built.admin.store.get_grant(grant_id)
    assert stored is not None and stored.status.value == "active"
    assert "ALTER_MCP_STATELESS_HTTP is off" in built.deployment.replicas[0].process.stderr
