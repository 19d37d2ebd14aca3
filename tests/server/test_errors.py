"""Vault errors as the model reads them: what happened, then the next step, nothing secret."""

from __future__ import annotations

import pytest

from alter_mcp.errors import (
    AmbiguousGrantError,
    AuditWriteError,
    GrantNotFoundError,
    PolicyViolationError,
    ProviderBusyError,
    ReAuthRequiredError,
    ScopeReauthRequiredError,
    StoreError,
)
from alter_mcp.server.errors import describe
from alter_mcp.vault import AlterVault

LINK = "https://mcp.example.test/connect/abc123"


@pytest.mark.parametrize(("error", "expected"), [
    (GrantNotFoundError("No grant for github.", provider_id="github"),
     "Call `connect` with providers=['github']"),
    (GrantNotFoundError("No grant for github.", provider_id="github", connect_url=LINK),
     f"connect the account at {LINK}"),
    (ReAuthRequiredError("Token revoked.", grant_id="g1", provider_id="github",
                         connect_url=LINK), f"re-authorize at {LINK}"),
    (ReAuthRequiredError("Token revoked.", grant_id="g1", provider_id="github"),
     "Call `connect` with providers=['github'] so the user can re-authorize"),
    (ScopeReauthRequiredError("Missing scopes.", grant_id="g1", provider_id="github",
                              missing_scopes=["repo"], connect_url=LINK),
     f"lacks repo: ask the user to open {LINK}"),
    (AmbiguousGrantError("github", [{"account_identifier": "a@x", "grant_id": "g1"},
                                    {"account_identifier": "b@x", "grant_id": "g2"}]),
     "a@x (no label): grant_id=g1; b@x (no label): grant_id=g2"),
    (PolicyViolationError("Denied.", rule="no-deletes", reason="DELETE not allowed"),
     "Denied by policy rule 'no-deletes' (DELETE not allowed)"),
    (ProviderBusyError(provider_id="github", origin="https://api.github.com:443", limit=20,
                       waited=5.0, limit_setting="ALTER_MCP_PROVIDER_MAX_CONNECTIONS",
                       wait_setting="ALTER_MCP_PROVIDER_POOL_TIMEOUT"),
     "so this request was not sent. Retry after 5 seconds"),
])
def test_errors_describe_names_the_next_step(error: Exception, expected: str) -> None:
    """Each error's text tells the model what to do next (link, connect, candidates, rule)."""
    text = describe(error)  # type: ignore[arg-type]
    assert expected in text and text.startswith(f"[{error.code}]")  # type: ignore[attr-defined]


def test_errors_internal_failures_hide_details() -> None:
    """Store and audit failures say only that the vault failed and what an operator runs."""
    for error in (StoreError("disk I/O error at /var/lib/secret-path"),
                  AuditWriteError("audit down")):
        text = describe(error)
        assert "secret-path" not in text and "alter-mcp doctor" in text


def test_errors_describe_redacts_token_shapes() -> None:
    """A bearer value that slipped into a message is redacted before the model sees it."""
    text = describe(PolicyViolationError("Denied Bearer abcdefghijklmnop.", rule="r"))
    assert "abcdefghijklmnop" not in text


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_errors_expected_tool_errors_log_below_error(
        svault: AlterVault, caplog: pytest.LogCaptureFixture, era: str) -> None:
    """Grant or provider not found, and an unknown resource, log no ERROR and no traceback."""
    import logging

    from fastmcp.exceptions import ToolError

    from alter_mcp.server import build_server
    from tests.server.conftest import era_client

    caplog.set_level(logging.DEBUG)
    async with era_client(build_server(svault), era) as client:
        with pytest.raises(ToolError, match="grant_not_found"):
            await client.call_tool("authenticated_request", {
                "method": "GET", "url": "https://api.github.com/user", "provider": "github"})
        with pytest.raises(ToolError, match="provider_not_found"):
            await client.call_tool("connect", {"providers": ["no-such-provider"]})
        with pytest.raises(Exception, match="no-such-provider"):
            await client.read_resource("providers://no-such-provider")
        with pytest.raises(Exception):  # noqa: B017 - any refusal; we check the logs
            await client.read_resource("nosuch://thing")
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR]
    traced = [r for r in caplog.records if r.exc_info]
    assert loud == [] and traced == [], [r.getMessage() for r in loud + traced]


def test_errors_log_level_is_error_only_for_operator_failures() -> None:
    """Store, crypto and audit failures log at ERROR; user-facing refusals below it."""
    import logging

    from alter_mcp.server.errors import log_level

    assert log_level(StoreError("db down")) == logging.ERROR
    assert log_level(AuditWriteError("audit down")) == logging.ERROR
    assert log_level(GrantNotFoundError("nope")) == logging.INFO
    assert log_level(PolicyViolationError("denied", rule="r")) == logging.WARNING
