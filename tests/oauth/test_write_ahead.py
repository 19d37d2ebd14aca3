"""Write-ahead audit of token refresh and revocation, against the real oidc-provider.

A SQLite trigger aborting one kind of audit insert stands in for a failing audit store; the
peer's own counters show whether the refresh or revocation reached it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from alter_mcp.errors import AlterError, AuditWriteError, RequestSentUnauditedError
from alter_mcp.models import GrantStatus
from alter_mcp.oauth.tokens import TokenSet
from alter_mcp.server.errors import describe
from alter_mcp.store.sqlite import SQLiteStore
from alter_mcp.vault import AlterVault
from tests.oauth.conftest import (
    Clock,
    VaultFactory,
    assert_absent,
    audit_dump,
    connect_in_browser,
    dumps,
    oidc_entry,
    stored_tokens,
)
from tests.peers.fixtures import CONF_APP, CONF_APP_SECRET
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer

pytestmark = pytest.mark.peers

HOUR = 3600.0


def refuse_audit(vault: AlterVault, action: str) -> None:
    """Make the database abort inserts of audit events with this action (a failing store)."""
    assert isinstance(vault.store, SQLiteStore)
    with sqlite3.connect(vault.store.path) as db:
        db.execute("CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events "
                   f"WHEN NEW.action = '{action}' BEGIN SELECT RAISE(ABORT, 'disk full'); END")


async def assert_tokens_nowhere(vault: AlterVault, tokens: TokenSet, exc: AlterError,
                                caplog: pytest.LogCaptureFixture) -> None:
    """Fail if a token value is in the error, its MCP text, the log, audit rows or files."""
    values = [tokens.access_token.reveal()]
    if tokens.refresh_token is not None:
        values.append(tokens.refresh_token.reveal())
    files = b"".join(p.read_bytes() for p in Path(vault.settings.data_dir).iterdir()
                     if p.is_file())
    assert_absent(values, str(exc), repr(exc), dumps(exc.to_dict()), describe(exc),
                  caplog.text, dumps(await audit_dump(vault)), files.decode("latin-1"))


def api_entry(peer: OidcProviderPeer) -> dict[str, object]:
    """Return the peer as a provider whose API is its own userinfo endpoint."""
    entry = oidc_entry(peer)
    entry.update(api_hosts=["localhost"], api_ports=[peer.port])
    return entry


async def refresh_refusing(make_vault: VaultFactory, agent: BrowserlessAgent, clock: Clock,
                           peer: OidcProviderPeer, action: str | None,
                           expected: type[AlterError],
                           ) -> tuple[AlterVault, str, TokenSet, Any]:
    """Connect, let the token expire, refuse audit events of ``action`` (if any), call the API.

    Return the vault, the grant id, the tokens before the call, and the error it raised.
    """
    vault = await make_vault(entry=api_entry(peer), allow_insecure_http=True)
    grant = await connect_in_browser(vault, agent)
    tokens, _ = await stored_tokens(vault, grant.grant_id)
    clock.advance(HOUR)
    await peer.areset_stats()
    if action is not None:
        refuse_audit(vault, action)
    url = peer.userinfo_endpoint.replace("127.0.0.1", "localhost")
    with pytest.raises(expected) as failed:
        await vault.request("GET", url, grant_id=grant.grant_id)
    return vault, grant.grant_id, tokens, failed.value


async def test_write_ahead_refresh_intent_unwritable_sends_no_refresh(
        make_vault: VaultFactory, browser_agent: BrowserlessAgent, clock: Clock,
        oidc_peer: OidcProviderPeer, caplog: pytest.LogCaptureFixture) -> None:
    """If the refresh's intent cannot be written, the token endpoint receives nothing."""
    vault, grant_id, tokens, exc = await refresh_refusing(
        make_vault, browser_agent, clock, oidc_peer, "grant.refresh.intent", AuditWriteError)
    assert "token refresh was not sent" in exc.message
    assert (await oidc_peer.astats())["token"].get("refresh_token", 0) == 0
    assert (await stored_tokens(vault, grant_id))[1] == 1
    # The API request's own intent got its outcome: nothing is left unfinished.
    assert await vault.audit_log.unfinished() == []
    await assert_tokens_nowhere(vault, tokens, exc, caplog)


async def test_write_ahead_refresh_outcome_unwritable_says_sent(
        make_vault: VaultFactory, browser_agent: BrowserlessAgent, clock: Clock,
        oidc_peer: OidcProviderPeer, caplog: pytest.LogCaptureFixture) -> None:
    """If the refresh's outcome cannot be written, the caller learns it was sent; tokens kept."""
    vault, grant_id, _, exc = await refresh_refusing(
        make_vault, browser_agent, clock, oidc_peer, "grant.refresh", RequestSentUnauditedError)
    assert exc.what == "token refresh" and exc.status == 200
    assert "retry" not in str(exc).lower() and "Do not retry" in describe(exc)
    assert "API request was not sent" in exc.message
    assert (await oidc_peer.astats())["token"].get("refresh_token") == 1
    fresh, version = await stored_tokens(vault, grant_id)
    assert version == 2  # the rotated refresh token was stored before the audit failed
    [pending] = await vault.audit_log.unfinished()
    assert pending.action == "grant.refresh.intent" and pending.seq == exc.intent_seq
    await assert_tokens_nowhere(vault, fresh, exc, caplog)


async def revoke_refusing(make_vault: VaultFactory, agent: BrowserlessAgent,
                          peer: OidcProviderPeer, action: str,
                          expected: type[AlterError]) -> tuple[AlterVault, TokenSet, Any]:
    """Connect a grant, refuse audit events of ``action``, revoke: return vault, tokens, error."""
    vault = await make_vault()
    grant = await connect_in_browser(vault, agent)
    tokens, _ = await stored_tokens(vault, grant.grant_id)
    await peer.areset_stats()
    refuse_audit(vault, action)
    with pytest.raises(expected) as failed:
        await vault.revoke_grant(grant.grant_id)
    return vault, tokens, failed.value


async def test_write_ahead_revocation_intent_unwritable_sends_nothing(
        make_vault: VaultFactory, browser_agent: BrowserlessAgent,
        oidc_peer: OidcProviderPeer, caplog: pytest.LogCaptureFixture) -> None:
    """If the revocation's intent cannot be written, the provider gets no revocation request."""
    vault, tokens, exc = await revoke_refusing(make_vault, browser_agent, oidc_peer,
                                               "grant.revoke.intent", AuditWriteError)
    assert "revocation at the provider was not sent" in exc.message
    assert (await oidc_peer.astats())["revocation"] == 0
    grants = await vault.list_grants()
    assert [g.status for g in grants.grants] == [GrantStatus.ACTIVE]
    live = await oidc_peer.aintrospect(tokens.access_token.reveal(), CONF_APP, CONF_APP_SECRET)
    assert live["active"] is True
    await assert_tokens_nowhere(vault, tokens, exc, caplog)


async def test_write_ahead_revocation_outcome_unwritable_says_sent(
        make_vault: VaultFactory, browser_agent: BrowserlessAgent,
        oidc_peer: OidcProviderPeer, caplog: pytest.LogCaptureFixture) -> None:
    """If the revocation's outcome cannot be written, the caller learns it was sent."""
    vault, tokens, exc = await revoke_refusing(make_vault, browser_agent, oidc_peer,
                                               "grant.revoke", RequestSentUnauditedError)
    assert exc.what == "revocation at the provider" and "revoked" in exc.message
    assert "retry" not in str(exc).lower() and "Do not retry" in describe(exc)
    assert (await oidc_peer.astats())["revocation"] == 2
    dead = await oidc_peer.aintrospect(tokens.access_token.reveal(), CONF_APP, CONF_APP_SECRET)
    assert dead["active"] is False
    [pending] = await vault.audit_log.unfinished()
    assert pending.action == "grant.revoke.intent" and pending.seq == exc.intent_seq
    await assert_tokens_nowhere(vault, tokens, exc, caplog)


async def test_write_ahead_revocation_outcome_links_intent(
        make_vault: VaultFactory, browser_agent: BrowserlessAgent) -> None:
    """A revocation writes its intent before the tokens are read and links it from grant.revoke."""
    vault = await make_vault()
    grant = await connect_in_browser(vault, browser_agent)
    await vault.revoke_grant(grant.grant_id)
    events = await audit_dump(vault)
    intent = next(e for e in events if e["action"] == "grant.revoke.intent")
    outcome = next(e for e in events if e["action"] == "grant.revoke")
    assert intent["seq"] < outcome["seq"] and outcome["detail"]["intent_seq"] == intent["seq"]
    assert intent["url"] and intent["method"] == "POST"
    assert await vault.audit_log.unfinished() == []


async def test_write_ahead_refresh_unexpected_error_after_send_is_typed_and_audited(
        make_vault: VaultFactory, browser_agent: BrowserlessAgent, clock: Clock,
        oidc_peer: OidcProviderPeer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash after the refresh was sent is SentRequestFailedError and the refresh's outcome."""
    from alter_mcp.errors import SentRequestFailedError
    from alter_mcp.oauth.client import OAuthHttp

    real = OAuthHttp.refresh

    async def crash_after_sending(self: OAuthHttp, *args: Any, **kwargs: Any) -> Any:
        await real(self, *args, **kwargs)
        raise RuntimeError("bug after the token endpoint answered")

    monkeypatch.setattr(OAuthHttp, "refresh", crash_after_sending)  # fault injection
    vault, _, _, exc = await refresh_refusing(
        make_vault, browser_agent, clock, oidc_peer, None, SentRequestFailedError)
    assert exc.sent and "token refresh was sent" in exc.message
    assert (await oidc_peer.astats())["token"].get("refresh_token") == 1
    events = await audit_dump(vault)
    outcome = next(e for e in events if e["action"] == "grant.refresh")
    assert outcome["outcome"] == "error" and outcome["error"] == "RuntimeError"
    assert outcome["detail"]["intent_seq"] == exc.intent_seq
    assert await vault.audit_log.unfinished() == []
