"""Outages are not bad credentials: when the database or the identity provider's keys cannot be
reached, HTTP answers 503 with Retry-After (and /ready says which check failed), never 401.

Real peers fail for real: a private PostgreSQL cluster is stopped mid-run, a SQLite file is
overwritten on disk, a private oauth2-mock-server is stopped, and a JWKS URL points at a port
that is bound but not listening.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from alter_mcp.tokens import JwtVerifier
from alter_mcp.vault import AlterVault
from tests.peers.mockidp import MockIdpPeer
from tests.peers.postgres import PostgresCluster, find_bindir, temporary_cluster
from tests.peers.process import free_port
from tests.server.conftest import VaultFactory, audience, http_server
from tests.server.test_credentials import RawResponse, raw_request


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster this test may stop (the session's one is shared)."""
    if find_bindir() is None:
        pytest.skip("PostgreSQL is not installed (scripts/install-system installs it)")
    with temporary_cluster() as running:
        yield running


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connections to it are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


async def _ready(url: str) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=30, trust_env=False) as client:
        return await client.get(url + "/ready")


def assert_unavailable(resp: RawResponse, *secrets: str) -> None:
    """Assert a 503 that asks for a retry and does not challenge (or quote) the credential."""
    assert resp.status == 503, resp.text
    assert int(resp.header("retry-after")) > 0
    assert not [v for k, v in resp.headers if k == "www-authenticate"]
    body = json.loads(resp.body)
    assert body["error"] == "temporarily_unavailable"
    assert body["error_description"].startswith("The server could not check the credential")
    for secret in secrets:
        assert secret not in resp.text


async def _http_vault(make_vault: VaultFactory, issuer: str, **values: Any) -> AlterVault:
    return await make_vault(public_url=f"http://127.0.0.1:{free_port()}", idp_issuer=issuer,
                            **values)


async def test_outage_postgres_stopped_answers_503_and_ready_fails(
        make_vault: VaultFactory, mockidp: MockIdpPeer, cluster: PostgresCluster,
        caplog: pytest.LogCaptureFixture) -> None:
    """With PostgreSQL stopped mid-run, a valid agent key gets 503 with Retry-After (not 401),
    /ready turns from 200 to 503 naming the database, and a tool call inside an open session
    gets a retry-later tool error."""
    caplog.set_level(logging.DEBUG)
    vault = await _http_vault(make_vault, mockidp.issuer,
                              database_url=cluster.create_database("outage"))
    _, key = await vault.create_api_key("agent")
    jwt = mockidp.token(sub="alice", aud=audience(vault))
    async with http_server(vault) as url, Client(
            StreamableHttpTransport(url + "/mcp", auth=jwt)) as session:
        before = await raw_request(url, [("X-Alter-Agent-Key", key.reveal())])
        ready_before = await _ready(url)
        cluster.stop()
        after = await raw_request(url, [("X-Alter-Agent-Key", key.reveal())])
        bearer_after = await raw_request(url, [("Authorization", f"Bearer {key.reveal()}")])
        ready_after = await _ready(url)
        in_session = await session.call_tool("list_grants", {}, raise_on_error=False)
    assert before.status == 200
    assert ready_before.status_code == 200
    assert ready_before.json() == {"status": "ready", "checks": {
        "database": "ok", "keys": "ok", "migrations": "ok"}}
    assert_unavailable(after, key.reveal())
    assert_unavailable(bearer_after, key.reveal())
    assert "database is unavailable" in json.loads(after.body)["error_description"]
    assert "127.0.0.1" not in after.text  # the database's address stays in the server's log
    assert ready_after.status_code == 503 and int(ready_after.headers["retry-after"]) > 0
    assert ready_after.json()["failed"] == "database"
    assert in_session.is_error
    text = in_session.content[0].text
    # The store is down, so the failure cannot even be audited: the text says retry later.
    assert "Retry later" in text and "alter-mcp doctor" in text, text
    assert "sign in again" not in text
    assert any(r.levelno == logging.ERROR and "credential could not be checked" in
               r.getMessage() for r in caplog.records)  # the operator must act on it
    assert key.reveal() not in caplog.text and jwt not in caplog.text


async def test_outage_sqlite_file_destroyed_answers_503(
        make_vault: VaultFactory, mockidp: MockIdpPeer, tmp_path: Path) -> None:
    """When the SQLite files are overwritten on disk mid-run, a valid key gets 503, not 401."""
    vault = await _http_vault(make_vault, mockidp.issuer)
    _, key = await vault.create_api_key("agent")
    database = Path(vault.settings.resolved_database_url.removeprefix("sqlite:///"))
    async with http_server(vault) as url:
        before = await raw_request(url, [("X-Alter-Agent-Key", key.reveal())])
        # In place, same sizes: the open connections read the damage (a removed file would
        # keep serving from its open descriptor; a shrunk -shm would crash its mapping).
        for path in (database, *database.parent.glob(database.name + "-*")):
            with path.open("r+b") as file:
                file.write(b"\0" * path.stat().st_size)
        after = await raw_request(url, [("X-Alter-Agent-Key", key.reveal())])
        ready_after = await _ready(url)
    assert before.status == 200
    assert_unavailable(after, key.reveal())
    assert ready_after.status_code == 503 and ready_after.json()["failed"] == "database"


async def test_ready_fails_when_schema_is_not_this_code_s(
        make_vault: VaultFactory, mockidp: MockIdpPeer) -> None:
    """/ready answers 503 naming migrations when the database schema is newer than the code."""
    vault = await _http_vault(make_vault, mockidp.issuer)
    database = vault.settings.resolved_database_url.removeprefix("sqlite:///")
    async with http_server(vault) as url:
        assert (await _ready(url)).status_code == 200
        with sqlite3.connect(database) as conn:
            conn.execute("INSERT INTO schema_migrations VALUES (9999, 0)")
        resp = await _ready(url)
    assert resp.status_code == 503
    body = resp.json()
    assert body["failed"] == "migrations" and "v9999" in body["checks"]["migrations"]
    assert body["checks"]["database"] == "ok" and body["checks"]["keys"] == "ok"


async def test_outage_identity_provider_stopped_answers_503(make_vault: VaultFactory) -> None:
    """When the identity provider stops and its keys must be re-fetched, a valid JWT gets 503
    with Retry-After, not 401."""
    with MockIdpPeer().start() as idp:
        vault = await _http_vault(make_vault, idp.issuer)
        # jwks_ttl=0: every verification re-fetches the keys, as after the cache expires.
        vault.use_jwt_verifier(JwtVerifier(issuer=idp.issuer, audience=audience(vault),
                                           jwks_ttl=0.0))
        jwt = idp.token(sub="alice", aud=audience(vault))
        async with http_server(vault) as url:
            before = await raw_request(url, [("Authorization", f"Bearer {jwt}")])
            idp.stop()
            after = await raw_request(url, [("Authorization", f"Bearer {jwt}")])
    assert before.status == 200
    assert_unavailable(after, jwt)


async def test_outage_jwks_port_closed_answers_503(
        make_vault: VaultFactory, mockidp: MockIdpPeer, closed_port: int) -> None:
    """A JWKS URL whose port refuses connections makes a JWT request 503, while an agent key,
    which needs no JWKS, still works."""
    vault = await _http_vault(make_vault, mockidp.issuer)
    vault.use_jwt_verifier(JwtVerifier(
        issuer=mockidp.issuer, audience=audience(vault),
        jwks_uri=f"http://127.0.0.1:{closed_port}/jwks"))
    _, key = await vault.create_api_key("agent")
    jwt = mockidp.token(sub="alice", aud=audience(vault))
    async with http_server(vault) as url:
        with_jwt = await raw_request(url, [("Authorization", f"Bearer {jwt}")])
        with_key = await raw_request(url, [("X-Alter-Agent-Key", key.reveal())])
    assert_unavailable(with_jwt, jwt)
    assert "could not be fetched" in json.loads(with_jwt.body)["error_description"]
    assert with_key.status == 200


async def test_ready_needs_no_credential_but_the_public_host(
        make_vault: VaultFactory, mockidp: MockIdpPeer) -> None:
    """/ready answers 200 without a credential and 421 to a foreign Host, as the README says."""
    vault = await _http_vault(make_vault, mockidp.issuer)
    async with http_server(vault) as url, httpx2.AsyncClient(
            timeout=30, trust_env=False) as client:
        own = await client.get(url + "/ready")
        foreign = await client.get(url + "/ready", headers={"host": "evil.example"})
    assert own.status_code == 200 and own.json()["status"] == "ready"
    assert foreign.status_code == 421
