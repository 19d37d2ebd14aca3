"""Classifying provider answers: 401, insufficient scope, 429 with Retry-After, and the rest."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from alter_mcp.proxy.answer import (
    AnswerKind,
    AuthChallenge,
    classify,
    parse_challenges,
    parse_retry_after,
)
from alter_mcp.proxy.guard import prepare
from alter_mcp.proxy.result import ProxyResult, build_result
from alter_mcp.proxy.send import Sender
from tests.peers.httpbin import HttpbinPeer
from tests.proxy.conftest import (
    API_KEY,
    ScriptedServer,
    base,
    bearer,
    credential,
    json_body,
    make_provider,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _result(status: int, headers: list[tuple[str, str]] | None = None) -> ProxyResult:
    return build_result(status=status, method="GET", url="https://api.example.com/",
                        raw_headers=headers or [], data=b"", truncated=False, secrets=())


async def _get(sender: Sender, port: int, url: str) -> ProxyResult:
    provider = make_provider(bearer(), port=port)
    prepared = prepare(provider, "GET", url, allow_insecure_http=True)
    return await sender.send(prepared, provider, credential(api_key=API_KEY))


def test_parse_challenges_reads_bearer_parameters() -> None:
    """A Bearer challenge's quoted and token parameters are parsed, names lowercased."""
    (challenge,) = parse_challenges(['Bearer realm="api", Error=insufficient_scope, '
                                     'scope="repo read:org", error_description="need \\"repo\\""'])
    assert challenge.scheme == "bearer"
    assert challenge.params["error"] == "insufficient_scope"
    assert challenge.params["error_description"] == 'need "repo"'
    assert challenge.scopes == ("repo", "read:org")


def test_parse_challenges_splits_several_schemes() -> None:
    """Several challenges in one header, and token68 values, are told apart."""
    challenges = parse_challenges(['Basic realm="x", Bearer, Negotiate YWJj==',
                                   "DPoP algs=ES256"])
    assert [c.scheme for c in challenges] == ["basic", "bearer", "negotiate", "dpop"]
    assert challenges[0].params == {"realm": "x"}
    assert challenges[2].token68 == "YWJj=="
    assert challenges[3].params == {"algs": "ES256"}


def test_parse_challenges_stops_at_garbage_without_raising() -> None:
    """A malformed header yields what was understood before the damage."""
    assert parse_challenges(['Bearer realm="x", @@@']) == (
        AuthChallenge(scheme="bearer", params={"realm": "x"}),)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7", 7.0), (" 120 ", 120.0), ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),
     ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0), ("soon", None), ("-5", None), (None, None)],
)
def test_parse_retry_after_reads_seconds_and_http_dates(
    value: str | None, seconds: float | None,
) -> None:
    """Delay-seconds and HTTP-dates become seconds from now; a past date is zero."""
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    ("status", "kind"),
    [(200, AnswerKind.OK), (204, AnswerKind.OK), (302, AnswerKind.REDIRECT),
     (401, AnswerKind.UNAUTHORIZED), (403, AnswerKind.CLIENT_ERROR),
     (404, AnswerKind.CLIENT_ERROR), (429, AnswerKind.RATE_LIMITED),
     (500, AnswerKind.SERVER_ERROR), (503, AnswerKind.SERVER_ERROR)],
)
def test_classify_maps_statuses(status: int, kind: AnswerKind) -> None:
    """Plain statuses map to their kinds."""
    assert classify(_result(status), now=NOW).kind is kind


def test_classify_insufficient_scope_needs_the_challenge() -> None:
    """A 403 is insufficient_scope only when its Bearer challenge says so, with the scopes."""
    answer = classify(_result(403, [("WWW-Authenticate",
                                     'Bearer error="insufficient_scope", scope="a b"')]))
    assert (answer.kind, answer.scopes, answer.error) == (
        AnswerKind.INSUFFICIENT_SCOPE, ("a", "b"), "insufficient_scope")


def test_classify_401_with_insufficient_scope_skips_refresh() -> None:
    """A 401 whose challenge says insufficient_scope is classified as a scope problem."""
    answer = classify(_result(401, [("WWW-Authenticate", 'Bearer error="insufficient_scope"')]))
    assert answer.kind is AnswerKind.INSUFFICIENT_SCOPE


def test_classify_401_keeps_invalid_token_error() -> None:
    """A 401 with error=invalid_token is unauthorized and carries the error code."""
    answer = classify(_result(401, [("WWW-Authenticate",
                                     'Bearer error="invalid_token", error_description="expired"')]))
    assert (answer.kind, answer.error, answer.error_description) == (
        AnswerKind.UNAUTHORIZED, "invalid_token", "expired")


@pytest.mark.peers
async def test_classify_httpbin_401_is_unauthorized(httpbin: HttpbinPeer, sender: Sender) -> None:
    """httpbin's /status/401 is unauthorized, with its Basic challenge parsed."""
    result = await _get(sender, httpbin.port, f"{base(httpbin)}/status/401")
    assert classify(result).kind is AnswerKind.UNAUTHORIZED
    assert result.challenges == (AuthChallenge(scheme="basic", params={"realm": "Fake Realm"}),)
    assert "www-authenticate" not in result.headers


@pytest.mark.peers
async def test_classify_httpbin_429_without_retry_after(
    httpbin: HttpbinPeer, sender: Sender,
) -> None:
    """httpbin's /status/429 is rate_limited with no Retry-After."""
    answer = classify(await _get(sender, httpbin.port, f"{base(httpbin)}/status/429"))
    assert (answer.kind, answer.retry_after) == (AnswerKind.RATE_LIMITED, None)


async def test_classify_429_with_retry_after_seconds_and_date(
    sender: Sender, scripted: Callable[..., ScriptedServer],
) -> None:
    """A real 429 carries its Retry-After, in seconds or as an HTTP date."""
    server = scripted({
        "/seconds": (429, {"Retry-After": "7", "Content-Type": "application/json"},
                     json_body({"message": "slow down"})),
        "/date": (429, {"Retry-After": "Sun, 01 Mar 2026 12:01:00 GMT"}, b""),
    })
    seconds = await _get(sender, server.port, f"http://localhost:{server.port}/seconds")
    answer = classify(seconds, now=NOW)
    assert (answer.kind, answer.retry_after) == (AnswerKind.RATE_LIMITED, 7.0)
    assert seconds.headers["retry-after"] == "7"
    dated = await _get(sender, server.port, f"http://localhost:{server.port}/date")
    assert classify(dated, now=NOW).retry_after == 60.0


async def test_classify_403_insufficient_scope_over_the_wire(
    sender: Sender, scripted: Callable[..., ScriptedServer],
) -> None:
    """A real 403 with a Bearer insufficient_scope challenge names the scopes required."""
    challenge = 'Bearer realm="api", error="insufficient_scope", scope="repo admin:org"'
    server = scripted({"/x": (403, {"WWW-Authenticate": challenge}, b"")})
    answer = classify(await _get(sender, server.port, f"http://localhost:{server.port}/x"))
    assert (answer.kind, answer.scopes) == (AnswerKind.INSUFFICIENT_SCOPE, ("repo", "admin:org"))


async def test_challenge_echoing_credential_is_scrubbed(
    sender: Sender, scripted: Callable[..., ScriptedServer],
) -> None:
    """A challenge that quotes the token back shows it redacted."""
    server = scripted({"/x": (401, {"WWW-Authenticate":
                                    f'Bearer error="invalid_token", token="{API_KEY}"'}, b"")})
    result = await _get(sender, server.port, f"http://localhost:{server.port}/x")
    assert API_KEY not in repr(result.to_dict())
    assert classify(result).error == "invalid_token"
