"""The Alter SDK's surface of ``AlterVault``: lazy open, close, ``api_key``, ``timeout``,
httpx-style results and the ``alter_mcp.exceptions`` module."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import alter_mcp.errors
import alter_mcp.exceptions
from alter_mcp.config import Settings, load_settings
from alter_mcp.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidInputError,
    ProviderAPIError,
    VaultClosedError,
)
from alter_mcp.models import AgentPrincipal
from alter_mcp.store import AuditFilter
from alter_mcp.testing import SandboxProvider
from alter_mcp.vault import AlterVault


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxProvider]:
    """Yield a running sandbox provider."""
    async with SandboxProvider() as provider:
        yield provider


@pytest.fixture
def sandbox_settings(sandbox: SandboxProvider, tmp_path: Path, master_key: str) -> Settings:
    """Return settings of a vault that knows the sandbox."""
    return load_settings({"ALTER_MCP_MASTER_KEY": master_key}, data_dir=tmp_path / "data",
                         connect_port=0, **sandbox.settings_overrides())


async def test_vault_opens_on_its_first_action(settings: Settings) -> None:
    """Without open() or `async with`, the first action opens the vault and is audited."""
    vault = AlterVault(settings, caller="lazy")
    page = await vault.list_grants()
    events = await vault.store.list_audit(AuditFilter(action="grant.list"))
    await vault.close()
    assert page.grants == () and [e.caller for e in events] == ["lazy"]


async def test_vault_first_actions_racing_open_it_once(settings: Settings) -> None:
    """Concurrent first actions share one open: every one succeeds and is audited."""
    vault = AlterVault(settings)
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(vault.list_grants)
    events = await vault.store.list_audit(AuditFilter(action="grant.list"))
    await vault.close()
    assert len(events) == 5


async def test_vault_closed_refuses_actions_and_closes_twice(settings: Settings) -> None:
    """close() is idempotent; an action afterwards raises VaultClosedError saying so."""
    vault = AlterVault(settings)
    await vault.list_grants()
    await vault.close()
    await vault.close()
    with pytest.raises(VaultClosedError, match="was closed") as caught:
        await vault.list_grants()
    assert "new AlterVault" in str(caught.value)
    never_opened = AlterVault(settings)
    await never_opened.close()
    with pytest.raises(VaultClosedError):
        await never_opened.request("GET", "https://api.github.com/user", grant_id="g")


#: Public coroutines that never touch the store, so need no open vault (and why).
_NO_STORE = {
    "open": "opens", "close": "closes", "authenticate": "a browser login, sealed to a file",
    "verify_user_token": "a JWT check against the IdP", "resolve_principal": "a JWT check",
}


def test_vault_every_public_action_opens_the_vault_first() -> None:
    """Each public coroutine of AlterVault opens the vault (directly or via the identity)."""
    missing = []
    for name, member in inspect.getmembers(AlterVault, inspect.iscoroutinefunction):
        if name.startswith("_") or name in _NO_STORE:
            continue
        source = inspect.getsource(member)
        if not any(m in source for m in ("self.current_identity()", "self._ensure_open()",
                                         "self._agent_identity(", "self._action(",
                                         "self._identify(")):
            missing.append(name)
    assert missing == []


async def test_vault_async_with_still_opens_and_closes(settings: Settings) -> None:
    """`async with` opens on entry and closes on exit, after which actions are refused."""
    async with AlterVault(settings) as vault:
        assert (await vault.list_grants()).grants == ()
    with pytest.raises(VaultClosedError):
        await vault.list_grants()


@pytest.mark.parametrize("timeout", [0, -1, 601, "30", True])
def test_vault_timeout_out_of_range_is_refused(settings: Settings, timeout: object) -> None:
    """A timeout that is not a number of seconds in (0, 600] names the field."""
    with pytest.raises(InvalidInputError) as caught:
        AlterVault(settings, timeout=timeout)  # type: ignore[arg-type]
    assert caught.value.field == "timeout"


@pytest.mark.parametrize("key", ["alter_key_0123456789", "sk-live-abc", ""])
def test_vault_app_api_key_is_refused_with_the_reason(settings: Settings, key: str) -> None:
    """A hosted app key means nothing here: the error says no app key is needed."""
    with pytest.raises(InvalidInputError) as caught:
        AlterVault(settings, api_key=key)
    assert caught.value.field == "api_key"
    assert "needs no app key" in str(caught.value) and (not key or key not in str(caught.value))


async def test_vault_agent_api_key_acts_as_the_agent(settings: Settings) -> None:
    """api_key=amk_… acts as that agent on each action; once revoked, the next action fails."""
    async with AlterVault(settings) as admin:
        record, key = await admin.create_api_key("billing-agent")
    agent = AlterVault(settings, api_key=key.reveal())
    ident = await agent.current_identity()
    assert ident.principal == AgentPrincipal(key_id=record.key_id, name="billing-agent",
                                             label="billing-agent")
    assert (await agent.list_grants()).grants == ()
    async with AlterVault(settings) as admin:
        await admin.revoke_api_key(record.key_id)
    with pytest.raises(AuthenticationError, match="unknown or revoked"):
        await agent.list_grants()
    events = await agent.store.list_audit(AuditFilter(action="grant.list"))
    # The revoked key's attempt is audited too: denied, with no identity to name.
    assert [(e.caller, e.principal, e.outcome.value) for e in events] == [
        ("billing-agent", f"agent:{record.key_id}", "allowed"), (None, None, "denied")]
    assert key.reveal() not in repr(agent)
    assert key.reveal() not in str(await agent.store.list_audit(AuditFilter(limit=1000)))
    await agent.close()


def test_vault_agent_key_with_user_token_getter_is_refused(settings: Settings) -> None:
    """An agent key and a user JWT together are refused, as the SDK rejects them."""
    with pytest.raises(InvalidInputError, match="cannot be combined"):
        AlterVault(settings, api_key="amk_" + "a" * 43, user_token_getter=lambda: "jwt")


def test_vault_user_token_getter_without_an_idp_is_refused(settings: Settings) -> None:
    """A getter with no identity provider configured fails at construction, naming the setting."""
    with pytest.raises(ConfigurationError) as caught:
        AlterVault(settings, user_token_getter=lambda: "jwt")
    assert caught.value.setting == "ALTER_MCP_IDP_ISSUER"


async def test_vault_reopens_after_close_when_asked(settings: Settings) -> None:
    """An explicit open() after close() opens the vault again, as the closed error suggests."""
    vault = AlterVault(settings)
    await vault.list_grants()
    await vault.close()
    await vault.open()
    assert (await vault.list_grants()).grants == ()
    await vault.close()


def test_exceptions_module_is_the_errors_tree() -> None:
    """alter_mcp.exceptions exports exactly alter_mcp.errors' classes, the same objects."""
    assert alter_mcp.exceptions.__all__ == alter_mcp.errors.__all__
    assert alter_mcp.exceptions.__all__ == sorted(alter_mcp.exceptions.__all__)
    for name in alter_mcp.errors.__all__:
        assert getattr(alter_mcp.exceptions, name) is getattr(alter_mcp.errors, name)
        assert issubclass(getattr(alter_mcp.exceptions, name), alter_mcp.errors.AlterError)


async def test_request_result_reads_like_an_httpx_response(sandbox_settings: Settings,
                                                           sandbox: SandboxProvider) -> None:
    """status_code, json(), text, headers, is_success and raise_for_status() behave as httpx."""
    vault = AlterVault(sandbox_settings)
    [connected] = await vault.connect([sandbox.provider_id], open_browser=sandbox.approve)
    ok = await vault.request("GET", sandbox.api_url + "/items", grant_id=connected.grant_id)
    assert ok.status_code == ok.status == 200 and ok.is_success
    assert ok.raise_for_status() is ok
    assert ok.json() == {"items": ok.json()["items"]} and '"Water the plants"' in ok.text
    assert ok.headers["Content-Type"] == ok.headers["content-type"] == "application/json"
    missing = await vault.request("GET", sandbox.api_url + "/nothing-here",
                                  grant_id=connected.grant_id)
    await vault.close()
    assert missing.status_code == 404 and not missing.is_success
    with pytest.raises(ProviderAPIError) as caught:
        missing.raise_for_status()
    assert caught.value.status == 404 and caught.value.provider_id == sandbox.provider_id
    assert "/nothing-here" in str(caught.value)
    for token in sandbox.auth.tokens:
        assert token not in str(caught.value) and token not in ok.text
