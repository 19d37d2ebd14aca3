"""Suite-wide fixtures: real peers (oidc-provider, httpbin, a recorder) and a vault on disk."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alter_mcp.config import Settings, load_settings
from alter_mcp.vault import AlterVault

pytest_plugins = ["tests.peers.fixtures", "tests.peers.postgres"]


@pytest.fixture(autouse=True, scope="session")
def _no_user_config_file(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the developer's own ~/.config/alter-mcp/config.toml out of every test.

    The vault reads that file by default; tests (and the CLI subprocesses they start, which
    inherit this environment) look in an empty config home instead, unless a test points
    XDG_CONFIG_HOME or HOME elsewhere itself.
    """
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg-config-home"))


@pytest.fixture
def master_key() -> str:
    """Return a fresh base64 master key."""
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def settings(tmp_path: Path, master_key: str) -> Settings:
    """Return settings for a vault whose data lives in the test's temporary directory."""
    return load_settings(
        {"ALTER_MCP_DATA_DIR": str(tmp_path / "data"), "ALTER_MCP_MASTER_KEY": master_key}
    )


@pytest.fixture
async def vault(settings: Settings) -> AsyncIterator[AlterVault]:
    """Yield an open vault acting as the system principal."""
    async with AlterVault(settings, caller="tests") as opened:
        yield opened
