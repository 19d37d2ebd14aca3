"""Per-grant API hosts: a grant reaches its own tenant's host and never another tenant's.

Each case takes the shipped catalogue entry's connection-value declaration (its name, its
source, the field the real provider returns it in) and swaps only the host suffix and pattern
for loopback: the tenant template ``127.0.0.{value}`` makes tenant "1" the stand-in on
127.0.0.1 and tenant "2" a second listener on 127.0.0.2 that must never hear from the grant.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from alter_mcp.config import load_settings
from alter_mcp.errors import BlockedDestinationError, InvalidInputError
from alter_mcp.models import Outcome, SystemPrincipal
from alter_mcp.providers import load_catalog
from alter_mcp.store import AuditFilter, Store
from alter_mcp.testing import SandboxProvider
from alter_mcp.vault import AlterVault
from tests.peers.recorder import RecordedRequest, RequestRecorder

SHIPPED = load_catalog()
LABEL = "[0-9]{1,3}"
HOST = r"127\.0\.0\.[0-9]{1,3}"


def loopback_value(provider_id: str, **changes: Any) -> dict[str, Any]:
    """Return the shipped connection value of a provider with ``changes`` applied."""
    [value] = SHIPPED.get(provider_id).connection
    return value.model_dump(mode="json", exclude_none=True) | changes


def spy_credential_reads(monkeypatch: pytest.MonkeyPatch, store: Store) -> list[str]:
    """Record every read of a sealed credential from ``store`` (the real reads still run)."""
    reads: list[str] = []
    for name in ("get_credential", "get_secret_blob"):
        real: Callable[..., Awaitable[Any]] = getattr(store, name)

        async def read(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            reads.append(_name)
            return await _real(*args, **kwargs)

        monkeypatch.setattr(store, name, read)
    return reads


def carries(request: RecordedRequest, secret: str) -> bool:
    """Return True when ``secret`` was sent, raw or inside a Basic Authorization header."""
    if request.contains(secret):
        return True
    header = request.header("authorization") or ""
    return header.startswith("Basic ") and secret in base64.b64decode(header[6:]).decode()


@pytest.fixture
def tenants(recorder_factory: Callable[..., RequestRecorder]
            ) -> tuple[RequestRecorder, RequestRecorder]:
    """Return tenant 1's API stand-in (127.0.0.1) and tenant 2's (127.0.0.2, same port)."""
    own = recorder_factory("127.0.0.1")
    return own, recorder_factory("127.0.0.2", port=own.port)


USER_TENANTS = [
    ("shopify-admin", {"access_token": "shpat_tenant_one_0123456789"},
     "shpat_tenant_one_0123456789"),
    ("zendesk", {"email": "agent@one.test", "api_token": "zd-token-one-0123456789"},
     "zd-token-one-0123456789"),
    ("freshdesk", {"api_key": "fd-key-one-0123456789"}, "fd-key-one-0123456789"),
    ("jira-api-token", {"email": "me@one.test", "api_token": "atl-token-one-0123456789"},
     "atl-token-one-0123456789"),
    ("mailchimp-api-key", {"api_key": "mc-key-one-0123456789-us1"}, "mc-key-one-0123456789-us1"),
]


@pytest.fixture
async def user_vault(tmp_path: Path, master_key: str,
                     tenants: tuple[RequestRecorder, RequestRecorder]
                     ) -> AsyncIterator[AlterVault]:
    """Yield a vault whose user-valued tenant providers live on 127.0.0.{value}."""
    port = tenants[0].port
    catalog = {}
    for provider_id, _, _ in USER_TENANTS:
        value = loopback_value(provider_id, pattern=LABEL)
        catalog[provider_id] = {
            "api_hosts": [f"127.0.0.{{{value['name']}}}"], "api_ports": [port],
            "connection": [value],
            "api_base_url": f"http://127.0.0.{{{value['name']}}}:{port}/api"}
    settings = load_settings({"ALTER_MCP_MASTER_KEY": master_key}, data_dir=tmp_path,
                             allow_insecure_http=True, catalog=catalog)
    async with AlterVault(settings, caller="tenant-tests") as vault:
        yield vault


@pytest.mark.parametrize(("provider_id", "fields", "secret"), USER_TENANTS)
async def test_tenants_user_valued_grant_reaches_only_its_own_host(
    user_vault: AlterVault, tenants: tuple[RequestRecorder, RequestRecorder], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, provider_id: str, fields: dict[str, str], secret: str,
) -> None:
    """A secret stored for tenant 1 calls tenant 1's host; tenant 2's is refused unread.

    The refusal is audited, and the secret is in no audit row and no file of the vault.
    """
    own, other = tenants
    name = SHIPPED.get(provider_id).connection[0].name
    stored = await user_vault.create_managed_secret(provider_id, {**fields, name: "1"},
                                                   label="one")
    grant = await user_vault.create_managed_secret_grant(
        stored.secret_id, principal=SystemPrincipal(), label="one")
    assert grant.connection == {name: "1"} and name not in stored.field_names
    view = user_vault.grant_view(grant)
    assert view["api_hosts"] == ["127.0.0.1"]
    assert view["api_base_url"] == f"http://127.0.0.1:{own.port}/api"

    answer = await user_vault.request("GET", f"http://127.0.0.1:{own.port}/x",
                                      grant_id=grant.grant_id)
    assert answer.status == 200 and carries(own.requests[-1], secret)

    reads = spy_credential_reads(monkeypatch, user_vault.store)
    with pytest.raises(BlockedDestinationError) as refused:
        await user_vault.request("GET", f"http://127.0.0.2:{own.port}/x",
                                 grant_id=grant.grant_id)
    assert "127.0.0.2" in refused.value.message and secret not in str(refused.value)
    assert reads == [] and other.requests == []
    events = await user_vault.store.list_audit(AuditFilter(limit=1000))
    assert (events[-1].action, events[-1].outcome) == ("request", Outcome.DENIED.value)
    assert not any(secret in event.model_dump_json() for event in events)
    assert not any(secret.encode() in path.read_bytes()
                   for path in tmp_path.rglob("*") if path.is_file())


@pytest.mark.parametrize("provider_id", [pid for pid, _, _ in USER_TENANTS])
async def test_tenants_user_value_is_checked_against_the_shipped_pattern(
    tmp_path: Path, master_key: str, provider_id: str,
) -> None:
    """A value that would leave the provider's domain, or none at all, stores nothing."""
    settings = load_settings({"ALTER_MCP_MASTER_KEY": master_key}, data_dir=tmp_path)
    [value] = SHIPPED.get(provider_id).connection
    fields = {f.name: "x-1234567890" for f in SHIPPED.get(provider_id).secret_fields}
    async with AlterVault(settings, caller="tenant-tests") as vault:
        for bad in ("evil.example.com", "a/b", "ONE two", ""):
            with pytest.raises(InvalidInputError) as caught:
                await vault.create_managed_secret(provider_id, {**fields, value.name: bad},
                                                  label="bad")
            assert caught.value.field in (f"connection.{value.name}", f"fields.{value.name}")
        assert await vault.list_managed_secrets() == []


#: (provider id, changes to its shipped connection value, the value tenant 1 gets).
OAUTH_TENANTS: list[tuple[str, dict[str, Any], str]] = [
    # Salesforce and Pipedrive name the tenant in the token response.
    ("salesforce", {"pattern": HOST}, "127.0.0.1"),
    ("pipedrive", {"pattern": HOST}, "127.0.0.1"),
    # Mailchimp's data centre comes from its metadata endpoint (Authorization: OAuth).
    ("mailchimp", {"pattern": LABEL}, "1"),
    # DocuSign's base_uri comes from userinfo accounts[0].
    ("docusign", {"pattern": HOST}, "127.0.0.1"),
    # Atlassian's cloud id (from accessible-resources) is in the base URL's path.
    ("atlassian", {}, "0e1d2c3b-4a59-4687-9a0b-1c2d3e4f5a6b"),
]


def _sandbox_for(provider_id: str) -> tuple[SandboxProvider, Callable[[SandboxProvider], None]]:
    """Return a sandbox serving tenant 1's value where the real provider does, and its filler.

    The values that are URLs name the sandbox itself, so they are filled once it listens.
    """
    value = SHIPPED.get(provider_id).connection[0]
    listing: list[Any] = []
    document: dict[str, Any] = {}
    body: Any = listing if provider_id == "atlassian" else document
    documents = {urlsplit(value.url).path: (value.auth_scheme, body)} if value.url else {}

    def fill(sandbox: SandboxProvider) -> None:
        base = f"http://127.0.0.1:{sandbox.port}"
        match provider_id:
            case "salesforce":
                sandbox.auth.token_fields["instance_url"] = base
            case "pipedrive":
                sandbox.auth.token_fields["api_domain"] = base
            case "mailchimp":
                document.update(dc="1", login={"login_email": sandbox.account})
            case "docusign":
                document.update(sub="u1", accounts=[{"account_id": "a1", "base_uri": base}])
            case "atlassian":
                listing.append({"id": OAUTH_TENANTS[-1][2], "url": "https://one.atlassian.net"})

    return SandboxProvider(provider_id=provider_id, documents=documents), fill


@pytest.mark.parametrize(("provider_id", "changes", "expected"), OAUTH_TENANTS)
async def test_tenants_oauth_value_from_provider_pins_the_grant_to_its_host(
    tmp_path: Path, master_key: str, monkeypatch: pytest.MonkeyPatch,
    recorder_factory: Callable[..., RequestRecorder],
    provider_id: str, changes: dict[str, Any], expected: str,
) -> None:
    """The value the provider returns at connect is stored; only its host gets the token."""
    sandbox, fill = _sandbox_for(provider_id)
    async with sandbox:
        fill(sandbox)
        value = loopback_value(provider_id, **changes)
        if "url" in value:
            value["url"] = f"http://127.0.0.1:{sandbox.port}{urlsplit(value['url']).path}"
        name = value["name"]
        template = "127.0.0.1" if provider_id == "atlassian" else (
            f"127.0.0.{{{name}}}" if changes.get("pattern") == LABEL else f"{{{name}}}")
        entry = sandbox.catalog_entry() | {
            "api_hosts": [template], "connection": [value],
            "api_base_url": f"http://{template}:{sandbox.port}/api/{{{name}}}"}
        settings = load_settings({"ALTER_MCP_MASTER_KEY": master_key}, data_dir=tmp_path,
                                 connect_port=0, allow_insecure_http=True,
                                 catalog={provider_id: entry},
                                 providers={provider_id: sandbox.client_config()})
        other = recorder_factory("127.0.0.2", port=sandbox.port)
        async with AlterVault(settings, caller="tenant-tests") as vault:
            [result] = await vault.connect([provider_id], open_browser=sandbox.approve,
                                           timeout=30)
            grant = await vault.get_grant(result.grant_id)
            assert grant.connection == {name: expected}
            assert vault.grant_view(grant)["api_base_url"].endswith(f"/api/{expected}")
            answer = await vault.request("GET", f"http://127.0.0.1:{sandbox.port}/api/me",
                                         grant_id=grant.grant_id)
            assert answer.status == 200 and answer.json()["account"] == sandbox.account

            reads = spy_credential_reads(monkeypatch, vault.store)
            with pytest.raises(BlockedDestinationError):
                await vault.request("GET", f"http://127.0.0.2:{sandbox.port}/api/me",
                                    grant_id=grant.grant_id)
            assert reads == [] and other.requests == []


async def test_tenants_reconnect_never_moves_a_grant_to_another_tenant(
    tmp_path: Path, master_key: str,
) -> None:
    """Repairing a grant from another instance is refused; a plain connect makes a new grant."""
    sandbox, fill = _sandbox_for("salesforce")
    async with sandbox:
        fill(sandbox)
        value = loopback_value("salesforce", pattern=HOST)
        entry = sandbox.catalog_entry() | {"api_hosts": ["{instance}"], "connection": [value],
                                           "api_base_url": None}
        settings = load_settings({"ALTER_MCP_MASTER_KEY": master_key}, data_dir=tmp_path,
                                 connect_port=0, allow_insecure_http=True,
                                 catalog={"salesforce": entry},
                                 providers={"salesforce": sandbox.client_config()})
        async with AlterVault(settings, caller="tenant-tests") as vault:
            [first] = await vault.connect(["salesforce"], open_browser=sandbox.approve)
            sandbox.auth.token_fields["instance_url"] = f"http://127.0.0.2:{sandbox.port}"
            link = await vault.create_connect_session(repair_grant_id=first.grant_id)
            await sandbox.approve(link.connect_url)
            session = await vault.connect_status(link.session_id)
            assert session.status.value == "failed" and not session.grant_ids
            kept = await vault.get_grant(first.grant_id)
            assert kept.connection == {"instance": "127.0.0.1"}

            [second] = await vault.connect(["salesforce"], open_browser=sandbox.approve)
            assert second.grant_id != first.grant_id
            assert (await vault.get_grant(second.grant_id)).connection == {
                "instance": "127.0.0.2"}
            assert (await vault.get_grant(first.grant_id)).connection == {
                "instance": "127.0.0.1"}
