"""The destination guard: what ``prepare`` accepts, how it normalises it, and what it names."""

from __future__ import annotations

import dataclasses

import pytest

from alter_mcp.errors import BlockedDestinationError, InvalidInputError
from alter_mcp.models import HttpMethod
from alter_mcp.providers.schema import Injection, InjectionKind
from alter_mcp.proxy.guard import PreparedRequest, prepare, reserved_names
from tests.proxy.conftest import bearer, make_provider

GITHUB = make_provider(bearer(), hosts=("api.github.com",))
WILDCARD = make_provider(bearer(), hosts=("*.example.com",), port=8443)


def test_prepare_accepts_allowed_https_url() -> None:
    """An https URL on an API host becomes a request for that origin with port 443."""
    prepared = prepare(GITHUB, "get", "https://API.GitHub.com/user")
    assert prepared.origin == ("https", "api.github.com", 443)
    assert prepared.method is HttpMethod.GET
    assert prepared.url == "https://api.github.com/user"
    assert prepared.provider_id == GITHUB.id


def test_prepare_fills_placeholders_with_fully_encoded_values() -> None:
    """Path parameters are percent-encoded with no safe characters, one segment each."""
    prepared = prepare(GITHUB, "GET", "https://api.github.com/repos/{owner}/{repo}/issues",
                       path_params={"owner": "a b&c=d;e:f@g", "repo": "résumé+1"})
    assert prepared.path == "/repos/a%20b%26c%3Dd%3Be%3Af%40g/r%C3%A9sum%C3%A9%2B1/issues"


def test_prepare_reuses_a_placeholder_filled_twice() -> None:
    """A placeholder may appear twice and takes the same value each time."""
    prepared = prepare(GITHUB, "GET", "https://api.github.com/{x}/{x}", path_params={"x": 7})
    assert prepared.path == "/7/7"


def test_prepare_refuses_missing_path_param() -> None:
    """An unfilled placeholder names the path parameter to give."""
    with pytest.raises(InvalidInputError) as caught:
        prepare(GITHUB, "GET", "https://api.github.com/repos/{owner}")
    assert caught.value.field == "path_params.owner"


def test_prepare_refuses_unused_path_param() -> None:
    """A path parameter that no placeholder uses is an error, not silently dropped."""
    with pytest.raises(InvalidInputError) as caught:
        prepare(GITHUB, "GET", "https://api.github.com/user", path_params={"owner": "x"})
    assert caught.value.field == "path_params.owner"


def test_prepare_refuses_stray_brace() -> None:
    """A brace that is not a {name} placeholder is refused."""
    with pytest.raises(InvalidInputError) as caught:
        prepare(GITHUB, "GET", "https://api.github.com/a/{1x}")
    assert caught.value.field == "url"


def test_prepare_merges_query_params_after_url_query() -> None:
    """URL query pairs come first, then query_params, all in strict encoding."""
    prepared = prepare(GITHUB, "GET", "https://api.github.com/search?q=a+b&x=%2B",
                       query_params={"per_page": 5, "sort": ["a", "b"], "flag": True})
    assert prepared.query == (("q", "a b"), ("x", "+"), ("per_page", "5"), ("sort", "a"),
                              ("sort", "b"), ("flag", "true"))
    assert prepared.url.endswith("?q=a%20b&x=%2B&per_page=5&sort=a&sort=b&flag=true")


def test_prepare_removes_dot_segments_in_url_path() -> None:
    """Dot segments in the URL itself are resolved, so the path signed is the path sent."""
    prepared = prepare(GITHUB, "GET", "https://api.github.com/a/./b/../c/")
    assert prepared.path == "/a/c/"


def test_prepare_encodes_unicode_path_and_keeps_escapes() -> None:
    """Non-ASCII path characters are UTF-8 percent-encoded; valid escapes are kept."""
    prepared = prepare(GITHUB, "GET", "https://api.github.com/files/ሴ%20x")
    assert prepared.path == "/files/%E1%88%B4%20x"


def test_prepare_accepts_wildcard_host_and_declared_port() -> None:
    """A host under a declared wildcard, on a declared port, passes."""
    prepared = prepare(WILDCARD, "GET", "https://eu.api.example.com:8443/v1")
    assert prepared.origin == ("https", "eu.api.example.com", 8443)
    assert prepared.url == "https://eu.api.example.com:8443/v1"


def test_prepare_refuses_wildcard_apex() -> None:
    """``*.example.com`` does not cover ``example.com`` itself."""
    with pytest.raises(BlockedDestinationError):
        prepare(WILDCARD, "GET", "https://example.com/v1")


def test_prepare_normalises_explicit_default_port() -> None:
    """An explicit :443 is the same origin as no port."""
    assert prepare(GITHUB, "GET", "https://api.github.com:443/x").url == (
        "https://api.github.com/x")


def test_prepare_accepts_idn_host_by_its_punycode() -> None:
    """A Unicode host is compared by its IDNA A-label, so it matches only that label."""
    provider = make_provider(bearer(), hosts=("xn--bcher-kva.example",))
    prepared = prepare(provider, "GET", "https://bücher.example/")
    assert prepared.host == "xn--bcher-kva.example"


def test_prepare_allows_http_only_to_loopback_in_test_mode() -> None:
    """Plain http to localhost passes only with allow_insecure_http."""
    provider = make_provider(bearer(), port=8080)
    with pytest.raises(BlockedDestinationError):
        prepare(provider, "GET", "http://localhost:8080/")
    assert prepare(provider, "GET", "http://localhost:8080/",
                   allow_insecure_http=True).scheme == "http"


def test_prepare_allows_loopback_literal_only_when_listed_in_test_mode() -> None:
    """127.0.0.1 passes in insecure mode when the provider lists it, and never otherwise."""
    provider = make_provider(bearer(), hosts=("127.0.0.1",), port=8080)
    assert prepare(provider, "GET", "http://127.0.0.1:8080/",
                   allow_insecure_http=True).host == "127.0.0.1"
    with pytest.raises(BlockedDestinationError):
        prepare(provider, "GET", "https://127.0.0.1:8080/")


def test_prepare_refuses_http_to_non_loopback_even_in_test_mode() -> None:
    """Insecure mode never allows plain http to a real host."""
    with pytest.raises(BlockedDestinationError):
        prepare(GITHUB, "GET", "http://api.github.com/", allow_insecure_http=True)


def test_prepare_encodes_json_body_with_content_type() -> None:
    """A JSON body is compact UTF-8 with Content-Type application/json."""
    prepared = prepare(GITHUB, "POST", "https://api.github.com/x", json={"a": "é", "b": [1]})
    assert prepared.content == '{"a":"é","b":[1]}'.encode()
    assert prepared.header("content-type") == "application/json"


def test_prepare_keeps_caller_content_type() -> None:
    """A caller's Content-Type is not overridden."""
    prepared = prepare(GITHUB, "POST", "https://api.github.com/x", json=[1],
                       headers={"Content-Type": "application/vnd.api+json"})
    assert prepared.header("Content-Type") == "application/vnd.api+json"


def test_prepare_encodes_form_body() -> None:
    """A mapping body is form-encoded."""
    prepared = prepare(GITHUB, "POST", "https://api.github.com/x", body={"a": "1 2", "b": "&"})
    assert prepared.content == b"a=1+2&b=%26"
    assert prepared.header("content-type") == "application/x-www-form-urlencoded"


def test_prepare_refuses_json_and_body_together() -> None:
    """Giving both bodies names the body field."""
    with pytest.raises(InvalidInputError) as caught:
        prepare(GITHUB, "POST", "https://api.github.com/x", json={}, body="x")
    assert caught.value.field == "body"


def test_prepare_refuses_unknown_method() -> None:
    """A method outside HttpMethod names the method field."""
    with pytest.raises(InvalidInputError) as caught:
        prepare(GITHUB, "CONNECT", "https://api.github.com/x")
    assert caught.value.field == "method"


def test_prepare_refuses_duplicate_header_names() -> None:
    """Header names that differ only in case are one header given twice."""
    with pytest.raises(InvalidInputError) as caught:
        prepare(GITHUB, "GET", "https://api.github.com/", headers={"X-A": "1", "x-a": "2"})
    assert caught.value.field == "headers.x-a"


def test_prepare_refuses_non_ascii_header_value() -> None:
    """Header values must be ASCII, and the error names the header."""
    with pytest.raises(InvalidInputError) as caught:
        prepare(GITHUB, "GET", "https://api.github.com/", headers={"X-Name": "José"})
    assert caught.value.field == "headers.X-Name"


def test_prepare_strips_surrounding_whitespace_from_header_values() -> None:
    """Spaces and tabs around a header value are not part of it (RFC 9110) and are dropped."""
    prepared = prepare(GITHUB, "GET", "https://api.github.com/", headers={"X-A": " v 1\t"})
    assert prepared.header("x-a") == "v 1"


def test_prepare_escapes_unprintable_characters_in_field_names() -> None:
    """A header name with a line break is named with the break escaped."""
    with pytest.raises(InvalidInputError) as caught:
        prepare(GITHUB, "GET", "https://api.github.com/", headers={"X-A\r\nHost": "x"})
    assert caught.value.field == "headers.X-A\\x0d\\x0aHost"
    assert "\n" not in str(caught.value)


def test_prepared_request_is_frozen_and_hides_body_in_repr() -> None:
    """The prepared request cannot be changed in place and its repr omits the body."""
    prepared = prepare(GITHUB, "POST", "https://api.github.com/x", body="private-body")
    with pytest.raises(dataclasses.FrozenInstanceError):
        prepared.host = "evil.test"  # type: ignore[misc]
    assert "private-body" not in repr(prepared)
    assert isinstance(prepared, PreparedRequest)


def test_reserved_names_cover_every_injection_kind() -> None:
    """Each injection kind reserves the header or query names it writes."""
    provider = make_provider(
        Injection(kind=InjectionKind.HEADER, name="X-Api-Key", format="{api_key}"),
        Injection(kind=InjectionKind.QUERY, name="Key", format="{api_key}"),
        Injection(kind=InjectionKind.BEARER, name="X-Token", format="{api_key}"),
    )
    headers, query = reserved_names(provider)
    assert headers == {"x-api-key", "x-token"}
    assert query == {"key"}
