"""The one redaction helper: by shape and by value."""

from __future__ import annotations

import pickle

import pytest

from alter_mcp.redaction import REDACTED, Secret, redact, redact_headers, redact_text, redact_url

TOKEN = "gho_16C7e42F292c6912E7710c838347Ae178B4a"


def test_redaction_secret_masks_repr_and_str() -> None:
    """A Secret never shows its value in repr, str or f-strings, and refuses pickling."""
    s = Secret(TOKEN)
    assert TOKEN not in repr(s) and TOKEN not in str(s) and TOKEN not in f"{s}"
    assert s.reveal() == TOKEN and s == Secret(TOKEN)
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_redaction_url_drops_userinfo_and_secret_params() -> None:
    """Userinfo and secret query values are removed; other parameters stay."""
    url = f"https://u:pw@api.test/x?access_token={TOKEN}&page=2&api_key=abc123&state=s1"
    out = redact_url(url)
    assert "pw" not in out and TOKEN not in out and "abc123" not in out and "s1" not in out
    assert "page=2" in out and out.startswith("https://api.test/x?")


def test_redaction_text_by_value_and_shape() -> None:
    """Known values, bearer values and JSON token fields are replaced."""
    text = (f'Authorization: Bearer {TOKEN} and "refresh_token": "rt-999" '
            f"and raw value xyzsecret9 here")
    out = redact_text(text, ["xyzsecret9"])
    assert TOKEN not in out and "rt-999" not in out and "xyzsecret9" not in out
    assert out.count(REDACTED) == 3


def test_redaction_headers_and_nested_values() -> None:
    """Sensitive headers and nested structures are redacted."""
    assert redact_headers({"Authorization": "Bearer x", "Accept": "json"}) == {
        "Authorization": REDACTED, "Accept": "json"}
    nested = {"a": [f"token is {TOKEN}"], "client_secret": "cs-1", "n": 3}
    out = redact(nested, [TOKEN])
    assert out == {"a": [f"token is {REDACTED}"], "client_secret": REDACTED, "n": 3}


def _every_pattern(text: str, secrets: list[str]) -> str:
    """redact_text without its shortcuts: every value, then every shape, always."""
    from alter_mcp import redaction as r

    for value in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(value, r.REDACTED)
    text = r._SCHEME_VALUE.sub(lambda m: f"{m.group(1)} {r.REDACTED}", text)
    text = r._JSON_FIELD.sub(lambda m: f"{m.group(1)}{r.REDACTED}{m.group(2)}", text)
    return r._QUERY_FIELD.sub(lambda m: f"{m.group(1)}{r.REDACTED}", text)


@pytest.mark.parametrize("text", [
    "plain words only", "Bearer abcdef123", "BASIC dXNlcjpwYXNz", "Token: x", "digest   1234",
    'x {"access_token": "abc"} y', '{"Password":"hunter22"}', "a=1&token=xyz&b=2",
    "?API_KEY=abcd", "ba\u017fic abcdefgh", "\u212aey basic 12345678", "bearer\u00a0abcdef",
    "caf\u00e9 token=abcd", 'm\u00fcnchen "secret": "s3cr3t"', "no=shape here", "",
    "sk_live_1234567890 and more", "tok=sk_live_1234567890",
])
def test_redact_text_shortcuts_change_nothing(text: str) -> None:
    """Skipping a shape's pattern on ASCII text that lacks its marker gives the same result."""
    secrets = ["sk_live_1234567890", "abcd"]
    assert redact_text(text, secrets) == _every_pattern(text, secrets)


def test_redact_url_without_query_or_userinfo_is_only_value_redacted() -> None:
    """A URL with nothing to take apart keeps its exact text, bar the secret values."""
    url = "https://api.example.com/v1/users/sk_live_1234567890/items#frag"
    assert redact_url(url, ["sk_live_1234567890"]) == (
        "https://api.example.com/v1/users/[redacted]/items#frag")
    assert redact_url("https://u:p@h.example/x") == "https://h.example/x"


def test_known_secrets_repr_and_pickle_hide_the_values() -> None:
    """A set of normalised secrets shows only its size, and refuses to be pickled."""
    from alter_mcp.redaction import known_secrets

    known = known_secrets([Secret("sk_live_1234567890"), "another-secret"])
    assert "sk_live" not in repr(known) and "another" not in str(known)
    assert repr(known) == "KnownSecrets(2 values)"
    with pytest.raises(TypeError):
        pickle.dumps(known)
