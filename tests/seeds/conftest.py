"""Fixtures for the seed SDK's snippets, run as a user runs them: settings from the environment.

The sandbox plays Google (``provider_id="google"``, Google Calendar's events path); the
oauth2-mock-server peer is the identity provider that signs the end users' JWTs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from alter_mcp.store import AuditFilter
from alter_mcp.testing import SandboxProvider
from alter_mcp.vault import AlterVault
from tests.peers.mockidp import MockIdpPeer
from tests.server.conftest import mockidp  # noqa: F401 - the session's identity provider

AUDIENCE = "http://127.0.0.1:9/mcp"
IDP_ID = "idp_xyz"
ENGINEERING = "okta-group-engineering"


@dataclass
class Seed:
    """The world a seed snippet runs in: the sandbox as Google, the IdP, the environment."""

    sandbox: SandboxProvider
    idp: MockIdpPeer
    env: dict[str, str]

    @property
    def events_url(self) -> str:
        """Return the sandbox's Google Calendar events URL (the snippets' URL, on loopback)."""
        return self.sandbox.events_url

    def jwt(self, sub: str = "alice", **claims: Any) -> str:
        """Return an end user's JWT, signed by the identity provider peer for this vault."""
        return self.idp.token(sub=sub, aud=AUDIENCE, email=f"{sub}@example.test", **claims)


@pytest.fixture
async def seed(tmp_path: Path, master_key: str, mockidp: MockIdpPeer,  # noqa: F811
               monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Seed]:
    """Run the sandbox as "google" and point ``AlterVault()``'s environment at it and the IdP."""
    async with SandboxProvider(provider_id="google", auto_approve=True) as sandbox:
        overrides = sandbox.settings_overrides()
        config = tmp_path / "alter-mcp.toml"
        config.write_text(tomli_w.dumps({"catalog": overrides["catalog"],
                                         "providers": overrides["providers"]}))
        env = {"ALTER_MCP_DATA_DIR": str(tmp_path / "data"), "ALTER_MCP_MASTER_KEY": master_key,
               "ALTER_MCP_CONFIG": str(config), "ALTER_MCP_ALLOW_INSECURE_HTTP": "true",
               "ALTER_MCP_CONNECT_PORT": "0", "ALTER_MCP_IDP_ISSUER": mockidp.issuer,
               "ALTER_MCP_IDP_AUDIENCE": AUDIENCE, "ALTER_MCP_IDP_ID": IDP_ID}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield Seed(sandbox=sandbox, idp=mockidp, env=env)


async def audit_text(vault: AlterVault) -> str:
    """Return the whole audit log as one JSON string (for leak searches)."""
    events = await vault.store.list_audit(AuditFilter(limit=100_000))
    return json.dumps([e.model_dump(mode="json") for e in events])


def files_containing(seed: Seed, value: str) -> list[str]:
    """Return the files under the vault's data directory whose bytes contain ``value``."""
    root = Path(seed.env["ALTER_MCP_DATA_DIR"])
    return [str(p) for p in root.rglob("*") if p.is_file() and value.encode() in p.read_bytes()]


async def connect_as(seed: Seed, sub: str, account: str | None = None) -> str:
    """Connect the sandbox's Google for ``sub`` (signed in by JWT); return the grant id."""
    if account is not None:
        seed.sandbox.auth.account = account
    token = seed.jwt(sub)
    vault = AlterVault(caller="setup", user_token_getter=lambda: token)
    try:
        [result] = await vault.connect(["google"], open_browser=seed.sandbox.approve)
    finally:
        await vault.close()
    return result.grant_id
