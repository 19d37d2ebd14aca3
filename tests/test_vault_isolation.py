"""Invariant 2: a caller sees and uses only grants its principal may use."""

from __future__ import annotations

import pytest

from alter_mcp.errors import GrantNotFoundError
from alter_mcp.models import (
    Grant,
    GroupPrincipal,
    Identity,
    SystemPrincipal,
    UserPrincipal,
)
from alter_mcp.vault import AlterVault

ISSUER = "https://idp.test"
OWNER = Identity(principal=UserPrincipal(issuer=ISSUER, subject="alice"))
OTHER_USER = Identity(principal=UserPrincipal(issuer=ISSUER, subject="bob"))
MEMBER = Identity(principal=UserPrincipal(issuer=ISSUER, subject="carol"),
                  groups=frozenset({"eng"}))
NON_MEMBER = Identity(principal=UserPrincipal(issuer=ISSUER, subject="dave"),
                      groups=frozenset({"sales"}))
OTHER_ISSUER_MEMBER = Identity(principal=UserPrincipal(issuer="https://evil.test", subject="x"),
                               groups=frozenset({"eng"}))
SYSTEM = Identity(principal=SystemPrincipal())

CALLERS = {
    "owner": OWNER, "other_user": OTHER_USER, "member": MEMBER, "non_member": NON_MEMBER,
    "other_issuer_member": OTHER_ISSUER_MEMBER, "system": SYSTEM,
}
#: Which callers may use each kind of grant.
ALLOWED = {
    "user_grant": {"owner"},
    "group_grant": {"member"},
    "system_grant": {"system"},
}


async def _grants(vault: AlterVault) -> dict[str, Grant]:
    secret = await vault.create_managed_secret("openai", {"api_key": "sk-iso-9999"}, label="s")
    owners = {
        "user_grant": UserPrincipal(issuer=ISSUER, subject="alice", label="alice"),
        "group_grant": GroupPrincipal(issuer=ISSUER, group="eng", label="eng"),
        "system_grant": SystemPrincipal(),
    }
    return {
        name: await vault.create_managed_secret_grant(secret.secret_id, principal=owner)
        for name, owner in owners.items()
    }


@pytest.mark.parametrize("caller", sorted(CALLERS))
async def test_isolation_every_grant_operation(vault: AlterVault, caller: str) -> None:
    """list, get and revoke see exactly the grants this caller's principal may use."""
    grants = await _grants(vault)
    view = vault.with_identity(CALLERS[caller])
    visible = {g.grant_id for g in (await view.list_grants()).grants}
    expected = {grants[n].grant_id for n, who in ALLOWED.items() if caller in who}
    assert visible == expected
    for name, grant in grants.items():
        if caller in ALLOWED[name]:
            assert (await view.get_grant(grant.grant_id)).grant_id == grant.grant_id
        else:
            with pytest.raises(GrantNotFoundError) as got:
                await view.get_grant(grant.grant_id)
            missing = await _not_found_message(view)
            assert got.value.message.replace(grant.grant_id, "ID") == missing
            with pytest.raises(GrantNotFoundError):
                await view.revoke_grant(grant.grant_id)
    for name, grant in grants.items():
        if caller in ALLOWED[name]:
            await view.revoke_grant(grant.grant_id)
    untouched = {n for n, who in ALLOWED.items() if caller not in who}
    for name in untouched:
        assert (await vault.store.get_grant(grants[name].grant_id)).status.value == "active"  # type: ignore[union-attr]


async def _not_found_message(view: AlterVault) -> str:
    """Return the message for a grant id that does not exist at all, with the id masked."""
    with pytest.raises(GrantNotFoundError) as got:
        await view.get_grant("00000000-0000-0000-0000-000000000000")
    return got.value.message.replace("00000000-0000-0000-0000-000000000000", "ID")
