"""Injection rules, checked on the outbound request itself (no network)."""

from __future__ import annotations

import base64
import pickle
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest

from alter_mcp.errors import ConfigurationError, InvalidInputError
from alter_mcp.providers.schema import Injection, InjectionKind
from alter_mcp.proxy.guard import prepare
from alter_mcp.proxy.inject import USER_AGENT, inject, secret_forms
from tests.proxy.conftest import API_KEY, PASSWORD, USER, bearer, credential, make_provider

URL = "https://api.example.com/v1/items"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _send(
    *rules: Injection, fields: tuple[str, ...] = ("api_key",), **values: str,
) -> dict[str, Any]:
    provider = make_provider(*rules, hosts=("api.example.com",), fields=fields)
    prepared = prepare(provider, "GET", URL, query_params={"page": 2})
    outbound = inject(prepared, provider, credential(**values), now=NOW)
    return {"url": outbound.url, "headers": dict(outbound.headers), "out": outbound}


def test_inject_bearer_sets_authorization() -> None:
    """A bearer rule sends ``Authorization: Bearer <format>``."""
    sent = _send(bearer(), api_key=API_KEY)
    assert sent["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert sent["headers"]["User-Agent"] == USER_AGENT


def test_inject_bearer_does_not_double_the_scheme() -> None:
    """A bearer format that already says ``Bearer`` is used as written."""
    sent = _send(Injection(kind=InjectionKind.BEARER, format="Bearer {api_key}"),
                 api_key=API_KEY)
    assert sent["headers"]["Authorization"] == f"Bearer {API_KEY}"


def test_inject_header_renders_format() -> None:
    """A header rule renders its template into the named header."""
    rule = Injection(kind=InjectionKind.HEADER, name="X-Api-Key", format="token {api_key}")
    assert _send(rule, api_key=API_KEY)["headers"]["X-Api-Key"] == f"token {API_KEY}"


def test_inject_query_appends_encoded_parameter() -> None:
    """A query rule adds the credential after the caller's parameters, strictly encoded."""
    rule = Injection(kind=InjectionKind.QUERY, name="key", format="{api_key}")
    sent = _send(rule, api_key="a/b+c=d")
    assert sent["url"] == f"{URL}?page=2&key=a%2Fb%2Bc%3Dd"


def test_inject_basic_encodes_username_and_password() -> None:
    """A basic rule sends base64(username:password) from the templates."""
    rule = Injection(kind=InjectionKind.BASIC, username="{username}", password="{password}")
    sent = _send(rule, fields=("username", "password"), username=USER, password=PASSWORD)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert sent["headers"]["Authorization"] == f"Basic {token}"


def test_inject_several_rules_at_once() -> None:
    """Several rules apply together, each in its own place."""
    sent = _send(
        bearer(),
        Injection(kind=InjectionKind.HEADER, name="X-Client", format="{client_id}"),
        Injection(kind=InjectionKind.QUERY, name="sig", format="{client_id}"),
        fields=("api_key", "client_id"), api_key=API_KEY, client_id="client-123",
    )
    assert sent["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert sent["headers"]["X-Client"] == "client-123"
    assert sent["url"].endswith("&sig=client-123")


def test_inject_sigv4_signs_after_other_rules() -> None:
    """A SigV4 rule adds X-Amz-Date, the token and an Authorization covering other headers."""
    provider = make_provider(
        Injection(kind=InjectionKind.HEADER, name="X-Extra", format="{access_key_id}"),
        Injection(kind=InjectionKind.AWS_SIGV4),
        hosts=("sts.amazonaws.com",), aws_service="sts",
        fields=("access_key_id", "secret_access_key", "region", "session_token"),
    )
    prepared = prepare(provider, "POST", "https://sts.amazonaws.com/", body={"Action": "x"})
    outbound = inject(prepared, provider, credential(
        access_key_id="AKIDEXAMPLE", secret_access_key="wJalrXUtnFEMI/K7MDENG",
        region="us-east-1", session_token="FQoGZXIvYXdzEXAMPLE"), now=NOW)
    headers = dict(outbound.headers)
    assert headers["X-Amz-Date"] == "20260102T030405Z"
    assert headers["X-Amz-Security-Token"] == "FQoGZXIvYXdzEXAMPLE"
    assert headers["Authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260102/us-east-1/sts/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-extra, Signature=")


def test_inject_refuses_credential_missing_a_field() -> None:
    """A credential without a field the template names is an error naming the field."""
    with pytest.raises(InvalidInputError) as caught:
        _send(bearer())
    assert caught.value.field == "credential.api_key"


def test_inject_refuses_credential_with_line_break_without_showing_it() -> None:
    """A credential that would split a header is refused and not quoted."""
    with pytest.raises(InvalidInputError) as caught:
        _send(bearer(), api_key="abcd\r\nX-Evil: 1")
    assert "abcd" not in str(caught.value)


def test_inject_refuses_credential_with_surrounding_space() -> None:
    """A padded credential is refused instead of failing inside the HTTP client."""
    with pytest.raises(InvalidInputError) as caught:
        _send(bearer(), api_key=f"{API_KEY} ")
    assert caught.value.field == "credential"


def test_inject_refuses_template_with_attribute_access() -> None:
    """Only plain {field} placeholders are rendered, never attributes or format specs."""
    rule = Injection(kind=InjectionKind.HEADER, name="X-K", format="{api_key!r}")
    with pytest.raises(ConfigurationError):
        _send(rule, api_key=API_KEY)


def test_outbound_request_repr_and_pickle_hide_credential() -> None:
    """The outbound request's repr omits its secrets and it refuses to be pickled."""
    out = _send(bearer(), api_key=API_KEY)["out"]
    assert API_KEY not in repr(out)
    with pytest.raises(TypeError):
        pickle.dumps(out)


def test_secret_forms_cover_encoded_variants() -> None:
    """The scrub list has the raw, URL-encoded, base64 and JSON-escaped forms."""
    value = 'p/a+s s"w'
    forms = set(secret_forms([value]))
    assert {value, quote(value, safe=""), "p%2Fa%2Bs+s%22w", 'p/a+s s\\"w',
            base64.b64encode(value.encode()).decode()} <= forms


def test_secret_forms_cover_lowercase_hex_and_escaped_slash_variants() -> None:
    """Percent forms come in lowercase hex too, and every form with "/" also with "\\/"."""
    value = "q8/Jd+Zx0W3n=pL7"
    forms = set(secret_forms([value]))
    assert {"q8%2fJd%2bZx0W3n%3dpL7", "q8/Jd%2bZx0W3n%3dpL7", "q8\\/Jd+Zx0W3n=pL7",
            "q8\\/Jd%2bZx0W3n%3dpL7", "q8%2FJd%2BZx0W3n%3DpL7"} <= forms
    assert all(len(a) >= len(b) for a, b in zip(secret_forms([value]),
                                                 secret_forms([value])[1:], strict=False))


def test_secret_forms_skip_values_too_short_to_scrub() -> None:
    """Values under four characters are not scrubbed (they would shred ordinary text)."""
    assert secret_forms(["abc"]) == ()


def test_inject_lists_every_secret_field_but_public_ones() -> None:
    """Scrub forms cover secret fields and rendered values, not fields marked public."""
    rule = Injection(kind=InjectionKind.BASIC, username="{username}", password="{password}")
    provider = make_provider(rule, hosts=("api.example.com",), fields=("username", "password"),
                             public=("username",))
    out = inject(prepare(provider, "GET", URL), provider,
                 credential(username="public-user", password=PASSWORD))
    assert PASSWORD in out.secrets
    assert "public-user" not in out.secrets
    assert f"public-user:{PASSWORD}" in out.secrets
