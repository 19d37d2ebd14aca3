"""Connect sessions and OAuth clients through the vault API: validation, ownership, storage."""

from __future__ import annotations

from typing import Any

import pytest

from alter_mcp.errors import (
    AlterError,
    ConnectFlowError,
    GrantNotFoundError,
    InvalidInputError,
    PolicyViolationError,
    ProviderNotConfiguredError,
    ProviderNotFoundError,
)
from alter_mcp.models import ConnectSessionStatus
from alter_mcp.oauth.clients import provider_secret_binding
from alter_mcp.oauth.sessions import hash_handle
from tests.oauth.conftest import (
    ALICE,
    BOB,
    PROVIDER,
    VaultFactory,
    audit_dump,
    connect_in_browser,
    oidc_entry,
)
from tests.peers.fixtures import CONF_POST, CONF_POST_SECRET
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer

pytestmark = pytest.mark.peers


@pytest.mark.parametrize(
    ("options", "error", "field"),
    [
        ({}, InvalidInputError, "allowed_providers"),
        ({"allowed_providers": []}, InvalidInputError, "allowed_providers"),
        ({"allowed_providers": "oidc-test"}, InvalidInputError, "allowed_providers"),
        ({"allowed_providers": ["nope-provider"]}, ProviderNotFoundError, None),
        ({"allowed_providers": ["openai"], "scopes": ["x"]}, InvalidInputError, "scopes"),
        ({"allowed_providers": ["github"]}, ProviderNotConfiguredError, None),
        ({"allowed_providers": [PROVIDER], "scopes": ["a b"]}, InvalidInputError, "scopes"),
        ({"allowed_providers": [PROVIDER], "scopes": "email"}, InvalidInputError, "scopes"),
        ({"allowed_providers": [PROVIDER], "account_hint": "a\nb"}, InvalidInputError,
         "account_hint"),
        ({"allowed_providers": [PROVIDER], "return_url": "http://evil.test/"},
         InvalidInputError, "return_url"),
        ({"repair_grant_id": "no-such-grant"}, GrantNotFoundError, None),
    ],
)
async def test_create_connect_session_rejects_bad_input_naming_field(
    make_vault: VaultFactory, options: dict[str, Any], error: type[AlterError],
    field: str | None,
) -> None:
    """Each invalid argument raises its typed error (naming the field) and a denied event."""
    vault = await make_vault(identity=ALICE)
    with pytest.raises(error) as caught:
        await vault.create_connect_session(**options)
    if field is not None:
        assert caught.value.details["field"] == field
    events = await audit_dump(vault)
    assert [(e["action"], e["outcome"]) for e in events] == [("connect.create", "denied")]
    assert await vault.store.get_session_by_token("x") is None


async def test_create_connect_session_stores_only_hashes_and_binds_owner(
    make_vault: VaultFactory,
) -> None:
    """The token is stored as its hash; only the creating principal can read the session."""
    vault = await make_vault(identity=ALICE)
    link = await vault.create_connect_session(allowed_providers=[PROVIDER])
    token = link.connect_url.rsplit("/", 1)[1]
    record = await vault.store.get_session_by_token(hash_handle(token))
    assert record is not None and record.session.owner == ALICE.principal
    assert token not in record.session.model_dump_json()
    expected_ttl = vault.settings.connect_session_ttl
    assert (link.expires_at - record.session.created_at).total_seconds() == expected_ttl
    status = await vault.connect_status(link.session_id)
    assert status.status is ConnectSessionStatus.PENDING and status.grant_ids == ()
    with pytest.raises(ConnectFlowError) as caught:
        await vault.with_identity(BOB).connect_status(link.session_id)
    assert caught.value.reason == "unknown_session"
    created = [e for e in await audit_dump(vault) if e["action"] == "connect.create"]
    assert created[0]["principal"] == ALICE.principal.key
    assert token not in str(created)


async def test_create_connect_session_repair_needs_a_grant_the_caller_may_use(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent,
) -> None:
    """Alice may repair her grant in place; Bob may not, and is told it does not exist."""
    vault = await make_vault(identity=ALICE)
    grant = await connect_in_browser(vault, browser_agent)
    with pytest.raises(GrantNotFoundError):
        await vault.with_identity(BOB).create_connect_session(repair_grant_id=grant.grant_id)
    with pytest.raises(InvalidInputError) as caught:
        await vault.create_connect_session(repair_grant_id=grant.grant_id,
                                           allowed_providers=["github"])
    assert caught.value.field == "allowed_providers"
    repaired = await connect_in_browser(vault, BrowserlessAgent(),
                                        repair_grant_id=grant.grant_id)
    assert repaired.grant_id == grant.grant_id


async def test_repair_with_another_account_is_refused_and_grant_kept(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, oidc_peer: OidcProviderPeer,
) -> None:
    """Signing in as another account during a repair is refused; the grant is unchanged."""
    vault = await make_vault(identity=ALICE)
    grant = await connect_in_browser(vault, browser_agent)
    link = await vault.create_connect_session(repair_grant_id=grant.grant_id,
                                              account_hint="mallory")
    page = await BrowserlessAgent().follow_response(link.connect_url)
    assert page.status_code == 409 and "different account" in page.text
    assert (await vault.get_grant(grant.grant_id)).account_identifier == "alice@example.test"
    session = await vault.connect_status(link.session_id)
    assert session.status is ConnectSessionStatus.FAILED
    assert (await oidc_peer.astats())["revocation"] == 2  # mallory's unused tokens


async def test_configure_provider_seals_secret_and_is_used_for_connect(
    make_vault: VaultFactory, browser_agent: BrowserlessAgent, oidc_peer: OidcProviderPeer,
) -> None:
    """An operator's stored OAuth client (secret sealed) serves a full connect."""
    vault = await make_vault(client={}, entry=oidc_entry(oidc_peer, auth="client_secret_post"))
    with pytest.raises(ProviderNotConfiguredError):
        await vault.create_connect_session(allowed_providers=[PROVIDER])
    info = await vault.configure_provider(PROVIDER, client_id=CONF_POST,
                                          client_secret=CONF_POST_SECRET)
    assert info.has_client_secret and info.source == "store"
    assert CONF_POST_SECRET not in repr(info) + info.model_dump_json()
    record = await vault.store.get_provider_config(PROVIDER)
    assert record is not None and record.secret_blob is not None
    assert CONF_POST_SECRET.encode() not in record.secret_blob
    assert vault.envelope.open_text(record.secret_blob, aad=provider_secret_binding(
        PROVIDER)) == CONF_POST_SECRET
    grant = await connect_in_browser(vault, browser_agent)
    assert grant.account_identifier == "alice@example.test"
    events = [e for e in await audit_dump(vault) if e["action"] == "provider.configure"]
    assert events[-1]["outcome"] == "allowed" and CONF_POST_SECRET not in str(events)


@pytest.mark.parametrize(
    ("identity", "options", "error"),
    [
        (ALICE, {"client_id": "x"}, PolicyViolationError),
        (None, {"client_id": ""}, InvalidInputError),
        (None, {"client_id": "x", "client_secret": "a\nb"}, InvalidInputError),
        (None, {"client_id": "x", "redirect_uri": "ftp://x"}, InvalidInputError),
        (None, {"client_id": "x", "scopes": ["a b"]}, InvalidInputError),
    ],
)
async def test_configure_provider_refuses_non_operators_and_bad_values(
    make_vault: VaultFactory, identity: Any, options: dict[str, Any], error: type[AlterError],
) -> None:
    """Only the system principal may configure clients, and only with valid values."""
    vault = await make_vault(identity=identity)
    with pytest.raises(error):
        await vault.configure_provider(PROVIDER, **options)
    assert await vault.store.get_provider_config(PROVIDER) is None
    events = await audit_dump(vault)
    assert [(e["action"], e["outcome"]) for e in events] == [("provider.configure", "denied")]


async def test_not_configured_error_names_redirect_uri_and_console(
    make_vault: VaultFactory,
) -> None:
    """Connecting an unconfigured provider says what to register, and where."""
    vault = await make_vault(connect_port=8799)
    with pytest.raises(ProviderNotConfiguredError) as caught:
        await vault.create_connect_session(allowed_providers=["github"])
    text = str(caught.value)
    assert "http://127.0.0.1:8799/oauth/callback" in text
    assert "https://github.com/settings/developers" in text
    assert "alter-mcp providers configure github" in text
    assert caught.value.to_dict()["redirect_uri"] == "http://127.0.0.1:8799/oauth/callback"
