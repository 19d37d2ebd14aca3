"""Write-ahead audit of vault.request, with real faults: an audit store that refuses inserts.

A SQLite trigger that aborts inserts into ``audit_events`` (all of them, or only the outcome
event) stands in for a full or read-only disk; a stopped PostgreSQL server is the real thing.
The provider is a loopback recorder that counts what reaches it.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

import alter_mcp.outbound
from alter_mcp.config import Settings, load_settings
from alter_mcp.errors import (
    AlterError,
    AuditWriteError,
    GrantNotFoundError,
    RequestSentUnauditedError,
    SentRequestFailedError,
)
from alter_mcp.models import SystemPrincipal
from alter_mcp.outbound import ApprovalRequest
from alter_mcp.server.errors import describe
from alter_mcp.store import AuditFilter
from alter_mcp.store.sqlite import SQLiteStore
from alter_mcp.vault import AlterVault
from tests.peers.postgres import PostgresCluster, find_bindir, temporary_cluster
from tests.peers.recorder import RequestRecorder

ALL = AuditFilter(limit=100_000)


def settings_for(tmp_path: Path, master_key: str, recorder: RequestRecorder,
                 **env: str) -> Settings:
    """Return settings whose catalogue has a bearer-key provider served by ``recorder``."""
    catalog = {"rec": {"name": "Recorder", "auth_kind": "api_key", "api_hosts": ["localhost"],
                       "api_ports": [recorder.port],
                       "injection": [{"kind": "bearer", "format": "{api_key}"}],
                       "secret_fields": [{"name": "api_key", "label": "Key"}]}}
    return load_settings({"ALTER_MCP_DATA_DIR": str(tmp_path / "d"),
                          "ALTER_MCP_MASTER_KEY": master_key,
                          "ALTER_MCP_ALLOW_INSECURE_HTTP": "true", **env}, catalog=catalog)


@pytest.fixture
def api(recorder_factory: Callable[..., RequestRecorder]) -> RequestRecorder:
    """Return a provider API stand-in that answers 201 and records every request."""
    return recorder_factory(status=201, body=b'{"id": 7}')


@pytest.fixture
def token() -> str:
    """Return a fresh API key value to search for."""
    return "wal-" + secrets.token_urlsafe(24)


@pytest.fixture
async def vault(tmp_path: Path, master_key: str,
                api: RequestRecorder) -> AsyncIterator[AlterVault]:
    """Yield a system vault on SQLite whose catalogue includes the recorder provider."""
    async with AlterVault(settings_for(tmp_path, master_key, api), caller="wal") as opened:
        yield opened


async def grant_of(vault: AlterVault, token: str) -> str:
    """Store ``token`` as a managed secret granted to the system; return the grant id."""
    secret = await vault.create_managed_secret("rec", {"api_key": token}, label="wal")
    grant = await vault.create_managed_secret_grant(secret.secret_id,
                                                    principal=SystemPrincipal())
    return grant.grant_id


def refuse_audit(vault: AlterVault, when: str = "1") -> None:
    """Make the database abort inserts into audit_events matching ``when`` (disk full)."""
    assert isinstance(vault.store, SQLiteStore)
    with sqlite3.connect(vault.store.path) as db:
        db.execute("CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events "
                   f"WHEN {when} BEGIN SELECT RAISE(ABORT, 'disk is full'); END")


def allow_audit(vault: AlterVault) -> None:
    """Drop the trigger ``refuse_audit`` made."""
    assert isinstance(vault.store, SQLiteStore)
    with sqlite3.connect(vault.store.path) as db:
        db.execute("DROP TRIGGER refuse_audit")


async def assert_token_nowhere(vault: AlterVault, token: str, exc: AlterError,
                               caplog: pytest.LogCaptureFixture) -> None:
    """Fail if the token is in the error, its MCP text, the log, the audit rows or any file."""
    texts = [str(exc), repr(exc), describe(exc), repr(exc.to_dict()), caplog.text]
    texts += [e.model_dump_json() for e in await vault.audit_log.events(ALL)]
    assert all(token not in text for text in texts)
    data = Path(vault.settings.data_dir)  # on PostgreSQL only the rows above hold data
    files = list(data.iterdir()) if data.is_dir() else []
    assert all(token.encode() not in p.read_bytes() for p in files if p.is_file())


def post(vault: AlterVault, api: RequestRecorder, grant_id: str, **kw: Any) -> Any:
    """Return the coroutine of a POST (a payment, say) to the recorder."""
    return vault.request("POST", f"http://localhost:{api.port}/v1/payments", grant_id=grant_id,
                         json={"amount": 5}, **kw)


async def test_write_ahead_request_intent_and_outcome_linked(vault: AlterVault,
                                                             api: RequestRecorder,
                                                             token: str) -> None:
    """A request writes its intent, then its outcome naming the intent's seq; none unfinished."""
    gid = await grant_of(vault, token)
    before = len(await vault.audit_log.events(ALL))
    result = await post(vault, api, gid, reason="pay the invoice")
    events = (await vault.audit_log.events(ALL))[before:]
    assert result.status == 201 and len(api.requests) == 1
    assert [(e.action, e.outcome.value) for e in events] == [("request.intent", "allowed"),
                                                              ("request", "allowed")]
    intent, outcome = events
    assert intent.detail == {"intent": True} and intent.reason == "pay the invoice"
    assert intent.method == "POST" and intent.url == outcome.url and intent.grant_id == gid
    assert outcome.detail["intent_seq"] == intent.seq and outcome.status == 201
    assert await vault.audit_log.unfinished() == []


async def test_write_ahead_request_intent_unwritable_sends_nothing(
        vault: AlterVault, api: RequestRecorder, token: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """With audit inserts failing, the provider receives nothing and the error says so."""
    gid = await grant_of(vault, token)
    refuse_audit(vault)
    for _ in range(20):
        with pytest.raises(AuditWriteError) as failed:
            await post(vault, api, gid)
        assert "nothing reached the provider" in failed.value.message
    assert api.requests == []
    assert "nothing was sent" in describe(failed.value)
    await assert_token_nowhere(vault, token, failed.value, caplog)


async def test_write_ahead_reservation_is_the_intent(tmp_path: Path, master_key: str,
                                                     api: RequestRecorder, token: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Under a rate limit the reservation is the intent: two writes, and none means no send."""
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\nname = "ten"\nrate_limit = {limit = 10, window_seconds = 60}\n')
    settings = settings_for(tmp_path, master_key, api, ALTER_MCP_POLICY_FILE=str(policy))
    async with AlterVault(settings, caller="wal") as vault:
        gid = await grant_of(vault, token)
        before = len(await vault.audit_log.events(ALL))
        await post(vault, api, gid)
        events = (await vault.audit_log.events(ALL))[before:]
        assert [e.action for e in events] == ["request.reserve", "request"]
        assert events[0].detail["intent"] is True
        assert events[1].detail["intent_seq"] == events[0].seq
        refuse_audit(vault)
        with pytest.raises(AuditWriteError) as failed:
            await post(vault, api, gid)
        assert "nothing reached the provider" in failed.value.message
        assert len(api.requests) == 1
        await assert_token_nowhere(vault, token, failed.value, caplog)


async def test_write_ahead_outcome_unwritable_says_sent_with_status(
        vault: AlterVault, api: RequestRecorder, token: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """When only the outcome cannot be written, the caller learns it was sent (201), no retry."""
    gid = await grant_of(vault, token)
    refuse_audit(vault, "NEW.action = 'request'")
    with pytest.raises(RequestSentUnauditedError) as unaudited:
        await post(vault, api, gid)
    exc = unaudited.value
    assert exc.code == "audit_outcome_failed" and exc.status == 201
    assert "was sent" in exc.message and "HTTP 201" in exc.message
    assert "retry" not in str(exc).lower()
    text = describe(exc)
    assert "Do not retry" in text and "HTTP 201" in text and "Retry later" not in text
    assert len(api.requests) == 1
    [pending] = await vault.audit_log.unfinished()
    assert pending.seq == exc.intent_seq and pending.action == "request.intent"
    assert pending.url == f"http://localhost:{api.port}/v1/payments"
    await assert_token_nowhere(vault, token, exc, caplog)
    allow_audit(vault)
    assert (await vault.verify_audit()).ok


async def test_write_ahead_denied_before_intent_is_one_event(vault: AlterVault,
                                                             api: RequestRecorder) -> None:
    """A request for a grant the caller cannot use is one denied event and sends nothing."""
    before = len(await vault.audit_log.events(ALL))
    with pytest.raises(GrantNotFoundError):
        await post(vault, api, "no-such-grant")
    events = (await vault.audit_log.events(ALL))[before:]
    assert [(e.action, e.outcome.value) for e in events] == [("request", "denied")]
    assert api.requests == []


async def test_write_ahead_unexpected_error_after_send_is_typed_and_audited(
        vault: AlterVault, api: RequestRecorder, token: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash while reading the answer becomes SentRequestFailedError and is the outcome."""
    gid = await grant_of(vault, token)

    def broken(result: Any) -> Any:
        raise RuntimeError("bug while classifying")

    monkeypatch.setattr(alter_mcp.outbound, "classify", broken)  # fault injection
    with pytest.raises(SentRequestFailedError) as failed:
        await post(vault, api, gid)
    assert failed.value.sent and failed.value.status == 201 and len(api.requests) == 1
    assert "was sent" in failed.value.message
    outcome = (await vault.audit_log.events(ALL))[-1]
    assert (outcome.action, outcome.outcome.value, outcome.error) == (
        "request", "error", "RuntimeError")
    assert outcome.detail["intent_seq"] == failed.value.intent_seq
    assert outcome.status == 201 and outcome.detail["sent"] is True


@pytest.mark.peers
async def test_write_ahead_postgres_down_sends_nothing(
        tmp_path: Path, master_key: str, api: RequestRecorder, token: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL stopped after approval and before the intent: the provider receives nothing."""
    if find_bindir() is None:
        pytest.skip("PostgreSQL is not installed: no /usr/lib/postgresql/*/bin/initdb")
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\nname = "ask"\nrequire_approval = true\n')
    with temporary_cluster() as cluster:  # its own: this test stops it
        settings = settings_for(tmp_path, master_key, api, ALTER_MCP_POLICY_FILE=str(policy),
                                ALTER_MCP_DATABASE_URL=cluster.url())

        async def approve_then_stop(ask: ApprovalRequest) -> bool:
            await anyio.to_thread.run_sync(cluster.stop)
            return True

        vault = AlterVault(settings, caller="wal")
        await vault.open()
        try:
            gid = await grant_of(vault, token)
            with pytest.raises(AuditWriteError) as failed:
                await post(vault, api, gid, approver=approve_then_stop)
        finally:
            await vault.close()
    assert "nothing reached the provider" in failed.value.message
    assert api.requests == []
    assert token not in str(failed.value) + describe(failed.value) + caplog.text


@pytest.mark.peers
async def test_write_ahead_postgres_outcome_refused_says_sent(
        tmp_path: Path, master_key: str, api: RequestRecorder, token: str,
        postgres_cluster: PostgresCluster, postgres_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """On PostgreSQL, a refused outcome insert tells the caller the request was sent (201)."""
    settings = settings_for(tmp_path, master_key, api, ALTER_MCP_DATABASE_URL=postgres_url)
    async with AlterVault(settings, caller="wal") as vault:
        gid = await grant_of(vault, token)
        postgres_cluster.psql(
            "CREATE FUNCTION refuse_outcome() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.action = 'request' THEN RAISE EXCEPTION 'disk full'; END IF; RETURN NEW; "
            "END $$; CREATE TRIGGER refuse_outcome BEFORE INSERT ON audit_events FOR EACH ROW "
            "EXECUTE FUNCTION refuse_outcome()", database=postgres_url.rsplit("/", 1)[1])
        with pytest.raises(RequestSentUnauditedError) as unaudited:
            await post(vault, api, gid)
        exc = unaudited.value
        assert exc.status == 201 and "retry" not in str(exc).lower()
        assert len(api.requests) == 1
        [pending] = await vault.audit_log.unfinished()
        assert pending.seq == exc.intent_seq
        await assert_token_nowhere(vault, token, exc, caplog)
