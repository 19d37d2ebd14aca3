"""The ``alter-mcp keys`` and ``alter-mcp serve`` commands, run through click's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from alter_mcp.cli import cli


@pytest.fixture
def env(tmp_path: Path, master_key: str) -> dict[str, str]:
    """Environment pointing the CLI at a fresh data directory."""
    return {"ALTER_MCP_DATA_DIR": str(tmp_path / "data"), "ALTER_MCP_MASTER_KEY": master_key}


def test_cli_keys_create_list_revoke(env: dict[str, str]) -> None:
    """A key is printed once on create; list shows only its prefix; revoke marks it."""
    runner = CliRunner()
    created = runner.invoke(cli, ["keys", "create", "billing-agent", "--json"], env=env)
    assert created.exit_code == 0, created.output
    data = json.loads(created.output)
    assert data["key"].startswith(data["prefix"]) and data["key"].startswith("amk_")
    listed = runner.invoke(cli, ["keys", "list", "--json"], env=env)
    assert data["key"] not in listed.output
    assert json.loads(listed.output)[0]["prefix"] == data["prefix"]
    revoked = runner.invoke(cli, ["keys", "revoke", data["key_id"]], env=env)
    assert revoked.exit_code == 0
    again = runner.invoke(cli, ["keys", "revoke", data["key_id"]], env=env)
    assert again.exit_code == 2 and "No active API key" in again.output


def test_cli_serve_http_on_public_address_needs_public_url(env: dict[str, str]) -> None:
    """Binding HTTP to a non-loopback address without ALTER_MCP_PUBLIC_URL says what to set."""
    result = CliRunner().invoke(cli, ["serve", "--transport", "http", "--host", "0.0.0.0"],
                                env=env)
    assert result.exit_code == 2 and "ALTER_MCP_PUBLIC_URL" in result.output
