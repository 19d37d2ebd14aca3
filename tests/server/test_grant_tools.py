"""``list_grants`` and ``revoke_grant`` through a real in-memory MCP client, in both eras."""

from __future__ import annotations

import json

import pytest
from mcp_types import ElicitRequestFormParams

from alter_mcp.models import GrantStatus, SystemPrincipal
from alter_mcp.store import AuditFilter
from alter_mcp.vault import AlterVault
from tests.server.conftest import ERAS, answering, audit_text, era_client, secret_grant, server_for

SECRET = "sk-ant-test-0123456789abcdefSECRET"


@pytest.mark.parametrize("era", ERAS)
async def test_tools_listed_with_truthful_annotations(svault: AlterVault, era: str) -> None:
    """Every tool is listed with read-only, destructive, idempotent and open-world hints."""
    async with era_client(server_for(svault), era) as client:
        assert client.protocol_version == ("2025-11-25" if era == "legacy" else "2026-07-28")
        tools = {t.name: t for t in await client.list_tools()}
    assert set(tools) == {"connect", "connect_status", "list_grants", "revoke_grant",
                          "authenticated_request"}
    hints = {name: (t.annotations.read_only_hint, t.annotations.destructive_hint,
                    t.annotations.idempotent_hint, t.annotations.open_world_hint)
             for name, t in tools.items() if t.annotations}
    assert hints["list_grants"] == (True, False, True, False)
    assert hints["connect_status"] == (True, False, True, False)
    assert hints["revoke_grant"] == (False, True, True, True)
    assert hints["authenticated_request"] == (False, True, False, True)
    assert hints["connect"] == (False, False, False, True)
    assert all("return" in (t.description or "").lower() for t in tools.values())


@pytest.mark.parametrize("era", ERAS)
async def test_list_grants_returns_metadata_never_the_secret(svault: AlterVault, era: str
                                                              ) -> None:
    """The caller's grants come back as metadata; the secret value appears nowhere."""
    grant_id = await secret_grant(svault, SystemPrincipal(), value=SECRET, label="ops")
    async with era_client(server_for(svault), era) as client:
        result = await client.call_tool("list_grants", {"provider": "anthropic"})
    grants = result.structured_content["grants"]
    assert [g["grant_id"] for g in grants] == [grant_id]
    assert grants[0]["status"] == "active" and grants[0]["principal_type"] == "system"
    assert SECRET not in str(result) and SECRET not in await audit_text(svault)


@pytest.mark.parametrize("era", ERAS)
async def test_list_grants_pages_with_cursor(svault: AlterVault, era: str) -> None:
    """A limit and the returned cursor walk every grant exactly once."""
    ids = {await secret_grant(svault, SystemPrincipal(), value=f"{SECRET}{i}", label=f"g{i}")
           for i in range(3)}
    seen: list[str] = []
    async with era_client(server_for(svault), era) as client:
        cursor = None
        for _ in range(4):
            page = (await client.call_tool("list_grants", {"limit": 2, "cursor": cursor})
                    ).structured_content
            seen += [g["grant_id"] for g in page["grants"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert sorted(seen) == sorted(ids)


@pytest.mark.parametrize("era", ERAS)
async def test_list_grants_unknown_provider_names_the_catalog(svault: AlterVault, era: str
                                                              ) -> None:
    """An unknown provider id is a tool error that points at providers://catalog."""
    async with era_client(server_for(svault), era) as client:
        result = await client.call_tool("list_grants", {"provider": "nope"},
                                        raise_on_error=False)
    assert result.is_error
    text = result.content[0].text
    assert "provider_not_found" in text and "providers://catalog" in text
    assert "Traceback" not in text


@pytest.mark.parametrize("era", ERAS)
async def test_revoke_grant_confirmed_by_user_revokes(svault: AlterVault, era: str) -> None:
    """When the user confirms, the grant is revoked and the result says it was confirmed."""
    grant_id = await secret_grant(svault, SystemPrincipal(), value=SECRET, label="ops")
    human = answering("accept", confirm=True)
    async with era_client(server_for(svault), era, elicitation_handler=human) as client:
        result = await client.call_tool("revoke_grant", {"grant_id": grant_id,
                                                         "reason": "cleanup"})
    data = result.structured_content
    assert data["revoked"] is True and data["confirmed_by_user"] is True
    assert isinstance(human.seen[0], ElicitRequestFormParams)  # type: ignore[attr-defined]
    assert "anthropic" in human.seen[0].message  # type: ignore[attr-defined]
    grant = await svault.get_grant(grant_id)
    assert grant.status is GrantStatus.REVOKED


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(("action", "content"), [("decline", {}), ("cancel", {}),
                                                 ("accept", {"confirm": False})])
async def test_revoke_grant_not_confirmed_changes_nothing(
    svault: AlterVault, era: str, action: str, content: dict[str, bool]
) -> None:
    """Declining, cancelling or leaving the box unticked keeps the grant active."""
    grant_id = await secret_grant(svault, SystemPrincipal(), value=SECRET, label="ops")
    human = answering(action, **content)
    async with era_client(server_for(svault), era, elicitation_handler=human) as client:
        result = await client.call_tool("revoke_grant", {"grant_id": grant_id})
    assert result.structured_content["revoked"] is False
    assert (await svault.get_grant(grant_id)).status is GrantStatus.ACTIVE


@pytest.mark.parametrize("era", ERAS)
async def test_revoke_grant_without_elicitation_relies_on_host(svault: AlterVault, era: str
                                                               ) -> None:
    """A client that cannot ask the user gets the revocation done (the tool is destructive)."""
    grant_id = await secret_grant(svault, SystemPrincipal(), value=SECRET, label="ops")
    async with era_client(server_for(svault), era) as client:
        result = await client.call_tool("revoke_grant", {"grant_id": grant_id})
    assert result.structured_content["revoked"] is True
    assert result.structured_content["confirmed_by_user"] is False


@pytest.mark.parametrize("era", ERAS)
async def test_revoke_grant_unknown_id_is_not_found(svault: AlterVault, era: str) -> None:
    """Revoking an unknown grant is a grant_not_found error that suggests list_grants."""
    human = answering("accept", confirm=True)
    async with era_client(server_for(svault), era, elicitation_handler=human) as client:
        result = await client.call_tool("revoke_grant", {"grant_id": "no-such-grant"},
                                        raise_on_error=False)
    assert result.is_error and "grant_not_found" in result.content[0].text
    assert "list_grants" in result.content[0].text
    assert human.seen == []  # type: ignore[attr-defined]


async def test_audit_names_client_tool_and_request(svault: AlterVault) -> None:
    """Each tool call's audit event records the MCP client name, the tool and the request id."""
    from mcp_types import Implementation

    info = Implementation(name="claude-desktop-test", version="1.0")
    async with era_client(server_for(svault), "legacy", client_info=info) as client:
        await client.call_tool("list_grants", {})
    events = [e for e in await svault.audit_log.events(AuditFilter())
              if e.action == "grant.list"]
    assert events[-1].mcp_client == "claude-desktop-test"
    assert events[-1].caller == "claude-desktop-test"
    assert events[-1].tool == "list_grants" and events[-1].request_id


@pytest.mark.parametrize("era", ERAS)
async def test_list_grants_and_provider_resource_say_where_to_call(
    svault: AlterVault, era: str,
) -> None:
    """A Shopify grant lists its own shop's host and base URL; the resource names the value."""
    stored = await svault.create_managed_secret(
        "shopify-admin", {"access_token": "shpat_0123456789abcdef", "shop": "acme"},
        label="acme")
    await svault.create_managed_secret_grant(stored.secret_id, principal=SystemPrincipal(),
                                             label="acme")
    async with era_client(server_for(svault), era) as client:
        page = (await client.call_tool("list_grants", {"provider": "shopify-admin"})
                ).structured_content
        entry = json.loads((await client.read_resource("providers://shopify-admin"))[0].text)
    [grant] = page["grants"]
    assert grant["api_hosts"] == ["acme.myshopify.com"]
    assert grant["api_base_url"] == "https://acme.myshopify.com/admin/api"
    assert grant["connection"] == {"shop": "acme"}
    assert "shpat_0123456789abcdef" not in json.dumps(page)
    assert entry["api_hosts"] == ["{shop}.myshopify.com"]
    assert [v["name"] for v in entry["connection"]] == ["shop"]
