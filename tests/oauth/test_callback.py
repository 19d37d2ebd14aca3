"""Refused callbacks: each gives a clear page and writes nothing but a denied audit event."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from alter_mcp.models import ConnectSessionStatus
from alter_mcp.oauth import ConnectLink
from alter_mcp.vault import AlterVault
from tests.oauth.conftest import (
    ALICE,
    BOB,
    PROVIDER,
    Clock,
    VaultFactory,
    audit_dump,
    counts,
    oidc_entry,
)
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer, callback_params

pytestmark = pytest.mark.peers


def callback_prefix(link: ConnectLink) -> str:
    """Return the callback URL prefix of the server that issued ``link``."""
    parts = urlsplit(link.connect_url)
    return f"{parts.scheme}://{parts.netloc}/oauth/callback"


async def pending_callback(vault: AlterVault, agent: BrowserlessAgent,
                           **options: Any) -> tuple[ConnectLink, str]:
    """Open a link in ``agent`` and return the provider's callback URL, not yet requested."""
    link = await vault.create_connect_session(allowed_providers=[PROVIDER], **options)
    url = await agent.follow(link.connect_url, stop_at_prefix=callback_prefix(link))
    return link, url


async def snapshot(vault: AlterVault, link: ConnectLink) -> tuple[Any, ...]:
    """Return what a refused callback must leave unchanged."""
    record = await vault.store.get_session(link.session_id)
    assert record is not None
    session = record.session
    return (await counts(vault), session.status, session.grant_ids, record.state_hash)


async def assert_only_denied_audit(vault: AlterVault, before: int, reason: str) -> None:
    """Check that the events written since ``before`` are one denied callback with ``reason``."""
    events = (await audit_dump(vault))[before:]
    assert [(e["action"], e["outcome"], e["reason"]) for e in events] == [
        ("connect.callback", "denied", reason)]


async def test_callback_expired_session_is_refused(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, clock: Clock,
    oidc_peer: OidcProviderPeer,
) -> None:
    """A callback arriving after the session expired gets 410 and changes nothing."""
    vault = await make_vault()
    link, url = await pending_callback(vault, browser_agent)
    clock.advance(vault.settings.connect_session_ttl + 1)
    before, audits = await snapshot(vault, link), len(await audit_dump(vault))
    page = await browser_agent.get(url)
    assert page.status_code == 410 and "expired" in page.text
    assert await snapshot(vault, link) == before
    await assert_only_denied_audit(vault, audits, "expired")
    assert (await vault.connect_status(link.session_id)).status is ConnectSessionStatus.EXPIRED
    assert (await oidc_peer.astats())["token"] == {}


async def test_callback_replayed_state_is_refused(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, oidc_peer: OidcProviderPeer,
) -> None:
    """Presenting a used callback again gets 409 and neither a second exchange nor grant."""
    vault = await make_vault()
    link, url = await pending_callback(vault, browser_agent)
    assert (await browser_agent.get(url)).status_code == 200
    before, audits = await snapshot(vault, link), len(await audit_dump(vault))
    page = await browser_agent.get(url)
    assert page.status_code == 409 and "already used" in page.text
    assert await snapshot(vault, link) == before
    await assert_only_denied_audit(vault, audits, "replayed")
    assert (await oidc_peer.astats())["token"] == {"authorization_code": 1}


async def test_callback_with_another_principals_state_is_refused(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent,
) -> None:
    """Alice's browser presenting Bob's state is refused; Bob can still finish his connect."""
    vault = await make_vault()
    alice, bob = vault.with_identity(ALICE), vault.with_identity(BOB)
    await pending_callback(alice, browser_agent)
    async with BrowserlessAgent() as bob_browser:
        bob_link, bob_url = await pending_callback(bob, bob_browser, account_hint="bob")
        before, audits = await snapshot(vault, bob_link), len(await audit_dump(vault))
        page = await browser_agent.get(bob_url)
        assert page.status_code == 403 and "not opened in this browser" in page.text
        assert await snapshot(vault, bob_link) == before
        await assert_only_denied_audit(vault, audits, "foreign_state")
        async with BrowserlessAgent() as stranger:
            assert (await stranger.get(bob_url)).status_code == 403
        assert (await bob_browser.get(bob_url)).status_code == 200
    session = await bob.connect_status(bob_link.session_id)
    grant = await bob.get_grant(session.grant_ids[0])
    assert grant.owner == BOB.principal and grant.account_identifier == "bob@example.test"
    assert (await alice.list_grants()).grants == ()


async def test_callback_access_denied_is_refused(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, oidc_peer: OidcProviderPeer,
) -> None:
    """``error=access_denied`` from the provider gets 403 and writes nothing."""
    vault = await make_vault()
    link, url = await pending_callback(vault, browser_agent, account_hint="deny")
    assert callback_params(url)["error"] == "access_denied"
    before, audits = await snapshot(vault, link), len(await audit_dump(vault))
    page = await browser_agent.get(url)
    assert page.status_code == 403 and "denied" in page.text
    assert await snapshot(vault, link) == before
    await assert_only_denied_audit(vault, audits, "access_denied")
    assert (await oidc_peer.astats())["token"] == {}


async def test_callback_unknown_state_is_refused(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent,
) -> None:
    """A state this server never issued gets 400 and a denied audit event."""
    vault = await make_vault()
    link, url = await pending_callback(vault, browser_agent)
    forged = url.replace("state=", "state=0", 1)
    audits = len(await audit_dump(vault))
    page = await browser_agent.get(forged)
    assert page.status_code == 400
    await assert_only_denied_audit(vault, audits, "unknown_state")
    bare = callback_prefix(link) + "?" + urlencode({"code": "x" * 20})
    assert (await browser_agent.get(bare)).status_code == 400


async def test_callback_wrong_issuer_is_refused_then_right_one_accepted(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent,
) -> None:
    """An ``iss`` other than the provider's is refused without consuming the state."""
    vault = await make_vault()
    link, url = await pending_callback(vault, browser_agent)
    params = callback_params(url)
    assert params["iss"].startswith("http://127.0.0.1:")
    mixed_up = callback_prefix(link) + "?" + urlencode(params | {"iss": "https://evil.test"})
    before, audits = await snapshot(vault, link), len(await audit_dump(vault))
    page = await browser_agent.get(mixed_up)
    assert page.status_code == 400 and "unexpected server" in page.text
    assert await snapshot(vault, link) == before
    await assert_only_denied_audit(vault, audits, "issuer_mismatch")
    assert (await browser_agent.get(url)).status_code == 200


async def test_callback_declared_issuer_required_exactly(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, oidc_peer: OidcProviderPeer,
) -> None:
    """With the catalogue's issuer set, a callback without ``iss`` or with another is refused."""
    vault = await make_vault(entry=oidc_entry(oidc_peer, issuer=oidc_peer.issuer))
    link, url = await pending_callback(vault, browser_agent)
    params = callback_params(url)
    assert params["iss"] == oidc_peer.issuer
    before, audits = await snapshot(vault, link), len(await audit_dump(vault))
    missing = {k: v for k, v in params.items() if k != "iss"}
    page = await browser_agent.get(callback_prefix(link) + "?" + urlencode(missing))
    assert page.status_code == 400 and "did not say which server" in page.text
    assert await snapshot(vault, link) == before
    await assert_only_denied_audit(vault, audits, "issuer_missing")
    audits = len(await audit_dump(vault))
    prefixed = params | {"iss": oidc_peer.issuer + "/extra"}
    page = await browser_agent.get(callback_prefix(link) + "?" + urlencode(prefixed))
    assert page.status_code == 400
    await assert_only_denied_audit(vault, audits, "issuer_mismatch")
    assert (await browser_agent.get(url)).status_code == 200


async def test_callback_failed_exchange_marks_session_failed_without_grant(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, oidc_peer: OidcProviderPeer,
) -> None:
    """A code the token endpoint refuses (wrong client secret) fails the session cleanly."""
    vault = await make_vault(client={"client_id": "conf-app", "client_secret": "wrong-secret-42"})
    link, url = await pending_callback(vault, browser_agent)
    page = await browser_agent.get(url)
    assert page.status_code == 502 and "invalid_client" in page.text
    assert "wrong-secret-42" not in page.text and callback_params(url)["code"] not in page.text
    session = await vault.connect_status(link.session_id)
    assert session.status is ConnectSessionStatus.FAILED and session.grant_ids == ()
    assert (await counts(vault))["grants"] == 0
    event = (await audit_dump(vault))[-2]
    assert (event["action"], event["outcome"], event["error"]) == (
        "connect.callback", "denied", "token_endpoint_error")
    assert (await oidc_peer.astats())["token"] == {"authorization_code": 1}
