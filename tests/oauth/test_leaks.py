"""No token, code, state, verifier or client secret in results, errors, logs, audit or the DB."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx2
import pytest

from alter_mcp.errors import ReAuthRequiredError
from alter_mcp.oauth.sessions import verifier_binding
from tests.oauth.conftest import (
    PROVIDER,
    Clock,
    VaultFactory,
    audit_dump,
    dumps,
    stored_tokens,
)
from tests.peers.fixtures import CONF_APP, CONF_APP_SECRET
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer, callback_params

pytestmark = pytest.mark.peers

#: What the test's own browser requests: its HTTP logs show the redirects it follows.
_BROWSER_PATHS = ("/auth", "/interaction/", "/connect/", "/oauth/callback")


def _browsing(record: logging.LogRecord) -> bool:
    """Return True for an HTTP-library log line about the test browser's own requests."""
    return record.name.startswith(("httpx2", "httpcore2")) and any(
        path in record.getMessage() for path in _BROWSER_PATHS)


async def test_oauth_lifecycle_leaks_no_secret_anywhere(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, clock: Clock,
    oidc_peer: OidcProviderPeer, caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    """Connect, refresh, reuse, re-auth error and revoke leave no secret outside the requests."""
    caplog.set_level(logging.DEBUG)
    vault = await make_vault()
    shown: list[object] = []
    link = await vault.create_connect_session(allowed_providers=[PROVIDER])
    connect_token = link.connect_url.rsplit("/", 1)[1]
    prefix = link.connect_url.split("/connect/")[0] + "/oauth/callback"
    callback = await browser_agent.follow(link.connect_url, stop_at_prefix=prefix)
    params = callback_params(callback)
    session_record = await vault.store.get_session(link.session_id)
    assert session_record is not None and session_record.verifier_blob is not None
    verifier = vault.envelope.open_text(session_record.verifier_blob,
                                        aad=verifier_binding(link.session_id))
    shown.append((await browser_agent.get(callback)).text)
    session = await vault.connect_status(link.session_id)
    grant = await vault.get_grant(session.grant_ids[0])
    first, _ = await stored_tokens(vault, grant.grant_id)
    clock.advance(3600)
    shown.append(await vault._credential_for(grant))
    second, _ = await stored_tokens(vault, grant.grant_id)
    assert first.refresh_token is not None
    async with httpx2.AsyncClient() as client:  # reuse: the server revokes the family
        await client.post(oidc_peer.token_endpoint, auth=(CONF_APP, CONF_APP_SECRET), data={
            "grant_type": "refresh_token", "refresh_token": first.refresh_token.reveal()})
    clock.advance(3600)
    with pytest.raises(ReAuthRequiredError) as caught:
        await vault._credential_for(grant)
    shown.extend([caught.value, str(caught.value), caught.value.to_dict()])
    shown.extend([link.model_copy(update={"connect_url": ""}), session, grant,
                  await vault.list_grants(), await vault.revoke_grant(grant.grant_id)])

    secrets = [params["code"], params["state"], verifier, CONF_APP_SECRET, connect_token,
               *(s.reveal() for s in [*first.secrets(), *second.secrets()])]
    logs = "\n".join(r.getMessage() for r in caplog.records if not _browsing(r))
    texts = [dumps(await audit_dump(vault)), logs, *(repr(x) for x in shown),
             *(dumps(x) for x in shown)]
    for secret in secrets:
        assert len(secret) >= 16
        for text in texts:
            assert secret not in text, "a secret value leaked"
    database = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("vault.db*"))
    for secret in secrets:
        assert secret.encode() not in database, "a secret value is stored in plaintext"
