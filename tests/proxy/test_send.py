"""Sending through the real httpbin (and a recording listener): injection, redirects, limits."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx2
import pytest

from alter_mcp.errors import BlockedDestinationError, InvalidInputError, ProviderAPIError
from alter_mcp.providers.schema import Injection, InjectionKind, Provider
from alter_mcp.proxy.guard import prepare
from alter_mcp.proxy.result import ProxyResult
from alter_mcp.proxy.send import Sender
from alter_mcp.redaction import REDACTED, Secret
from tests.peers.httpbin import HttpbinPeer
from tests.peers.process import free_port
from tests.peers.recorder import RequestRecorder
from tests.proxy.conftest import (
    API_KEY,
    PASSWORD,
    SUITE_TIME,
    USER,
    base,
    bearer,
    botocore_authorization,
    credential,
    make_provider,
)

pytestmark = pytest.mark.peers

HEADER = Injection(kind=InjectionKind.HEADER, name="X-Api-Key", format="token {api_key}")
QUERY = Injection(kind=InjectionKind.QUERY, name="key", format="{api_key}")
BASIC = Injection(kind=InjectionKind.BASIC, username="{username}", password="{password}")
SIGV4 = Injection(kind=InjectionKind.AWS_SIGV4)
AWS_FIELDS = ("access_key_id", "secret_access_key", "region", "session_token")
AWS = {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "region": "eu-west-1",
       "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
       "session_token": "IQoJb3JpZ2luX2VjEXAMPLE+session/token=="}


async def _call(
    sender: Sender, provider: Provider, url: str, values: dict[str, str] | None = None,
    method: str = "GET", **kwargs: Any,
) -> ProxyResult:
    prepared = prepare(provider, method, url, allow_insecure_http=True, **kwargs)
    secrets = credential(**(values if values is not None else {"api_key": API_KEY}))
    return await sender.send(prepared, provider, secrets)


def _leaks(result: ProxyResult, *values: str) -> bool:
    shown = repr(result.to_dict())
    return any(v in shown for v in values)


async def test_send_bearer_accepted_by_httpbin_bearer(httpbin: HttpbinPeer, sender: Sender) -> None:
    """httpbin's /bearer accepts the injected bearer token; its echo of it is scrubbed."""
    result = await _call(sender, make_provider(bearer(), port=httpbin.port),
                         f"{base(httpbin)}/bearer")
    assert result.status == 200
    assert result.body == {"authenticated": True, "token": REDACTED}


async def test_send_basic_accepted_by_httpbin_basic_auth(
    httpbin: HttpbinPeer, sender: Sender,
) -> None:
    """httpbin's /basic-auth/u/p accepts the injected username and password."""
    provider = make_provider(BASIC, port=httpbin.port, fields=("username", "password"),
                             public=("username",))
    result = await _call(sender, provider, f"{base(httpbin)}/basic-auth/{{u}}/{{p}}",
                         {"username": USER, "password": PASSWORD},
                         path_params={"u": USER, "p": PASSWORD})
    assert result.status == 200
    assert result.body == {"authenticated": True, "user": USER}
    assert not _leaks(result, PASSWORD)


async def test_send_header_shown_by_httpbin_headers_with_value_scrubbed(
    httpbin: HttpbinPeer, sender: Sender,
) -> None:
    """/headers receives the custom header; its echo of the whole value is redacted."""
    result = await _call(sender, make_provider(HEADER, port=httpbin.port),
                         f"{base(httpbin)}/headers", headers={"X-Trace": "t-1"})
    assert result.body["headers"]["X-Api-Key"] == REDACTED
    assert result.body["headers"]["X-Trace"] == "t-1"
    assert not _leaks(result, API_KEY)


async def test_send_query_seen_by_httpbin_get_and_scrubbed(
    httpbin: HttpbinPeer, sender: Sender,
) -> None:
    """/get receives the query credential after the caller's parameters; its echo is scrubbed."""
    result = await _call(sender, make_provider(QUERY, port=httpbin.port),
                         f"{base(httpbin)}/get", query_params={"q": "a b"})
    assert result.body["args"] == {"q": "a b", "key": REDACTED}
    assert result.body["url"].endswith(f"/get?q=a%20b&key={REDACTED}")
    assert not _leaks(result, API_KEY)


async def test_send_basic_echo_scrubbed_in_base64_form(
    httpbin: HttpbinPeer, sender: Sender,
) -> None:
    """The base64 pair echoed by /headers is redacted, not only the raw password."""
    provider = make_provider(BASIC, port=httpbin.port, fields=("username", "password"))
    result = await _call(sender, provider, f"{base(httpbin)}/headers",
                         {"username": USER, "password": PASSWORD})
    assert result.body["headers"]["Authorization"] == f"Basic {REDACTED}"
    assert not _leaks(result, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())


async def test_send_sigv4_headers_reach_httpbin(httpbin: HttpbinPeer, sender: Sender) -> None:
    """A SigV4 provider's request carries X-Amz-Date, the token and a scrubbed Authorization."""
    provider = make_provider(SIGV4, port=httpbin.port, aws_service="execute-api",
                             fields=AWS_FIELDS, public=("region",))
    result = await _call(sender, provider, f"{base(httpbin)}/headers", AWS)
    seen = result.body["headers"]
    assert seen["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={REDACTED}/")
    assert "/eu-west-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date;" in (
        seen["Authorization"])
    assert seen["X-Amz-Security-Token"] == REDACTED
    assert not _leaks(result, *(v for k, v in AWS.items() if k != "region"))


@pytest.mark.parametrize(
    ("rules", "values", "expected"),
    [
        ((bearer(),), {"api_key": API_KEY}, {"authorization": f"Bearer {API_KEY}"}),
        ((HEADER,), {"api_key": API_KEY}, {"x-api-key": f"token {API_KEY}"}),
        ((BASIC,), {"username": USER, "password": PASSWORD}, {"authorization": "Basic " + (
            base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())}),
    ],
    ids=["bearer", "header", "basic"],
)
async def test_send_injects_exact_bytes_seen_by_listener(
    rules: tuple[Injection, ...], values: dict[str, str], expected: dict[str, str],
    recorder: RequestRecorder, sender: Sender,
) -> None:
    """The listener receives exactly the header the rule describes, and no other credential."""
    provider = make_provider(*rules, port=recorder.port, fields=tuple(values))
    await _call(sender, provider, f"http://localhost:{recorder.port}/x", values)
    (seen,) = recorder.requests
    for name, value in expected.items():
        assert seen.header(name) == value
    assert seen.header("cookie") is None


async def test_send_query_exact_bytes_seen_by_listener(
    recorder: RequestRecorder, sender: Sender,
) -> None:
    """The query credential is appended in strict percent-encoding."""
    provider = make_provider(QUERY, port=recorder.port)
    await _call(sender, provider, f"http://localhost:{recorder.port}/x?a=1",
                {"api_key": "k/+= y"})
    assert recorder.requests[0].path == "/x?a=1&key=k%2F%2B%3D%20y"


async def test_send_sigv4_verifies_with_botocore_on_received_request(
    recorder: RequestRecorder, client: httpx2.AsyncClient,
) -> None:
    """botocore, given the request as the listener received it, computes the same signature."""
    pytest.importorskip("botocore")
    provider = make_provider(SIGV4, port=recorder.port, aws_service="execute-api",
                             fields=AWS_FIELDS)
    fixed = Sender(client, allow_insecure_http=True, clock=lambda: SUITE_TIME)
    await _call(fixed, provider, f"http://localhost:{recorder.port}/prod/{{id}}", AWS,
                method="POST", path_params={"id": "a b"}, query_params={"z": "1", "a": "2"},
                json={"x": 1})
    (seen,) = recorder.requests
    headers = {k: v for k, v in seen.headers
               if k.lower() not in ("authorization", "x-amz-date", "x-amz-security-token",
                                    "content-length", "accept-encoding")}
    url = f"http://localhost:{recorder.port}{seen.path}"
    assert seen.header("authorization") == botocore_authorization(
        "POST", url, headers, seen.body, "execute-api", AWS["session_token"],
        access_key=AWS["access_key_id"], secret_key=AWS["secret_access_key"])


async def test_send_follows_same_origin_redirect_with_credential(
    httpbin: HttpbinPeer, sender: Sender,
) -> None:
    """A same-origin redirect is followed and the credential is injected again."""
    result = await _call(sender, make_provider(bearer(), port=httpbin.port),
                         f"{base(httpbin)}/redirect-to", query_params={"url": "/headers"})
    assert result.status == 200
    assert result.body["headers"]["Authorization"] == f"Bearer {REDACTED}"
    assert result.redirects == (f"{base(httpbin)}/redirect-to?url=%2Fheaders",)
    assert result.url == f"{base(httpbin)}/headers"


async def test_send_303_turns_post_into_get_without_body(
    httpbin: HttpbinPeer, sender: Sender,
) -> None:
    """After a 303 the next hop is a GET with no body and no Content-Type."""
    result = await _call(sender, make_provider(bearer(), port=httpbin.port),
                         f"{base(httpbin)}/redirect-to", method="POST", json={"a": 1},
                         query_params={"url": "/anything", "status_code": 303})
    assert (result.status, result.method) == (200, "GET")
    assert result.body["method"] == "GET"
    assert result.body["data"] == ""
    assert "Content-Type" not in result.body["headers"]


@pytest.mark.parametrize("status", [307, 308])
async def test_send_307_and_308_keep_method_and_body(
    status: int, httpbin: HttpbinPeer, sender: Sender,
) -> None:
    """After a 307 or 308 the method and body are sent again, with the credential."""
    result = await _call(sender, make_provider(bearer(), port=httpbin.port),
                         f"{base(httpbin)}/redirect-to", method="POST", json={"a": 1},
                         query_params={"url": "/anything", "status_code": status})
    assert result.body["method"] == "POST"
    assert result.body["json"] == {"a": 1}
    assert result.body["headers"]["Authorization"] == f"Bearer {REDACTED}"


async def test_send_stops_after_three_redirects(httpbin: HttpbinPeer, sender: Sender) -> None:
    """The fourth same-origin redirect is returned with reason too_many_redirects."""
    result = await _call(sender, make_provider(bearer(), port=httpbin.port),
                         f"{base(httpbin)}/redirect/5")
    assert result.status == 302
    assert len(result.redirects) == 3
    assert result.unfollowed_redirect is not None
    assert result.unfollowed_redirect.reason == "too_many_redirects"
    assert result.unfollowed_redirect.location == f"{base(httpbin)}/relative-redirect/1"


async def test_send_chain_leaving_origin_is_cut_where_it_leaves(
    httpbin: HttpbinPeer, sender: Sender, recorder_factory: Callable[..., RequestRecorder],
) -> None:
    """A same-origin hop is followed, the next cross-origin hop is returned unfollowed."""
    there = recorder_factory("127.0.0.2")
    inner = f"/redirect-to?url=http://127.0.0.2:{there.port}/steal"
    result = await _call(sender, make_provider(bearer(), port=httpbin.port),
                         f"{base(httpbin)}/redirect-to", query_params={"url": inner})
    assert result.status == 302
    assert len(result.redirects) == 1
    assert result.unfollowed_redirect is not None
    assert result.unfollowed_redirect.location == f"http://127.0.0.2:{there.port}/steal"
    assert there.requests == []


async def test_send_timeout_raises_provider_error_without_retry(
    httpbin: HttpbinPeer, client: httpx2.AsyncClient,
) -> None:
    """/delay/3 with a 0.5 s timeout fails fast with reason timeout and no chained exception."""
    sender = Sender(client, timeout=0.5, allow_insecure_http=True)
    started = time.monotonic()
    with pytest.raises(ProviderAPIError) as caught:
        await _call(sender, make_provider(bearer(), port=httpbin.port), f"{base(httpbin)}/delay/3")
    assert time.monotonic() - started < 2.5
    assert caught.value.details["reason"] == "timeout"
    assert "0.5 seconds" in caught.value.message
    assert caught.value.__cause__ is None and caught.value.__context__ is None


async def test_send_per_request_timeout_overrides_default(
    httpbin: HttpbinPeer, sender: Sender,
) -> None:
    """A per-request timeout replaces the sender's default."""
    provider = make_provider(bearer(), port=httpbin.port)
    prepared = prepare(provider, "GET", f"{base(httpbin)}/delay/2", allow_insecure_http=True)
    with pytest.raises(ProviderAPIError, match=r"0\.3 seconds"):
        await sender.send(prepared, provider, credential(api_key=API_KEY), timeout=0.3)


@pytest.mark.parametrize("seconds", [0.0, -1.0, 601.0])
async def test_send_refuses_out_of_range_timeout(
    seconds: float, httpbin: HttpbinPeer, sender: Sender,
) -> None:
    """A timeout outside (0, 600] seconds is an input error naming the timeout field."""
    provider = make_provider(bearer(), port=httpbin.port)
    prepared = prepare(provider, "GET", f"{base(httpbin)}/get", allow_insecure_http=True)
    with pytest.raises(InvalidInputError) as caught:
        await sender.send(prepared, provider, credential(api_key=API_KEY), timeout=seconds)
    assert caught.value.field == "timeout"


async def test_send_connect_failure_raises_provider_error(sender: Sender) -> None:
    """Nothing listening gives ProviderAPIError with reason connect_error."""
    port = free_port()
    with pytest.raises(ProviderAPIError) as caught:
        await _call(sender, make_provider(bearer(), port=port), f"http://localhost:{port}/")
    assert caught.value.details["reason"] == "connect_error"


async def test_send_caps_binary_body_and_marks_truncated(
    httpbin: HttpbinPeer, sender: Sender,
) -> None:
    """A 5000-byte body read with a 1024-byte cap is summarised as 1024 bytes, truncated."""
    provider = make_provider(bearer(), port=httpbin.port)
    prepared = prepare(provider, "GET", f"{base(httpbin)}/bytes/5000", allow_insecure_http=True)
    result = await sender.send(prepared, provider, credential(api_key=API_KEY), max_bytes=1024)
    assert result.truncated and result.size == 1024
    assert result.body_kind == "binary"
    assert result.body["size"] == 1024 and len(result.body["sha256"]) == 64
    assert result.to_dict()["truncated"] is True


async def test_send_caps_streamed_text_body(
    httpbin: HttpbinPeer, client: httpx2.AsyncClient,
) -> None:
    """A long HTML page is cut at the sender's cap and kept as text."""
    sender = Sender(client, max_bytes=2048, allow_insecure_http=True)
    provider = make_provider(bearer(), port=httpbin.port)
    result = await _call(sender, provider, f"{base(httpbin)}/html")
    assert (result.body_kind, result.truncated, result.size) == ("text", True, 2048)
    assert result.body.startswith("<!DOCTYPE html>")


async def test_send_body_exactly_at_cap_is_not_truncated(
    httpbin: HttpbinPeer, sender: Sender,
) -> None:
    """A body of exactly max_bytes is complete."""
    provider = make_provider(bearer(), port=httpbin.port)
    prepared = prepare(provider, "GET", f"{base(httpbin)}/range/1024", allow_insecure_http=True)
    result = await sender.send(prepared, provider, credential(api_key=API_KEY), max_bytes=1024)
    assert not result.truncated and result.size == 1024


async def test_send_drops_set_cookie_and_keeps_nothing_in_shared_jar(
    httpbin: HttpbinPeer, sender: Sender, client: httpx2.AsyncClient,
) -> None:
    """Set-Cookie never reaches the caller and the shared client keeps no cookie."""
    result = await _call(sender, make_provider(bearer(), port=httpbin.port),
                         f"{base(httpbin)}/cookies/set", query_params={"session": "abcdef"})
    assert "set-cookie" not in result.headers
    assert len(client.cookies.jar) == 0


async def test_send_scrubs_echoed_credential_in_allowed_headers(
    httpbin: HttpbinPeer, sender: Sender,
) -> None:
    """A provider echoing the credential in ETag or Link shows it redacted, other headers drop."""
    provider = make_provider(HEADER, port=httpbin.port)
    result = await _call(sender, provider, f"{base(httpbin)}/response-headers", query_params={
        "ETag": f'"{API_KEY}"', "Link": f"<https://x.test/?k={API_KEY}>; rel=next",
        "X-Echo": API_KEY, "Set-Cookie": "sid=1",
    })
    assert result.headers["etag"] == f'"{REDACTED}"'
    assert REDACTED in result.headers["link"]
    assert "x-echo" not in result.headers and "set-cookie" not in result.headers
    assert not _leaks(result, API_KEY)


async def test_send_scrubs_credential_in_text_body(httpbin: HttpbinPeer, sender: Sender) -> None:
    """A text body quoting the credential (decoded by /base64) shows it redacted."""
    encoded = base64.urlsafe_b64encode(f"your key is {API_KEY}!".encode()).decode()
    result = await _call(sender, make_provider(HEADER, port=httpbin.port),
                         f"{base(httpbin)}/base64/{{v}}", path_params={"v": encoded})
    assert result.body == f"your key is {REDACTED}!"


async def test_send_head_returns_no_body(httpbin: HttpbinPeer, sender: Sender) -> None:
    """A HEAD request gives status and headers with an empty body."""
    result = await _call(sender, make_provider(bearer(), port=httpbin.port),
                         f"{base(httpbin)}/get", method="HEAD")
    assert (result.status, result.body_kind, result.body) == (200, "empty", None)


async def test_send_shares_one_client_across_concurrent_calls(
    httpbin: HttpbinPeer, sender: Sender,
) -> None:
    """Twenty concurrent calls on one client each get their own answer."""
    provider = make_provider(bearer(), port=httpbin.port)
    statuses: dict[int, Any] = {}

    async def one(i: int) -> None:
        result = await _call(sender, provider, f"{base(httpbin)}/get", query_params={"i": i})
        statuses[i] = result.body["args"]["i"]

    async with anyio.create_task_group() as group:
        for i in range(20):
            group.start_soon(one, i)
    assert statuses == {i: str(i) for i in range(20)}


async def test_send_keeps_credential_out_of_http_client_logs(
    httpbin: HttpbinPeer, sender: Sender, caplog: pytest.LogCaptureFixture,
) -> None:
    """httpx2 and httpcore2 debug logs show neither the query credential nor an echo of it."""
    caplog.set_level(logging.DEBUG)
    provider = make_provider(QUERY, port=httpbin.port)
    await _call(sender, provider, f"{base(httpbin)}/response-headers",
                query_params={"ETag": API_KEY})
    # The Sender dispatches on the client's transport, so httpx2's own "HTTP Request" line is
    # not logged; httpcore2 logs every step of the exchange, headers included.
    assert "receive_response_headers" in caplog.text and "send_request_headers" in caplog.text
    assert API_KEY not in caplog.text


async def test_httpx2_request_log_line_is_redacted(
    httpbin: HttpbinPeer, sender: Sender, client: httpx2.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another user of the shared client still gets httpx2's request line redacted."""
    caplog.set_level(logging.INFO)
    await client.get(f"{base(httpbin)}/get?api_key={API_KEY}")
    assert "HTTP Request" in caplog.text and API_KEY not in caplog.text


async def test_sender_refuses_plain_http_unless_allowed(
    httpbin: HttpbinPeer, client: httpx2.AsyncClient,
) -> None:
    """A sender not in test mode refuses a request prepared for plain http."""
    provider = make_provider(bearer(), port=httpbin.port)
    prepared = prepare(provider, "GET", f"{base(httpbin)}/get", allow_insecure_http=True)
    with pytest.raises(BlockedDestinationError):
        await Sender(client).send(prepared, provider, {"api_key": Secret(API_KEY)})


async def test_sender_refuses_client_that_follows_redirects() -> None:
    """A shared client that follows redirects by itself is rejected at construction."""
    async with httpx2.AsyncClient(follow_redirects=True) as client:
        with pytest.raises(ValueError, match="follow_redirects"):
            Sender(client)
