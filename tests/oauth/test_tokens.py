"""The token set: when it is due, what a refresh keeps, and its sealed form."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta

import pytest

from alter_mcp.crypto import Envelope, Keyring, parse_key
from alter_mcp.errors import DecryptionError
from alter_mcp.oauth.tokens import TokenSet, open_credential, seal_credential, split_scopes
from alter_mcp.redaction import Secret

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def tokens(lifetime: float | None, **fields: object) -> TokenSet:
    """Return a token set obtained at NOW living ``lifetime`` seconds."""
    expires = NOW + timedelta(seconds=lifetime) if lifetime is not None else None
    return TokenSet(access_token=Secret("at-0123456789"), obtained_at=NOW, expires_at=expires,
                    **fields)


def test_tokens_due_within_leeway_capped_at_half_lifetime() -> None:
    """A one-minute token is not due at once under a one-minute leeway, but is after 30 s."""
    short = tokens(60)
    assert not short.is_due(NOW, leeway=60)
    assert short.is_due(NOW + timedelta(seconds=30), leeway=60)
    hourly = tokens(3600)
    assert not hourly.is_due(NOW + timedelta(seconds=3539), leeway=60)
    assert hourly.is_due(NOW + timedelta(seconds=3540), leeway=60)
    assert not tokens(None).is_due(NOW + timedelta(days=3650), leeway=60)


def test_tokens_after_refresh_keep_what_response_omits() -> None:
    """A refresh answer without refresh token, scopes or id token keeps the previous ones."""
    old = tokens(60, refresh_token=Secret("rt-1"), scopes=("a", "b"), requested_scopes=("a",),
                 extras={"instance_url": "https://x.example"})
    new = old.after_refresh(tokens(120))
    assert new.refresh_token == Secret("rt-1") and new.scopes == ("a", "b")
    assert new.requested_scopes == ("a",) and new.extras == {"instance_url": "https://x.example"}
    rotated = old.after_refresh(tokens(120, refresh_token=Secret("rt-2")))
    assert rotated.refresh_token == Secret("rt-2")


def test_tokens_sealed_blob_opens_only_for_its_grant() -> None:
    """A sealed credential round-trips, hides its tokens, and fails on another grant."""
    envelope = Envelope(Keyring(parse_key(base64.b64encode(os.urandom(32)).decode())))
    original = tokens(60, refresh_token=Secret("rt-secret-value"), scopes=("a",))
    record = seal_credential(envelope, "grant-1", original, version=3, now=NOW)
    assert b"rt-secret-value" not in record.blob and "rt-secret" not in repr(record)
    assert open_credential(envelope, record) == original
    moved = type(record)(grant_id="grant-2", blob=record.blob, key_id=record.key_id,
                         version=3, expires_at=None, updated_at=NOW)
    with pytest.raises(DecryptionError):
        open_credential(envelope, moved)
    assert "rt-secret" not in repr(original) and "at-0123" not in str(original)


def test_tokens_split_scopes_by_separator() -> None:
    """Scopes split on the provider's separator or whitespace, de-duplicated in order."""
    assert split_scopes("repo,gist,repo", ",") == ("repo", "gist")
    assert split_scopes("openid  email") == ("openid", "email")
    assert split_scopes(["a", "b"]) == ("a", "b") and split_scopes(None) == ()
