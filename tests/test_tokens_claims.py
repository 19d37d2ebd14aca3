"""``identity_from_claims``: the user a verified token names, as both the JWT mode and the
authorization bridge read it."""

from __future__ import annotations

from typing import Any

import pytest

from alter_mcp.models import UserPrincipal
from alter_mcp.tokens import identity_from_claims


@pytest.mark.parametrize(("groups", "expected"), [
    (["eng", "ops"], {"eng", "ops"}),
    ("eng ops,sre", {"eng", "ops", "sre"}),
    ([{"name": "eng"}, "ops", 7], {"ops", "7"}),
    (None, set()),
])
def test_identity_from_claims_reads_issuer_subject_label_and_groups(
    groups: Any, expected: set[str],
) -> None:
    """Issuer and subject make the principal; email labels it; the groups claim is read."""
    claims = {"sub": "u-1", "email": "alice@example.test", "name": "Alice", "teams": groups}
    identity = identity_from_claims("https://idp.example", "u-1", claims, groups_claim="teams")
    assert identity.principal == UserPrincipal(issuer="https://idp.example", subject="u-1",
                                               label="alice@example.test")
    assert identity.groups == frozenset(expected)


def test_identity_from_claims_labels_by_username_when_there_is_no_email() -> None:
    """Without an email the preferred username, then the name, labels the user."""
    identity = identity_from_claims("https://i", "s", {"preferred_username": "al", "name": "A"},
                                    groups_claim="groups")
    assert isinstance(identity.principal, UserPrincipal)
    assert identity.principal.label == "al"
