"""The seed SDK quickstart's snippets, as written in the seed apart from the hosted ``api_key``.

Each snippet's code is pasted from ``sdk-python-quickstart``; the only other change is the URL,
whose host is the sandbox playing Google on loopback (``seed.events_url``), since no test may
reach the internet. The package name is ``alter_mcp``, not ``alter_sdk``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import anyio
import pytest

from alter_mcp import AlterVault, CallerType, HttpMethod
from alter_mcp.errors import AuthenticationError, GrantNotFoundError
from alter_mcp.store import AuditFilter
from tests.seeds.conftest import Seed, audit_text, connect_as, files_containing

BASIC_SETUP = '''
import asyncio
from alter_mcp import AlterVault, HttpMethod

async def main():
    vault = AlterVault(
        caller="my-agent",
    )

    # Open browser → user authorizes → SDK returns connection
    results = await vault.connect(
        providers=["google"],
    )
    print(f"Connected: {results[0].grant_id}")

    # Make API calls with the grant
    response = await vault.request(
        HttpMethod.GET,
        "EVENTS_URL",
        grant_id=results[0].grant_id,
        query_params={"maxResults": "10"},
    )
    events = response.json()

    for event in events.get("items", []):
        print(f"Event: {event['summary']}")

    await vault.close()

asyncio.run(main())
'''

BROWSER = Path(__file__).with_name("browser.py")


async def test_seed_basic_setup_runs_as_a_script(seed: Seed, tmp_path: Path) -> None:
    """The quickstart program connects through the default browser, lists events, and exits 0."""
    script = tmp_path / "quickstart.py"
    script.write_text(BASIC_SETUP.replace("EVENTS_URL", seed.events_url))
    env = {**os.environ, "BROWSER": f"{sys.executable} {BROWSER} %s",
           "PYTHONPATH": str(Path(__file__).parents[2])}
    done = await anyio.run_process([sys.executable, str(script)], env=env, check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    lines = out.splitlines()
    assert lines[0].startswith("Connected: ") and len(lines[0]) == len("Connected: ") + 36
    assert lines[1:] == ["Event: Stand-up", "Event: Key rotation", "Event: Audit review"]
    assert seed.sandbox.stats["api_calls"] == 1


async def test_seed_configuration_names_the_caller_in_the_audit_log(seed: Seed) -> None:
    """caller, caller_type and timeout are accepted; each audit event names the caller."""
    vault = AlterVault(
        caller="my-agent",                    # Optional: Caller identity for audit logs
        caller_type=CallerType.AGENT,         # Optional: AGENT (default) or SERVICE
        timeout=30.0,                         # Optional: HTTP timeout in seconds
    )
    service = AlterVault(caller="nightly-sync", caller_type=CallerType.SERVICE, timeout=5)
    try:
        await vault.list_grants()
        await service.list_grants()
        assert vault.settings.request_timeout == 30.0
        assert service.settings.request_timeout == 5.0
        events = await vault.store.list_audit(AuditFilter(action="grant.list"))
        assert [(e.caller, e.caller_type) for e in events] == [
            ("my-agent", "agent"), ("nightly-sync", "service")]
    finally:
        await vault.close()
        await service.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_seed_identity_provider_mode_resolves_the_users_grant(
        seed: Seed, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    """With user_token_getter (sync or async), provider= finds the JWT user's grant only."""
    caplog.set_level(logging.DEBUG)
    alice_grant = await connect_as(seed, "alice")
    current = {"jwt": seed.jwt("alice")}
    if mode == "sync":
        def get_current_user_jwt() -> str:
            return current["jwt"]
        vault = AlterVault(
            caller="my-agent",
            # Called before every request — return a fresh JWT for the current user.
            # Sync or async callables are both supported.
            user_token_getter=lambda: get_current_user_jwt(),
        )
    else:
        async def get_current_user_jwt_async() -> str:
            await anyio.lowlevel.checkpoint()
            return current["jwt"]
        vault = AlterVault(caller="my-agent", user_token_getter=get_current_user_jwt_async)
    try:
        # `provider=` looks up the grant that belongs to the JWT's user — no grant_id needed.
        response = await vault.request(
            HttpMethod.GET,
            seed.events_url,
            provider="google",
        )
        assert response.status_code == 200 and response.grant_id == alice_grant
        assert [e["summary"] for e in response.json()["items"]][:1] == ["Stand-up"]
        # The getter is asked on every call: now it is Bob, who connected nothing.
        current["jwt"] = seed.jwt("bob")
        with pytest.raises(GrantNotFoundError):
            await vault.request(HttpMethod.GET, seed.events_url, provider="google")
        audit = await audit_text(vault)
        assert '"principal": "user:' in audit and '"caller": "my-agent"' in audit
    finally:
        await vault.close()
    for token in (current["jwt"], seed.jwt("alice")):
        assert token not in audit and files_containing(seed, token) == []
        assert token not in caplog.text and token not in repr(vault)


@pytest.mark.parametrize(("getter_result", "reason"), [
    (None, "no user token"), ("", "no user token"), ("not-a-jwt", "not a well-formed JWT"),
])
async def test_seed_identity_provider_mode_refuses_a_missing_or_bad_token(
        seed: Seed, getter_result: str | None, reason: str) -> None:
    """A getter returning nothing or an invalid token is an AuthenticationError, never system."""
    vault = AlterVault(caller="my-agent", user_token_getter=lambda: getter_result)
    try:
        with pytest.raises(AuthenticationError) as caught:
            await vault.list_grants()
    finally:
        await vault.close()
    text = str(caught.value)
    assert ("returned" in text and "not a JWT" in text) if reason == "no user token" \
        else reason in text


async def test_seed_identity_provider_mode_refuses_a_forged_token(seed: Seed) -> None:
    """A JWT with a flipped signature byte is refused, saying the signature is invalid."""
    forged = seed.idp.forge_bad_signature(seed.jwt("alice"))
    vault = AlterVault(user_token_getter=lambda: forged)
    try:
        with pytest.raises(AuthenticationError, match="signature is invalid"):
            await vault.request(HttpMethod.GET, seed.events_url, provider="google")
    finally:
        await vault.close()
