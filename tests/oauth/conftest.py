"""Fixtures for the OAuth tests: a vault wired to the real oidc-provider peer, and helpers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from alter_mcp.config import Settings, load_settings
from alter_mcp.models import Grant, Identity, UserPrincipal
from alter_mcp.oauth.tokens import TokenSet, open_credential
from alter_mcp.store import AuditFilter
from alter_mcp.vault import AlterVault
from tests.peers.fixtures import CONF_APP, CONF_APP_SECRET
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer

PROVIDER = "oidc-test"
ISSUER = "https://idp.example.test"
ALICE = Identity(principal=UserPrincipal(issuer=ISSUER, subject="alice"), caller="tests")
BOB = Identity(principal=UserPrincipal(issuer=ISSUER, subject="bob"), caller="tests")


class Clock:
    """The vault's clock: real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.offset += timedelta(seconds=seconds)


def oidc_entry(peer: OidcProviderPeer, *, auth: str = "client_secret_basic",
               revocation: bool = True, **oauth: Any) -> dict[str, Any]:
    """Return a catalogue override describing the peer as an OAuth provider."""
    spec: dict[str, Any] = {
        "authorization_url": peer.authorization_endpoint, "token_url": peer.token_endpoint,
        "userinfo_url": peer.userinfo_endpoint, "account_source": "userinfo",
        "account_field": "email", "default_scopes": ["openid", "offline_access", "email"],
        "token_endpoint_auth": auth,
    }
    if revocation:
        spec["revocation_url"] = peer.revocation_endpoint
    spec.update(oauth)
    return {"name": "OIDC test", "auth_kind": "oauth2", "api_hosts": ["localhost"],
            "injection": [{"kind": "bearer"}], "oauth": spec}


def oauth_settings(
    tmp_path: Path, master_key: str, peer: OidcProviderPeer, *,
    client: dict[str, Any] | None = None, entry: dict[str, Any] | None = None,
    more: dict[str, dict[str, Any]] | None = None, **values: Any,
) -> Settings:
    """Return settings for a vault on ``tmp_path`` that knows the peer as ``oidc-test``.

    ``more`` adds providers (id -> catalogue entry) using the same client; a ``client`` of
    None leaves ``oidc-test`` without a configured client.
    """
    values.setdefault("connect_port", 0)
    client = {"client_id": CONF_APP, "client_secret": CONF_APP_SECRET} if client is None \
        else client
    catalog = {PROVIDER: entry or oidc_entry(peer), **(more or {})}
    clients = {pid: client for pid in catalog} if client else {}
    return load_settings(
        {"ALTER_MCP_DATA_DIR": str(tmp_path / "data"), "ALTER_MCP_MASTER_KEY": master_key},
        catalog=catalog, providers=clients, **values,
    )


VaultFactory = Callable[..., Awaitable[AlterVault]]


@pytest.fixture
def clock() -> Clock:
    """Return a movable clock for the vault."""
    return Clock()


@pytest.fixture
async def make_vault(
    tmp_path: Path, master_key: str, oidc_peer: OidcProviderPeer, clock: Clock,
) -> AsyncIterator[VaultFactory]:
    """``await make_vault(**settings)`` opens a vault on the session peer; closed at teardown."""
    opened: list[AlterVault] = []

    async def make(*, peer: OidcProviderPeer | None = None, identity: Identity | None = None,
                   http_client: httpx2.AsyncClient | None = None, **values: Any) -> AlterVault:
        settings = oauth_settings(tmp_path, master_key, peer or oidc_peer, **values)
        vault = AlterVault(settings, caller="tests", clock=clock, identity=identity,
                           http_client=http_client)
        await vault.open()
        opened.append(vault)
        return vault

    yield make
    for vault in reversed(opened):
        await vault.close()


@pytest.fixture
async def vault(make_vault: VaultFactory) -> AlterVault:
    """Return an open vault acting as the system principal, connected to the peer."""
    return await make_vault()


async def connect_in_browser(
    vault: AlterVault, agent: BrowserlessAgent, *, account_hint: str | None = None,
    repair_grant_id: str | None = None,
) -> Grant:
    """Create a connect session, play the browser through it, and return the new grant."""
    link = await vault.create_connect_session(
        allowed_providers=None if repair_grant_id else [PROVIDER],
        account_hint=account_hint, repair_grant_id=repair_grant_id)
    page = await agent.follow_response(link.connect_url)
    assert page.status_code == 200, page.text
    session = await vault.connect_status(link.session_id)
    assert session.grant_ids, session
    return await vault.get_grant(session.grant_ids[0])


async def stored_tokens(vault: AlterVault, grant_id: str) -> tuple[TokenSet, int]:
    """Return a grant's decrypted tokens and credential version (the test peeks at the store)."""
    record = await vault.store.get_credential(grant_id)
    assert record is not None
    return open_credential(vault.envelope, record), record.version


async def audit_dump(vault: AlterVault) -> list[dict[str, Any]]:
    """Return every audit event as JSON-ready data."""
    events = await vault.store.list_audit(AuditFilter(limit=100_000))
    return [event.model_dump(mode="json") for event in events]


async def counts(vault: AlterVault) -> dict[str, int]:
    """Return how many grants, credentials and finished sessions the store holds."""
    grants = await vault.store.list_grants(["system", ALICE.principal.key, BOB.principal.key],
                                           limit=1000)
    creds = [await vault.store.get_credential(g.grant_id) for g in grants]
    return {"grants": len(grants), "credentials": sum(c is not None for c in creds)}


def assert_absent(secrets: Iterable[str], *texts: str) -> None:
    """Fail if any secret value occurs in any of the texts."""
    for secret in secrets:
        assert len(secret) >= 8
        for text in texts:
            assert secret not in text, "a secret value leaked"


def dumps(value: Any) -> str:
    """Return a JSON rendering of ``value`` for leak searches."""
    return json.dumps(value, default=repr, sort_keys=True)
