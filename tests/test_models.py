"""Principals in the Alter SDK's forms: a user named by JWT, a group named by IdP id."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from alter_mcp.models import Grant, GrantKind, GroupPrincipal, Identity, UserPrincipal

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNlY3JldA"


def test_user_principal_token_is_never_dumped_or_shown() -> None:
    """A user named by user_token keeps the token out of repr, str, dumps and JSON."""
    principal = UserPrincipal(user_token=TOKEN, label="alice")
    shown = [repr(principal), str(principal), principal.model_dump_json(),
             str(principal.model_dump())]
    assert all(TOKEN not in text for text in shown)
    assert principal.user_token is not None and principal.user_token.get_secret_value() == TOKEN
    assert not principal.resolved


def test_user_principal_unresolved_has_no_owner_key() -> None:
    """An unverified user principal cannot own a grant or be an identity."""
    principal = UserPrincipal(user_token=TOKEN, label="alice")
    with pytest.raises(ValueError, match="no owner key"):
        _ = principal.key
    now = datetime.now(UTC)
    with pytest.raises(ValidationError, match="resolved by the vault") as caught:
        Grant(grant_id="g", kind=GrantKind.MANAGED_SECRET, provider_id="p", owner=principal,
              created_at=now, updated_at=now)
    assert TOKEN not in str(caught.value)
    with pytest.raises(ValidationError, match="resolved by the vault"):
        Identity(principal=principal)


@pytest.mark.parametrize("fields", [
    {"user_token": TOKEN, "issuer": "https://idp.example"},
    {"user_token": TOKEN, "subject": "alice"},
    {"issuer": "https://idp.example"},
    {},
])
def test_user_principal_needs_exactly_one_name(fields: dict[str, str]) -> None:
    """Either user_token or issuer + subject; the error never echoes the token."""
    with pytest.raises(ValidationError) as caught:
        UserPrincipal(**fields)
    assert TOKEN not in str(caught.value)


def test_group_principal_sdk_fields_map_to_group() -> None:
    """external_group_id becomes the group; idp_id waits for the vault and is not stored."""
    principal = GroupPrincipal(idp_id="idp_xyz", external_group_id="eng", label="eng-stripe")
    assert principal.group == "eng" and not principal.resolved
    assert principal.model_dump() == {"type": "group", "issuer": "", "group": "eng",
                                      "label": "eng-stripe"}
    resolved = GroupPrincipal(issuer="https://idp.example", external_group_id="eng")
    assert resolved.resolved and resolved.key == "group:https://idp.example#eng"
    assert GroupPrincipal.model_validate_json(resolved.model_dump_json()) == GroupPrincipal(
        issuer="https://idp.example", group="eng")


@pytest.mark.parametrize("fields", [
    {"idp_id": "idp_xyz", "group": "eng", "external_group_id": "eng"},
    {"idp_id": "idp_xyz", "issuer": "https://idp.example", "group": "eng"},
    {"group": "eng"},
    {"idp_id": "idp_xyz"},
    {"issuer": "https://idp.example", "external_group_id": ""},
])
def test_group_principal_ambiguous_or_missing_names_are_refused(fields: dict[str, str]) -> None:
    """A group needs one issuer (or idp_id) and one group (or external_group_id)."""
    with pytest.raises(ValidationError):
        GroupPrincipal(**fields)
