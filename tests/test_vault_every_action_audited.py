"""Every public AlterVault action writes an audit event, allowed and denied: walked, not listed.

The public methods are found by introspection, so a new public action with no case here (and
no stated exemption) fails ``test_every_public_vault_name_has_a_case``. Each case calls the
action once as allowed and once as denied, and the test fails if either call wrote no event
with that outcome.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from alter_mcp.config import load_settings
from alter_mcp.errors import AlterError
from alter_mcp.models import AuditEvent, Identity, Outcome, SystemPrincipal, UserPrincipal
from alter_mcp.store import AuditFilter
from alter_mcp.vault import AlterVault
from tests.peers.fixtures import CONF_APP, CONF_APP_SECRET
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer
from tests.peers.recorder import RequestRecorder

OAUTH = "oidc-test"
UNCONFIGURED = "oidc-other"
API = "rec"
ALICE = Identity(principal=UserPrincipal(issuer="https://idp.test", subject="alice"),
                 caller="tests")


@dataclass
class World:
    """An open vault as operator and as a plain user, with one of everything to act on."""

    admin: AlterVault
    user: AlterVault
    agent: BrowserlessAgent
    recorder: RequestRecorder
    grant_id: str
    spare_grant_id: str
    secret_id: str
    session_id: str
    key_id: str


Call = Callable[[World], Awaitable[Any]]

#: Public names that are not actions, and why no audit event is owed.
EXEMPT: dict[str, str] = {
    "settings": "property: the configuration the vault was built with",
    "catalog": "property: the provider catalogue (public data)",
    "store": "property: the store handle, for administration and tests",
    "envelope": "property: the cipher object; using it is what the actions audit",
    "audit_log": "property: the audit log itself",
    "active_key_id": "property: the id (not the key) of the active key",
    "caller": "attribute: the caller name given at construction",
    "caller_type": "attribute: the caller type given at construction",
    "with_identity": "returns a view acting as another identity; its actions are audited",
    "open": "lifecycle: opens the store and HTTP clients",
    "close": "lifecycle: closes them",
    "current_identity": "resolves who calls; every action records the identity it returns",
    "connect_app": "returns the connect pages; each page's step audits itself (oauth/flow.py)",
    "new_token": "returns random bytes; touches no data",
    "use_jwt_verifier": "wires a verifier object at setup; touches no data",
    "configured_providers": "lists provider ids with a client here: configuration, no data",
    "pending_rewrap": "counts blobs under old keys for progress; rotate_keys is audited",
    "verify_audit": "reads the audit chain and changes nothing; the result is the report",
    "authenticate": "signs the process in at the IdP in a browser; establishes the identity "
                    "the following actions record",
    "authenticate_api_key": "establishes the caller's identity before any action; auditing "
                            "refusals here would let unauthenticated callers write the log",
    "verify_user_token": "establishes the caller's identity before any action (same reason)",
    "grant_view": "formats a grant the caller already holds (hosts, base URL); reads nothing",
    "resolve_principal": "turns a principal given to an audited action (a managed-secret "
                         "grant) into its stored form; that action records the outcome",
}


async def _connect(w: World) -> Any:
    async def browse(url: str) -> None:
        await w.agent.follow_response(url)

    return await w.admin.connect([OAUTH], open_browser=browse, timeout=30)


#: name -> (allowed call, denied call).
CASES: dict[str, tuple[Call, Call]] = {
    "list_grants": (lambda w: w.admin.list_grants(),
                    lambda w: w.admin.list_grants(limit=0)),
    "get_grant": (lambda w: w.admin.get_grant(w.grant_id),
                  lambda w: w.user.get_grant(w.grant_id)),
    "revoke_grant": (lambda w: w.admin.revoke_grant(w.spare_grant_id),
                     lambda w: w.user.revoke_grant(w.grant_id)),
    "request": (lambda w: w.admin.request("GET", f"http://localhost:{w.recorder.port}/x",
                                          grant_id=w.grant_id),
                lambda w: w.user.request("GET", f"http://localhost:{w.recorder.port}/x",
                                         grant_id=w.grant_id)),
    "create_connect_session": (
        lambda w: w.admin.create_connect_session(allowed_providers=[OAUTH]),
        lambda w: w.admin.create_connect_session(allowed_providers=[UNCONFIGURED])),
    "connect_status": (lambda w: w.admin.connect_status(w.session_id),
                       lambda w: w.user.connect_status(w.session_id)),
    "connect": (_connect, lambda w: w.admin.connect([])),
    "configure_provider": (
        lambda w: w.admin.configure_provider(UNCONFIGURED, client_id="c1",
                                             client_secret="s" * 24),
        lambda w: w.user.configure_provider(UNCONFIGURED, client_id="c1")),
    "create_managed_secret": (
        lambda w: w.admin.create_managed_secret(API, {"api_key": "k" * 24}, label="x"),
        lambda w: w.user.create_managed_secret(API, {"api_key": "k" * 24}, label="x")),
    "list_managed_secrets": (lambda w: w.admin.list_managed_secrets(),
                             lambda w: w.user.list_managed_secrets()),
    "create_managed_secret_grant": (
        lambda w: w.admin.create_managed_secret_grant(w.secret_id, principal=SystemPrincipal()),
        lambda w: w.admin.create_managed_secret_grant("no-such", principal=SystemPrincipal())),
    "create_api_key": (lambda w: w.admin.create_api_key("bot"),
                       lambda w: w.user.create_api_key("bot")),
    "list_api_keys": (lambda w: w.admin.list_api_keys(), lambda w: w.user.list_api_keys()),
    "revoke_api_key": (lambda w: w.admin.revoke_api_key(w.key_id),
                       lambda w: w.admin.revoke_api_key("no-such")),
    "record_new_key": (lambda w: w.admin.record_new_key("k2", source="key_file"),
                       lambda w: w.user.record_new_key("k2", source="key_file")),
    "rotate_keys": (lambda w: w.admin.rotate_keys(), lambda w: w.user.rotate_keys()),
    "prune_audit": (lambda w: w.admin.prune_audit(timedelta(days=1)),
                    lambda w: w.user.prune_audit(timedelta(days=1))),
}


@pytest.fixture
async def world(tmp_path: Path, master_key: str, oidc_peer: OidcProviderPeer,
                browser_agent: BrowserlessAgent,
                recorder_factory: Callable[..., RequestRecorder]) -> AsyncIterator[World]:
    """Yield a vault knowing an OAuth provider (the peer), one without a client, and an API."""
    recorder = recorder_factory()
    oauth = {"authorization_url": oidc_peer.authorization_endpoint,
             "token_url": oidc_peer.token_endpoint, "userinfo_url": oidc_peer.userinfo_endpoint,
             "account_source": "userinfo", "account_field": "email",
             "default_scopes": ["openid", "offline_access", "email"]}
    oauth_entry = {"name": "OIDC", "auth_kind": "oauth2", "api_hosts": ["localhost"],
                   "injection": [{"kind": "bearer"}], "oauth": oauth}
    catalog = {OAUTH: oauth_entry, UNCONFIGURED: oauth_entry,
               API: {"name": "Recorder", "auth_kind": "api_key", "api_hosts": ["localhost"],
                     "api_ports": [recorder.port],
                     "injection": [{"kind": "bearer", "format": "{api_key}"}],
                     "secret_fields": [{"name": "api_key", "label": "Key"}]}}
    settings = load_settings(
        {"ALTER_MCP_DATA_DIR": str(tmp_path / "d"), "ALTER_MCP_MASTER_KEY": master_key,
         "ALTER_MCP_ALLOW_INSECURE_HTTP": "true"}, catalog=catalog, connect_port=0,
        providers={OAUTH: {"client_id": CONF_APP, "client_secret": CONF_APP_SECRET}})
    async with AlterVault(settings, caller="tests") as admin:
        secret = await admin.create_managed_secret(API, {"api_key": "a" * 24}, label="api")
        grant = await admin.create_managed_secret_grant(secret.secret_id,
                                                        principal=SystemPrincipal())
        spare = await admin.create_managed_secret_grant(secret.secret_id,
                                                        principal=SystemPrincipal())
        session = await admin.create_connect_session(allowed_providers=[OAUTH])
        key, _ = await admin.create_api_key("existing")
        yield World(admin=admin, user=admin.with_identity(ALICE), agent=browser_agent,
                    recorder=recorder, grant_id=grant.grant_id,
                    spare_grant_id=spare.grant_id, secret_id=secret.secret_id,
                    session_id=session.session_id, key_id=key.key_id)


async def _events(vault: AlterVault) -> list[AuditEvent]:
    return await vault.store.list_audit(AuditFilter(limit=100_000))


def test_every_public_vault_name_has_a_case() -> None:
    """Each public AlterVault name is either an audited case here or exempt with a reason."""
    public = {name for name in dir(AlterVault) if not name.startswith("_")}
    public |= {"caller", "caller_type"}  # instance attributes, set in __init__
    assert not set(CASES) & set(EXEMPT)
    assert public == set(CASES) | set(EXEMPT), (
        f"without a case: {sorted(public - set(CASES) - set(EXEMPT))}; "
        f"gone: {sorted((set(CASES) | set(EXEMPT)) - public)}")


@pytest.mark.peers
@pytest.mark.parametrize("name", sorted(CASES))
async def test_vault_action_audited_when_allowed_and_denied(name: str, world: World) -> None:
    """The action writes an allowed outcome event when it succeeds and a denied one when not."""
    allowed, denied = CASES[name]
    seen = len(await _events(world.admin))
    await allowed(world)
    after = (await _events(world.admin))[seen:]
    assert any(e.outcome is Outcome.ALLOWED and not e.detail.get("intent") for e in after), (
        f"{name} (allowed) wrote no allowed outcome event: {[e.action for e in after]}")
    seen += len(after)
    with pytest.raises(AlterError):
        await denied(world)
    after = (await _events(world.admin))[seen:]
    assert any(e.outcome is Outcome.DENIED for e in after), (
        f"{name} (denied) wrote no denied event: {[e.action for e in after]}")
