"""Identity without HTTP (stdio and in-memory) and the vault's agent-key operations."""

from __future__ import annotations

import pytest

from alter_mcp.errors import AuthenticationError, InvalidInputError, PolicyViolationError
from alter_mcp.models import AgentPrincipal, Identity, SystemPrincipal
from alter_mcp.vault import AlterVault
from tests.peers.mockidp import MockIdpPeer
from tests.server.conftest import (
    VaultFactory,
    audit_text,
    era_client,
    secret_grant,
    server_for,
    user,
)

AUD = "http://127.0.0.1:9/mcp"


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_stdio_user_token_is_the_identity(make_vault: VaultFactory, mockidp: MockIdpPeer,
                                                era: str) -> None:
    """A configured user JWT makes every in-process call act as that user, verified."""
    token = mockidp.token(sub="alice", aud=AUD)
    vault = await make_vault(idp_issuer=mockidp.issuer, idp_audience=AUD, user_token=token)
    mine = await secret_grant(vault, user(mockidp.issuer, "alice"), value="sk-ant-a-0123456789",
                              label="alice")
    await secret_grant(vault, SystemPrincipal(), value="sk-ant-s-0123456789", label="system")
    async with era_client(server_for(vault), era) as client:
        page = (await client.call_tool("list_grants", {})).structured_content
    assert [g["grant_id"] for g in page["grants"]] == [mine]
    assert token not in await audit_text(vault)


async def test_stdio_bad_user_token_fails_each_call(make_vault: VaultFactory,
                                                    mockidp: MockIdpPeer) -> None:
    """An expired configured token is an authentication error, never a fallback to system."""
    import time

    token = mockidp.token(sub="alice", aud=AUD, exp=int(time.time()) - 3600,
                          iat=int(time.time()) - 7200)
    vault = await make_vault(idp_issuer=mockidp.issuer, idp_audience=AUD, user_token=token)
    await secret_grant(vault, SystemPrincipal(), value="sk-ant-s-0123456789", label="system")
    async with era_client(server_for(vault), "legacy") as client:
        result = await client.call_tool("list_grants", {}, raise_on_error=False)
    assert result.is_error and "authentication_failed" in result.content[0].text
    assert "expired" in result.content[0].text and token not in result.content[0].text


async def test_api_key_is_shown_once_and_stored_hashed(svault: AlterVault) -> None:
    """Creating a key returns it once; the store and audit hold only its hash and prefix."""
    record, key = await svault.create_api_key("billing-agent")
    assert key.reveal().startswith("amk_") and record.prefix == key.reveal()[:10]
    assert key.reveal() not in repr(key) and key.reveal() not in repr(record)
    listed = await svault.list_api_keys()
    assert [r.key_id for r in listed] == [record.key_id]
    assert key.reveal() not in str(listed) and key.reveal() not in await audit_text(svault)
    identity = await svault.authenticate_api_key(key.reveal())
    assert identity.principal == AgentPrincipal(key_id=record.key_id, name="billing-agent",
                                                label="billing-agent")
    assert identity.caller == "billing-agent"


async def test_api_key_revoked_no_longer_authenticates(svault: AlterVault) -> None:
    """A revoked key fails at once; revoking it twice says it is not active."""
    record, key = await svault.create_api_key("temp")
    await svault.revoke_api_key(record.key_id)
    with pytest.raises(AuthenticationError):
        await svault.authenticate_api_key(key.reveal())
    with pytest.raises(InvalidInputError):
        await svault.revoke_api_key(record.key_id)


@pytest.mark.parametrize("bad", ["", "amk_short", "not-a-key", "amk_" + "!" * 43, 42])
async def test_api_key_malformed_is_refused(svault: AlterVault, bad: object) -> None:
    """Anything not shaped like a key is refused before the store is asked."""
    with pytest.raises(AuthenticationError):
        await svault.authenticate_api_key(bad)  # type: ignore[arg-type]


async def test_api_key_admin_only(svault: AlterVault) -> None:
    """Only the system principal may create, list or revoke agent keys."""
    agent = svault.with_identity(Identity(principal=AgentPrincipal(key_id="k1")))
    with pytest.raises(PolicyViolationError):
        await agent.create_api_key("sneaky")
    with pytest.raises(PolicyViolationError):
        await agent.list_api_keys()


@pytest.mark.parametrize("name", ["", " ", "a" * 65, "bad\nname", "-lead"])
async def test_api_key_name_is_validated(svault: AlterVault, name: str) -> None:
    """A key name must be a short single line; the error names the field."""
    with pytest.raises(InvalidInputError) as info:
        await svault.create_api_key(name)
    assert info.value.field == "name"
