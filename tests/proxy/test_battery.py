"""The exfiltration battery: crafted URLs, headers and redirects never deliver the credential.

Every case goes through the whole path (``prepare`` then ``Sender.send``) on a client whose
transport delivers *any* request to a recording listener (127.0.0.1 for loopback names,
127.0.0.2 for everything else). A control case shows that an allowed request does arrive there
with the credential, so an empty recorder is evidence, not an accident of DNS.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest

from alter_mcp.errors import AlterError, BlockedDestinationError, InvalidInputError
from alter_mcp.models import HttpMethod
from alter_mcp.providers.schema import Injection, InjectionKind
from alter_mcp.proxy.guard import PreparedRequest, prepare
from alter_mcp.proxy.send import Sender, new_client
from tests.peers.httpbin import HttpbinPeer
from tests.peers.recorder import RequestRecorder
from tests.proxy.conftest import (
    API_KEY,
    ScriptedServer,
    ToRecorder,
    base,
    bearer,
    credential,
    make_provider,
)

pytestmark = pytest.mark.peers

GITHUB = make_provider(
    bearer(),
    Injection(kind=InjectionKind.HEADER, name="X-Api-Key", format="{api_key}"),
    Injection(kind=InjectionKind.QUERY, name="access_key", format="{api_key}"),
    hosts=("api.github.com",),
)
CREDENTIAL = credential(api_key=API_KEY)
BLOCKED, INVALID = BlockedDestinationError, InvalidInputError


@dataclass(frozen=True)
class Case:
    url: str
    error: type[AlterError]
    field: str = "url"
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    insecure: bool = False
    method: str = "GET"


def _p(name: str, value: str) -> dict[str, Any]:
    return {"path_params": {name: value}}


REPO = "https://api.github.com/repos/{owner}/x"

CASES: dict[str, Case] = {
    "other_host": Case("https://evil.test/repos", BLOCKED),
    "lookalike_suffix": Case("https://api.github.com.evil.test/user", BLOCKED),
    "lookalike_hyphen": Case("https://api-github.com/user", BLOCKED),
    "host_in_path": Case("https://evil.test/api.github.com", BLOCKED),
    "userinfo_trick": Case("https://api.github.com@evil.test/", BLOCKED),
    "userinfo_with_port": Case("https://api.github.com:443@evil.test/", BLOCKED),
    "userinfo_encoded_at": Case("https://api.github.com%40evil.test/", BLOCKED),
    "backslash_userinfo": Case("https://evil.test\\@api.github.com/", BLOCKED),
    "backslash_authority": Case("https://api.github.com\\.evil.test/", BLOCKED),
    "ipv4_literal_https": Case("https://127.0.0.2:R2/", BLOCKED),
    "ipv4_literal_http_test_mode": Case("http://127.0.0.2:R2/", BLOCKED, insecure=True),
    "loopback_literal_other_port": Case("http://127.0.0.1:R1/", BLOCKED, insecure=True),
    "decimal_ip": Case("http://2130706434:R2/", BLOCKED, insecure=True),
    "hex_ip": Case("https://0x7f000002/", BLOCKED),
    "octal_ip": Case("https://0177.0.0.2/", BLOCKED),
    "short_ip": Case("https://127.1/", BLOCKED),
    "ipv6_literal": Case("https://[::1]:R1/", BLOCKED),
    "ipv6_mapped_v4": Case("https://[::ffff:127.0.0.2]/", BLOCKED),
    "idn_lookalike_cyrillic": Case("https://\u0430pi.github.com/user", BLOCKED),
    "punycode_lookalike": Case("https://xn--pi-7kc.github.com/user", BLOCKED),
    "ideographic_full_stop": Case("https://api.github.com\u3002evil.test/", BLOCKED),
    "fullwidth_letters": Case("https://\uff41pi.github.com/", BLOCKED),
    "trailing_dot": Case("https://api.github.com./user", BLOCKED),
    "other_port": Case("https://api.github.com:R2/user", BLOCKED),
    "empty_port": Case("https://api.github.com:/user", BLOCKED),
    "scheme_downgrade": Case("http://api.github.com/user", BLOCKED),
    "scheme_downgrade_test_mode": Case("http://api.github.com/user", BLOCKED, insecure=True),
    "javascript_scheme": Case("javascript:fetch('//evil.test')", BLOCKED),
    "file_scheme": Case("file:///etc/passwd", BLOCKED),
    "ftp_scheme": Case("ftp://api.github.com/", BLOCKED),
    "protocol_relative": Case("//evil.test/user", BLOCKED),
    "missing_slashes": Case("https:evil.test/user", BLOCKED),
    "fragment_at_trick": Case("https://api.github.com#@evil.test/", BLOCKED),
    "fragment": Case("https://api.github.com/user#top", BLOCKED),
    "tab_in_host": Case("https://api.github.com\t.evil.test/", INVALID),
    "space_in_host": Case("https://api.github.com .evil.test/", INVALID),
    "crlf_in_url": Case("https://api.github.com/x\r\nHost: evil.test", INVALID),
    "zero_width_space_in_host": Case("https://api.git\u200bhub.com/", INVALID),
    "placeholder_in_host": Case("https://{h}/x", INVALID, kwargs=_p("h", "api.github.com")),
    "path_param_dotdot": Case(REPO, BLOCKED, "path_params.owner", _p("owner", "..")),
    "path_param_traversal": Case(REPO, BLOCKED, "path_params.owner", _p("owner", "../../x")),
    "path_param_encoded_slash": Case(REPO, BLOCKED, "path_params.owner", _p("owner", "a%2Fb")),
    "path_param_encoded_dots": Case(REPO, BLOCKED, "path_params.owner", _p("owner", "%2e%2e")),
    "path_param_question": Case(REPO, BLOCKED, "path_params.owner", _p("owner", "x?a=1")),
    "path_param_hash": Case(REPO, BLOCKED, "path_params.owner", _p("owner", "x#y")),
    "path_param_backslash": Case(REPO, BLOCKED, "path_params.owner", _p("owner", "..\\x")),
    "path_param_crlf": Case(REPO, INVALID, "path_params.owner", _p("owner", "x\r\nHost: e")),
    "header_crlf_value": Case("https://api.github.com/", INVALID, "headers.X-Note",
                              {"headers": {"X-Note": "a\r\nHost: evil.test"}}),
    "header_lf_value": Case("https://api.github.com/", INVALID, "headers.X-Note",
                            {"headers": {"X-Note": "a\nAuthorization: x"}}),
    "header_nul_value": Case("https://api.github.com/", INVALID, "headers.X-Note",
                             {"headers": {"X-Note": "a\x00b"}}),
    "header_crlf_name": Case("https://api.github.com/", INVALID, "headers.X\\x0d\\x0aHost",
                             {"headers": {"X\r\nHost": "evil.test"}}),
    "second_host_header": Case("https://api.github.com/", BLOCKED, "headers.Host",
                               {"headers": {"Host": "evil.test"}}),
    "caller_authorization": Case("https://api.github.com/", BLOCKED, "headers.Authorization",
                                 {"headers": {"Authorization": "Bearer attacker"}}),
    "caller_cookie": Case("https://api.github.com/", BLOCKED, "headers.cookie",
                          {"headers": {"cookie": "session=x"}}),
    "caller_proxy_authorization": Case(
        "https://api.github.com/", BLOCKED, "headers.Proxy-Authorization",
        {"headers": {"Proxy-Authorization": "Basic eDp5"}}),
    "provider_injection_header": Case("https://api.github.com/", BLOCKED, "headers.x-api-key",
                                      {"headers": {"x-api-key": "mine"}}),
    "transfer_encoding": Case("https://api.github.com/", BLOCKED, "headers.Transfer-Encoding",
                              {"headers": {"Transfer-Encoding": "chunked"}}, method="POST"),
    "content_length": Case("https://api.github.com/", BLOCKED, "headers.Content-Length",
                           {"headers": {"Content-Length": "0"}}, method="POST"),
    "connection_upgrade": Case("https://api.github.com/", BLOCKED, "headers.Upgrade",
                               {"headers": {"Upgrade": "h2c"}}),
    "query_crlf_value": Case("https://api.github.com/search", INVALID, "query_params.q",
                             {"query_params": {"q": "x\r\nHost: evil.test"}}),
    "query_encoded_crlf_in_url": Case("https://api.github.com/s?q=%0d%0aHost:%20e", INVALID),
    "injection_query_param": Case("https://api.github.com/", BLOCKED, "query_params.ACCESS_KEY",
                                  {"query_params": {"ACCESS_KEY": "mine"}}),
    "injection_query_in_url": Case("https://api.github.com/?access_key=mine", BLOCKED),
    "bad_percent_escape": Case("https://api.github.com/%zz", INVALID),
}


async def _attempt(sender: Sender, case: Case, url: str) -> None:
    prepared = prepare(GITHUB, case.method, url, allow_insecure_http=case.insecure,
                       **case.kwargs)
    await sender.send(prepared, GITHUB, CREDENTIAL)


@pytest.fixture
async def trap(
    recorder_factory: Callable[..., RequestRecorder],
) -> AsyncIterator[tuple[Sender, RequestRecorder, RequestRecorder]]:
    """A sender whose every request lands in a recorder, and the two recorders."""
    here, there = recorder_factory("127.0.0.1"), recorder_factory("127.0.0.2")
    async with new_client(trust_env=False, transport=ToRecorder(here, there)) as client:
        yield Sender(client, timeout=5.0, allow_insecure_http=True), here, there


def test_battery_has_at_least_25_cases() -> None:
    """The battery is as broad as the issue asks."""
    assert len(CASES) >= 25


async def test_battery_control_allowed_request_reaches_recorder_with_credential(
    trap: tuple[Sender, RequestRecorder, RequestRecorder],
) -> None:
    """An allowed request does reach the trap carrying the credential, so the trap works."""
    sender, _, there = trap
    await sender.send(prepare(GITHUB, "GET", "https://api.github.com/user"), GITHUB, CREDENTIAL)
    (seen,) = there.requests
    assert seen.header("Authorization") == f"Bearer {API_KEY}"
    assert seen.header("X-Api-Key") == API_KEY
    assert seen.query["access_key"] == [API_KEY]
    assert seen.header("Host") == "api.github.com"


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_battery_crafted_request_raises_typed_error_and_leaks_nothing(
    case: Case, trap: tuple[Sender, RequestRecorder, RequestRecorder],
) -> None:
    """Each crafted URL or header raises its typed error naming the field; no request leaves."""
    sender, here, there = trap
    url = case.url.replace("R1", str(here.port)).replace("R2", str(there.port))
    with pytest.raises(AlterError) as caught:
        await _attempt(sender, case, url)
    assert type(caught.value) is case.error
    assert caught.value.field == case.field  # type: ignore[attr-defined]
    assert API_KEY not in str(caught.value) + repr(caught.value.to_dict())
    assert here.requests == [] and there.requests == []


FORGED = {
    "other_host": {"host": "evil.test"},
    "other_provider": {"provider_id": "someone-else"},
    "other_port": {"port": 8443},
    "http_to_real_host": {"scheme": "http", "port": 80},
    "smuggled_authorization": {"headers": (("Authorization", "Bearer attacker"),)},
    "smuggled_injection_query": {"query": (("access_key", "mine"),)},
}


@pytest.mark.parametrize("changes", FORGED.values(), ids=FORGED.keys())
async def test_sender_refuses_forged_prepared_request(
    changes: dict[str, Any], trap: tuple[Sender, RequestRecorder, RequestRecorder],
) -> None:
    """A PreparedRequest built by hand around the guard is refused before injection."""
    sender, here, there = trap
    forged = PreparedRequest(**{
        "provider_id": GITHUB.id, "method": HttpMethod.GET, "scheme": "https",
        "host": "api.github.com", "port": 443, "path": "/user", **changes})
    with pytest.raises(BlockedDestinationError):
        await sender.send(forged, GITHUB, CREDENTIAL)
    assert here.requests == [] and there.requests == []


LOCATIONS = {
    "second_loopback_listener": ("http://127.0.0.2:R2/steal", "cross_origin"),
    "loopback_ip_literal": ("http://127.0.0.1:R1/steal", "cross_origin"),
    "same_host_other_port": ("http://localhost:R1/steal", "cross_origin"),
    "scheme_relative": ("//127.0.0.2:R2/steal", "cross_origin"),
    "userinfo_trick": ("http://localhost:HP@127.0.0.2:R2/steal", "cross_origin"),
    "scheme_change": ("https://localhost:HP/headers", "cross_origin"),
    "trailing_dot": ("http://localhost.:HP/headers", "cross_origin"),
    "javascript": ("javascript:alert(1)", "invalid_location"),
}


@pytest.mark.parametrize(("location", "reason"), LOCATIONS.values(), ids=LOCATIONS.keys())
async def test_redirect_elsewhere_is_returned_not_followed(
    location: str, reason: str, httpbin: HttpbinPeer, client: httpx2.AsyncClient,
    recorder_factory: Callable[..., RequestRecorder],
) -> None:
    """A redirect off the provider's origin comes back to the caller; no listener sees a thing."""
    here, there = recorder_factory("127.0.0.1"), recorder_factory("127.0.0.2")
    target = (location.replace("R1", str(here.port)).replace("R2", str(there.port))
              .replace("HP", str(httpbin.port)))
    provider = make_provider(bearer(), port=httpbin.port)
    sender = Sender(client, timeout=10.0, allow_insecure_http=True)
    prepared = prepare(provider, "GET", f"{base(httpbin)}/redirect-to",
                       query_params={"url": target}, allow_insecure_http=True)
    result = await sender.send(prepared, provider, credential(api_key=API_KEY))
    assert result.status == 302
    assert result.unfollowed_redirect is not None
    assert result.unfollowed_redirect.reason == reason
    assert result.redirects == ()
    assert here.requests == [] and there.requests == []


RAW_LOCATIONS = {
    "backslash_path": ("/\\127.0.0.2:R2/steal", "invalid_location"),
    "backslash_userinfo": ("http://localhost:SP\\@127.0.0.2:R2/", "invalid_location"),
    "tab_in_host": ("http://local\thost:SP/x", "invalid_location"),
    "second_listener": ("http://127.0.0.2:R2/steal?access_key=" + API_KEY, "cross_origin"),
}


@pytest.mark.parametrize(("location", "reason"), RAW_LOCATIONS.values(),
                         ids=RAW_LOCATIONS.keys())
async def test_raw_redirect_location_is_returned_not_followed(
    location: str, reason: str, client: httpx2.AsyncClient,
    recorder_factory: Callable[..., RequestRecorder],
    scripted: Callable[..., ScriptedServer],
) -> None:
    """A Location that httpbin would normalise, sent raw, is returned and leaks nothing."""
    here, there = recorder_factory("127.0.0.1"), recorder_factory("127.0.0.2")
    server = scripted({})
    target = (location.replace("R1", str(here.port)).replace("R2", str(there.port))
              .replace("SP", str(server.port)))
    server.routes["/r"] = (302, {"Location": target}, b"")
    provider = make_provider(bearer(), port=server.port)
    sender = Sender(client, timeout=10.0, allow_insecure_http=True)
    prepared = prepare(provider, "GET", f"http://localhost:{server.port}/r",
                       allow_insecure_http=True)
    result = await sender.send(prepared, provider, credential(api_key=API_KEY))
    assert result.unfollowed_redirect is not None
    assert result.unfollowed_redirect.reason == reason
    assert API_KEY not in repr(result.to_dict())
    assert here.requests == [] and there.requests == []
