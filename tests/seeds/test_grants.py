"""The seed quickstart's grant snippets: no IdP, error handling, revoking, managed secrets.

Pasted from ``sdk-python-quickstart`` apart from the hosted ``api_key``, the URL's host (the
sandbox plays Google on loopback) and, for managed secrets, the secret id (ours are generated).
"""

from __future__ import annotations

import functools
import json
import logging

import pytest

from alter_mcp import AlterVault, GroupPrincipal, HttpMethod, SystemPrincipal, UserPrincipal
from alter_mcp.exceptions import (
    AmbiguousGrantError,
    AuthenticationError,
    GrantNotFoundError,
    InvalidInputError,
    PolicyViolationError,
    ReAuthRequiredError,
    ScopeReauthRequiredError,
    TokenRefreshInProgressError,
)
from tests.seeds.conftest import (
    ENGINEERING,
    IDP_ID,
    Seed,
    audit_text,
    connect_as,
    files_containing,
)


async def test_seed_connecting_without_an_idp_makes_a_system_grant(
        seed: Seed, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no IdP and no getter, a connect session yields a system grant used by grant_id."""
    for name in ("ALTER_MCP_IDP_ISSUER", "ALTER_MCP_IDP_AUDIENCE", "ALTER_MCP_IDP_ID"):
        monkeypatch.delenv(name)
    vault = AlterVault()  # no user_token_getter

    # Start the OAuth flow. With no user_token, the resulting grant is system-principal.
    session = await vault.create_connect_session(allowed_providers=["google"])
    print("Open this URL to authorize:", session.connect_url)

    await seed.sandbox.approve(session.connect_url)  # the operator, in the browser

    # After the operator completes OAuth in the browser, look up the new grant.
    # Because no user_token_getter is configured, list_grants() returns app-scoped grants.
    result = await vault.list_grants(provider_id="google", limit=5)
    grant = result.grants[0]
    assert grant.principal_type == "system"

    response = await vault.request(
        HttpMethod.GET,
        seed.events_url,
        grant_id=grant.grant_id,
    )
    assert response.status_code == 200 and len(response.json()["items"]) == 3
    await vault.close()


async def error_handling(vault: AlterVault, events_url: str) -> None:
    """Run the seed's "Quick Error Handling" snippet as written (the URL on loopback)."""
    try:
        # Identity mode — the SDK resolves the grant from the configured
        # user_token_getter. AmbiguousGrantError can only be raised on this
        # path; direct (grant_id=...) mode addresses a single grant.
        response = await vault.request(
            HttpMethod.GET,
            events_url,
            provider="google",
        )
        print(f"OK {response.status_code}")
    except ScopeReauthRequiredError as e:
        print(f"Scopes changed — user must re-authorize (provider: {e.provider_id}, grant: "
              f"{e.grant_id})")
    except ReAuthRequiredError:
        print("User must re-authorize via Alter Connect")
    except PolicyViolationError as e:
        print(f"Access denied by policy: {e.message} (rule: {e.policy_error})")
    except TokenRefreshInProgressError as e:
        # Another request is mid-refresh — transient, retry after backoff
        print(f"Token refresh in progress for {e.grant_id} — retry after backoff")
    except AmbiguousGrantError as e:
        # JWT identity resolution matched multiple active grants — supply
        # `account` to disambiguate. The matching identifiers are exposed on
        # the exception so the caller can prompt or pick.
        print(f"Multiple grants for {e.provider_id}: {e.account_identifiers}")
    except GrantNotFoundError:
        print("User hasn't connected Google yet")


async def test_seed_error_handling_reports_each_case(seed: Seed,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Bob has no grant, Carol one, Alice two accounts: the snippet prints each outcome."""
    await connect_as(seed, "alice", account="alice@work.test")
    await connect_as(seed, "alice", account="alice@home.test")
    await connect_as(seed, "carol", account="carol@work.test")
    for sub in ("bob", "carol", "alice"):
        vault = AlterVault(caller="my-agent", user_token_getter=functools.partial(seed.jwt, sub))
        await error_handling(vault, seed.events_url)
        await vault.close()
    assert capsys.readouterr().out.splitlines() == [
        "User hasn't connected Google yet",
        "OK 200",
        "Multiple grants for google: ['alice@work.test', 'alice@home.test']",
    ]


async def test_seed_revoke_twice_raises_grant_not_found(seed: Seed,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Revoking revokes at the provider; a second revoke (or another user's) is not found."""
    grant_id = await connect_as(seed, "alice")
    bob = AlterVault(user_token_getter=lambda: seed.jwt("bob"))
    with pytest.raises(GrantNotFoundError):
        await bob.revoke_grant(grant_id=grant_id)
    await bob.close()
    alice_jwt = seed.jwt("alice")
    vault = AlterVault(user_token_getter=lambda: alice_jwt)

    result = await vault.revoke_grant(
        grant_id=grant_id,
        reason="Agent cleanup: stale grant",  # optional; stored in the audit log
    )
    print(f"Revoked at {result.revoked_at}")

    assert capsys.readouterr().out == f"Revoked at {result.revoked_at}\n"
    assert result.provider_revocation == "revoked" and seed.sandbox.stats["revoked"] >= 1
    with pytest.raises(GrantNotFoundError):
        await vault.revoke_grant(grant_id=grant_id, reason="again")
    assert "Agent cleanup: stale grant" in await audit_text(vault)
    await vault.close()


async def test_seed_managed_secret_grants_for_group_user_and_system(
        seed: Seed, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """The three principal forms bind a secret to a group, a verified user and the system."""
    caplog.set_level(logging.DEBUG)
    current_user_jwt = seed.jwt("alice")
    vault = AlterVault(caller="provisioner")  # the backend: the system principal
    secret = await vault.create_managed_secret(
        "stripe-api-key", {"secret_key": "sk_live_seed_0123456789abcdef"}, label="prod-stripe")

    # Tie the secret to an IDP group — every member with a verified JWT gets access
    grant = await vault.create_managed_secret_grant(
        secret.secret_id,
        principal=GroupPrincipal(
            idp_id="idp_xyz",
            external_group_id="okta-group-engineering",
            label="engineering-prod-stripe",
        ),
    )
    print(grant.grant_id, grant.principal_type)
    group_grant = grant

    # Tie the secret to a specific end user (validates user_token against the IDP).
    # `label` is required so the wallet can render meaningful copy.
    grant = await vault.create_managed_secret_grant(
        secret.secret_id,
        principal=UserPrincipal(
            user_token=current_user_jwt,
            label="alice-prod-stripe-readonly",
        ),
    )
    print(grant.grant_id, grant.principal_type)
    user_grant = grant

    # Headless system grant — no end-user identity required. `label` is optional
    # because system grants typically don't surface in the wallet.
    grant = await vault.create_managed_secret_grant(
        secret.secret_id,
        principal=SystemPrincipal(label="cron-stripe-charges"),
    )
    print(grant.grant_id, grant.principal_type)

    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in printed] == ["group", "user", "system"]
    assert group_grant.owner == GroupPrincipal(issuer=seed.idp.issuer, group=ENGINEERING,
                                               label="engineering-prod-stripe")
    assert user_grant.owner == UserPrincipal(issuer=seed.idp.issuer, subject="alice",
                                             label="alice-prod-stripe-readonly")
    audit = await audit_text(vault)
    await vault.close()

    async def visible(token: str) -> set[str]:
        member = AlterVault(user_token_getter=lambda: token)
        page = await member.list_grants(provider_id="stripe-api-key")
        await member.close()
        return {g.grant_id for g in page.grants}

    assert await visible(seed.jwt("alice")) == {user_grant.grant_id}
    assert await visible(seed.jwt("dana", groups=[ENGINEERING])) == {group_grant.grant_id}
    assert await visible(seed.jwt("bob", groups=["okta-group-sales"])) == set()
    assert current_user_jwt not in audit and files_containing(seed, current_user_jwt) == []
    assert current_user_jwt not in caplog.text + "".join(printed)
    assert current_user_jwt not in repr(user_grant) + user_grant.model_dump_json()


@pytest.mark.parametrize("idp_id", [IDP_ID, "issuer"])
async def test_seed_group_principal_idp_id_names_the_configured_issuer(seed: Seed,
                                                                       idp_id: str) -> None:
    """idp_id may be ALTER_MCP_IDP_ID or the issuer URL itself; both map to the issuer."""
    vault = AlterVault()
    secret = await vault.create_managed_secret("stripe-api-key", {"secret_key": "sk_live_x1234567"},
                                               label="s")
    grant = await vault.create_managed_secret_grant(secret.secret_id, principal=GroupPrincipal(
        idp_id=seed.idp.issuer if idp_id == "issuer" else idp_id, external_group_id="eng",
        label="eng"))
    await vault.close()
    assert grant.owner == GroupPrincipal(issuer=seed.idp.issuer, group="eng", label="eng")


async def test_seed_principals_that_do_not_resolve_are_refused(seed: Seed) -> None:
    """An unknown idp_id or a forged user_token creates no grant, and the error says why."""
    vault = AlterVault()
    secret = await vault.create_managed_secret("stripe-api-key", {"secret_key": "sk_live_x1234567"},
                                               label="s")
    with pytest.raises(InvalidInputError) as caught:
        await vault.create_managed_secret_grant(secret.secret_id, principal=GroupPrincipal(
            idp_id="idp_other", external_group_id="eng", label="eng"))
    assert caught.value.field == "principal.idp_id" and IDP_ID in str(caught.value)
    forged = seed.idp.forge_bad_signature(seed.jwt("alice"))
    with pytest.raises(AuthenticationError, match="signature"):
        await vault.create_managed_secret_grant(secret.secret_id, principal=UserPrincipal(
            user_token=forged, label="alice"))
    page = await vault.list_grants(provider_id="stripe-api-key")
    audit = await audit_text(vault)
    await vault.close()
    assert page.grants == () and forged not in audit
    refused = [e for e in json.loads(audit) if e["action"] == "secret.grant"]
    assert [e["outcome"] for e in refused] == ["denied", "denied"]
