"""``alter_mcp.testing.SandboxProvider``: a strict enough OAuth server and API for real tests."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest

from alter_mcp.config import load_settings
from alter_mcp.errors import ConnectFlowError
from alter_mcp.testing import SandboxProvider
from alter_mcp.vault import AlterVault

REDIRECT = "http://127.0.0.1:9/oauth/callback"


class Clock:
    """A clock the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxProvider]:
    """Yield a running sandbox."""
    async with SandboxProvider() as provider:
        yield provider


@pytest.fixture
async def vault(sandbox: SandboxProvider, tmp_path: Path, master_key: str
                ) -> AsyncIterator[tuple[AlterVault, Clock]]:
    """Yield a vault configured for the sandbox, and its movable clock."""
    clock = Clock()
    settings = load_settings({"ALTER_MCP_MASTER_KEY": master_key}, data_dir=tmp_path,
                             connect_port=0, **sandbox.settings_overrides())
    async with AlterVault(settings, caller="tests", clock=clock) as opened:
        yield opened, clock


async def code_for(sandbox: SandboxProvider, http: httpx2.AsyncClient, challenge: str) -> str:
    """Authorize directly (no vault) and return the code the sandbox redirects with."""
    query = urlencode({"response_type": "code", "client_id": sandbox.client_id,
                       "redirect_uri": REDIRECT, "scope": "profile", "state": "s1",
                       "code_challenge": challenge, "code_challenge_method": "S256"})
    page = await http.get(f"{sandbox.authorization_url}?{query}")
    request_id = page.text.split("name=request value='")[1].split("'")[0]
    back = await http.post(sandbox.authorization_url,
                           data={"request": request_id, "decision": "approve"})
    params = parse_qs(urlsplit(back.headers["location"]).query)
    assert params["state"] == ["s1"] and params["iss"] == [sandbox.issuer]
    return params["code"][0]


def pkce() -> tuple[str, str]:
    """Return a verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def test_sandbox_connect_request_refresh_and_revoke_through_a_vault(
        sandbox: SandboxProvider, vault: tuple[AlterVault, Clock]) -> None:
    """A vault connects, calls the API, refreshes when due, and revokes at the sandbox."""
    opened, clock = vault
    [result] = await opened.connect([sandbox.provider_id], open_browser=sandbox.approve,
                                    timeout=20)
    assert result.account_identifier == sandbox.account
    me = await opened.request("GET", sandbox.api_url + "/me", grant_id=result.grant_id)
    assert me.status == 200 and me.json()["account"] == sandbox.account
    clock.offset = timedelta(hours=2)  # the access token is now due
    items = await opened.request("GET", sandbox.api_url + "/items", grant_id=result.grant_id)
    assert items.status == 200 and len(items.json()["items"]) == 3
    assert sandbox.stats["refreshed"] == 1
    await opened.revoke_grant(result.grant_id)
    assert not any(sandbox.token(t) for t in sandbox.auth.tokens)


async def test_sandbox_denied_consent_fails_the_connect(
        sandbox: SandboxProvider, vault: tuple[AlterVault, Clock]) -> None:
    """Clicking Deny ends the vault's connect with access_denied and no grant."""
    opened, _ = vault
    with pytest.raises(ConnectFlowError) as caught:
        await opened.connect([sandbox.provider_id], open_browser=sandbox.deny, timeout=20)
    assert caught.value.reason == "access_denied" and sandbox.stats["denied"] == 1
    assert (await opened.list_grants()).grants == ()


async def test_sandbox_enforces_pkce_single_use_codes_and_refresh_rotation(
        sandbox: SandboxProvider) -> None:
    """A wrong verifier, a reused code and a reused refresh token are all invalid_grant."""
    auth = (sandbox.client_id, sandbox.client_secret)
    async with httpx2.AsyncClient(trust_env=False) as http:
        verifier, challenge = pkce()
        code = await code_for(sandbox, http, challenge)
        exchange = {"grant_type": "authorization_code", "code": code,
                    "redirect_uri": REDIRECT}
        wrong = await http.post(sandbox.issuer + "/token", auth=auth,
                                data={**exchange, "code_verifier": "x" * 43})
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        code = await code_for(sandbox, http, challenge)
        ok = await http.post(sandbox.issuer + "/token", auth=auth,
                             data={**exchange, "code": code, "code_verifier": verifier})
        tokens = ok.json()
        assert ok.status_code == 200 and tokens["token_type"] == "Bearer"
        reused = await http.post(sandbox.issuer + "/token", auth=auth,
                                 data={**exchange, "code": code, "code_verifier": verifier})
        assert reused.json()["error"] == "invalid_grant"
        assert sandbox.token(tokens["access_token"]) is None  # a reused code revokes its tokens

        code = await code_for(sandbox, http, challenge)
        first = (await http.post(sandbox.issuer + "/token", auth=auth, data={
            **exchange, "code": code, "code_verifier": verifier})).json()
        refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
        second = await http.post(sandbox.issuer + "/token", auth=auth, data=refresh)
        assert second.status_code == 200
        replay = await http.post(sandbox.issuer + "/token", auth=auth, data=refresh)
        assert replay.json()["error"] == "invalid_grant"
        assert sandbox.token(second.json()["access_token"]) is None  # the family is dead
        anonymous = await http.post(sandbox.issuer + "/token", data=refresh)
        assert anonymous.status_code == 401 and "Basic" in anonymous.headers["www-authenticate"]
        bare = await http.get(sandbox.api_url + "/me")
        assert bare.status_code == 401


async def test_sandbox_refuses_foreign_clients_and_non_loopback_redirects(
        sandbox: SandboxProvider) -> None:
    """An unknown client or a redirect off loopback gets an error page, never a redirect."""
    async with httpx2.AsyncClient(trust_env=False) as http:
        for client_id, redirect in (("someone-else", REDIRECT),
                                    (sandbox.client_id, "https://evil.example/cb")):
            page = await http.get(sandbox.authorization_url + "?" + urlencode({
                "response_type": "code", "client_id": client_id, "redirect_uri": redirect,
                "code_challenge": "c" * 43, "code_challenge_method": "S256"}))
            assert page.status_code == 400 and "location" not in page.headers
        no_pkce = await http.get(sandbox.authorization_url + "?" + urlencode({
            "response_type": "code", "client_id": sandbox.client_id, "redirect_uri": REDIRECT,
            "state": "s"}))
        assert parse_qs(urlsplit(no_pkce.headers["location"]).query)["error"] == [
            "invalid_request"]
