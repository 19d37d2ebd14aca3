"""Building the caller's result: body decoding, header allow-list and scrubbing (no network)."""

from __future__ import annotations

import hashlib
import json

from alter_mcp.proxy.inject import secret_forms
from alter_mcp.proxy.result import build_result, decode_body, scrub
from alter_mcp.redaction import REDACTED

TOKEN = "ya29.a0AfH6SMBx-secret-token-0123456789"


def test_decode_body_parses_json_by_content_type() -> None:
    """A JSON media type (including +json) gives the parsed value."""
    assert decode_body(b'{"a": [1]}', "application/problem+json", truncated=False) == (
        "json", {"a": [1]})


def test_decode_body_uses_declared_charset() -> None:
    """Text is decoded with the charset the provider declares."""
    assert decode_body("café".encode("latin-1"), "text/plain; charset=ISO-8859-1",
                       truncated=False) == ("text", "café")


def test_decode_body_keeps_truncated_json_as_text_without_half_characters() -> None:
    """Truncated JSON stays text, and a multibyte character cut in half is dropped."""
    data = '{"name": "é'.encode()[:-1]
    assert decode_body(data, "application/json", truncated=True) == ("text", '{"name": "')


def test_decode_body_summarises_binary() -> None:
    """Binary content is summarised by type, size and SHA-256."""
    data = bytes(range(256))
    kind, body = decode_body(data, "image/png", truncated=False)
    assert kind == "binary"
    assert body == {"content_type": "image/png", "size": 256,
                    "sha256": hashlib.sha256(data).hexdigest()}


def test_decode_body_sniffs_untyped_utf8_json() -> None:
    """Without a content type, UTF-8 JSON is parsed and NUL-bearing bytes are binary."""
    assert decode_body(b'[1, 2]', None, truncated=False) == ("json", [1, 2])
    assert decode_body(b"a\x00b", None, truncated=False)[0] == "binary"


def test_scrub_redacts_values_keys_and_secret_named_fields() -> None:
    """Credential forms are redacted in values and keys; secret-named fields are blanked."""
    forms = secret_forms([TOKEN])
    value = {"echo": f"Bearer {TOKEN}", TOKEN: 1, "nested": [{"password": "hunter2!"}],
             "url": f"https://x.test/?t={TOKEN.replace('.', '%2E')}", "n": 3}
    scrubbed = scrub(value, forms)
    assert TOKEN not in json.dumps(scrubbed)
    assert scrubbed["nested"] == [{"password": REDACTED}]
    assert scrubbed["n"] == 3


def test_build_result_keeps_only_allow_listed_headers() -> None:
    """Only allow-listed headers survive; duplicates are joined; rate-limit families pass."""
    result = build_result(
        status=200, method="GET", url="https://api.example.com/", data=b"", truncated=False,
        secrets=(), raw_headers=[
            ("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Link", "<a>; rel=next"),
            ("Link", "<b>; rel=last"), ("X-RateLimit-Remaining", "4"), ("Server", "x"),
            ("RateLimit-Policy", "10;w=1"), ("WWW-Authenticate", "Bearer"),
        ])
    assert result.headers == {
        "content-type": "text/plain", "link": "<a>; rel=next, <b>; rel=last",
        "x-ratelimit-remaining": "4", "ratelimit-policy": "10;w=1",
    }


def test_build_result_scrubs_url_encoded_and_base64_echoes() -> None:
    """URL-encoded and base64 forms of the credential in a text body are redacted."""
    import base64
    from urllib.parse import quote

    text = f"{quote(TOKEN, safe='')} {base64.b64encode(TOKEN.encode()).decode()}"
    result = build_result(status=200, method="GET", url="https://a.test/", truncated=False,
                          raw_headers=[("Content-Type", "text/plain")], data=text.encode(),
                          secrets=secret_forms([TOKEN]))
    assert result.body == f"{REDACTED} {REDACTED}"

