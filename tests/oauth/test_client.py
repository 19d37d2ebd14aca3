"""Provider differences at the token endpoint, against a real loopback listener.

oidc-provider speaks plain RFC 6749; the GitHub, Slack and Salesforce shapes are served by the
request recorder, which answers a fixed body and keeps what it received.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx2
import jwt
import pytest

from alter_mcp.errors import InvalidInputError, ProviderAPIError
from alter_mcp.oauth import InvalidGrantError, OAuthClientConfig, OAuthHttp, TokenEndpointError
from alter_mcp.oauth.tokens import TokenSet
from alter_mcp.providers import Provider, load_catalog
from alter_mcp.redaction import Secret
from tests.peers.process import free_port
from tests.peers.recorder import RequestRecorder

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SECRET = "client-secret-with/odd+chars"
CLIENT = OAuthClientConfig(provider_id="acme", client_id="acme app", client_secret=Secret(SECRET),
                           scopes=None, redirect_uri=None, source="settings")


def provider(token_url: str, **oauth: Any) -> Provider:
    """Return a provider whose token endpoint is ``token_url``."""
    spec = {"authorization_url": "https://acme.example/authorize", "token_url": token_url,
            "account_source": "token_response", "account_field": "user.id"} | oauth
    return Provider.model_validate({
        "id": "acme", "name": "Acme", "auth_kind": "oauth2", "api_hosts": ["api.acme.example"],
        "injection": [{"kind": "bearer"}], "oauth": spec})


@pytest.fixture
async def oauth_http() -> AsyncIterator[OAuthHttp]:
    """Return the OAuth HTTP client over a fresh httpx2 client."""
    async with httpx2.AsyncClient() as client:
        yield OAuthHttp(client, timeout=5)


def form(request_body: bytes) -> dict[str, str]:
    """Decode a form-encoded request body."""
    return dict(httpx2.QueryParams(request_body.decode()).items())


async def exchange(oauth_http: OAuthHttp, prov: Provider) -> Any:
    """Exchange a fixed code."""
    return await oauth_http.exchange_code(
        prov, CLIENT, code=Secret("the-code-123"), verifier=Secret("v" * 43),
        redirect_uri="http://127.0.0.1:1/oauth/callback", requested=("read", "write"), now=NOW)


async def test_client_parses_form_encoded_github_style_response(
    oauth_http: OAuthHttp, recorder_factory: Callable[..., RequestRecorder],
) -> None:
    """A form-encoded answer with comma-separated scopes and no expiry is understood."""
    rec = recorder_factory(body=b"access_token=gho_abc123&scope=repo%2Cgist&token_type=bearer",
                           content_type="application/x-www-form-urlencoded")
    prov = provider(rec.url("/token"), scope_separator=",", quirks=["no_expiry"],
                    token_endpoint_auth="client_secret_post", account_source="userinfo",
                    userinfo_url=rec.url("/user"))
    result = await exchange(oauth_http, prov)
    assert result.tokens.access_token == Secret("gho_abc123")
    assert result.tokens.scopes == ("repo", "gist") and result.tokens.expires_at is None
    sent = rec.requests[0]
    assert sent.header("accept") == "application/json"
    assert form(sent.body)["client_secret"] == SECRET and sent.header("authorization") is None
    assert form(sent.body)["code_verifier"] == "v" * 43


async def test_client_reads_slack_nested_user_token_and_account(
    oauth_http: OAuthHttp, recorder_factory: Callable[..., RequestRecorder],
) -> None:
    """Slack's user token nested in ``authed_user`` is the one stored; the id is read."""
    body = {"ok": True, "access_token": "xoxb-bot", "authed_user": {
        "id": "U123", "access_token": "xoxp-user", "scope": "search:read",
        "refresh_token": "xoxe-1", "expires_in": 43200}, "user": {"id": "U123"}}
    rec = recorder_factory(body=json.dumps(body).encode())
    prov = provider(rec.url("/token"), quirks=["slack_authed_user", "ok_false_errors"],
                    account_field="authed_user.id")
    result = await exchange(oauth_http, prov)
    assert result.tokens.access_token == Secret("xoxp-user")
    assert result.tokens.refresh_token == Secret("xoxe-1")
    assert result.tokens.scopes == ("search:read",)
    assert result.account == "U123"
    assert result.tokens.expires_at is not None
    assert (result.tokens.expires_at - NOW).total_seconds() == 43200


async def test_client_treats_ok_false_as_error(
    oauth_http: OAuthHttp, recorder_factory: Callable[..., RequestRecorder],
) -> None:
    """An HTTP 200 with ``ok: false`` is an OAuth error, not a token."""
    rec = recorder_factory(body=b'{"ok": false, "error": "invalid_code"}')
    prov = provider(rec.url("/token"), quirks=["ok_false_errors"])
    with pytest.raises(TokenEndpointError) as caught:
        await exchange(oauth_http, prov)
    assert caught.value.oauth_error == "invalid_code"


async def test_client_sends_basic_auth_and_json_body_when_asked(
    oauth_http: OAuthHttp, recorder_factory: Callable[..., RequestRecorder],
) -> None:
    """Basic client auth form-encodes id and secret; the JSON-body quirk sends JSON."""
    rec = recorder_factory(body=b'{"access_token": "n-1", "token_type": "bearer",'
                                b' "owner": {"user": {"id": "u-9"}}}')
    prov = provider(rec.url("/token"), quirks=["json_token_request"],
                    token_endpoint_auth="client_secret_basic", account_field="owner.user.id")
    result = await exchange(oauth_http, prov)
    sent = rec.requests[0]
    scheme, _, value = (sent.header("authorization") or "").partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(value).decode() == "acme+app:client-secret-with%2Fodd%2Bchars"
    assert json.loads(sent.body)["grant_type"] == "authorization_code"
    assert result.account == "u-9" and result.tokens.expires_at is None


async def test_client_refresh_without_refresh_token_keeps_ours(
    oauth_http: OAuthHttp, recorder_factory: Callable[..., RequestRecorder],
) -> None:
    """A refresh answer without a refresh token keeps ours (Salesforce does not rotate)."""
    rec = recorder_factory(body=b'{"access_token": "00D-2", "instance_url": '
                                b'"https://acme.my.salesforce.com", "scope": "api"}')
    prov = provider(rec.url("/token"))
    old = TokenSet(access_token=Secret("00D-1"), obtained_at=NOW,
                   refresh_token=Secret("rt-keep-me"), requested_scopes=("api",))
    new = await oauth_http.refresh(prov, CLIENT, old, now=NOW)
    assert new.access_token == Secret("00D-2") and new.refresh_token == Secret("rt-keep-me")
    assert new.requested_scopes == ("api",) and new.expires_at is None
    assert form(rec.requests[0].body)["refresh_token"] == "rt-keep-me"


@pytest.mark.parametrize(("instance_url", "host"), [
    ("https://acme.my.salesforce.com", "acme.my.salesforce.com"),
    ("https://acme--dev.sandbox.my.salesforce.com/", "acme--dev.sandbox.my.salesforce.com"),
])
async def test_client_reads_salesforce_instance_host_from_token_response(
    oauth_http: OAuthHttp, instance_url: str, host: str,
) -> None:
    """The shipped Salesforce entry takes the grant's host from the token's instance_url."""
    salesforce = load_catalog().get("salesforce")
    tokens = TokenSet(access_token=Secret("00D-1"), obtained_at=NOW)
    values = await oauth_http.connection_values(
        salesforce, {"access_token": "00D-1", "instance_url": instance_url}, tokens)
    assert values == {"instance": host}
    assert salesforce.hosts_for(values) == (host, "login.salesforce.com")


@pytest.mark.parametrize("instance_url", [
    "https://evil.example.com", "http://acme.my.salesforce.com", "https://my.salesforce.com",
    "https://acme.my.salesforce.com.evil.example", "https://user@acme.my.salesforce.com",
])
async def test_client_refuses_instance_url_outside_salesforce(
    oauth_http: OAuthHttp, instance_url: str,
) -> None:
    """An instance_url off Salesforce's own domain fails the connect with a typed error."""
    salesforce = load_catalog().get("salesforce")
    tokens = TokenSet(access_token=Secret("00D-1"), obtained_at=NOW)
    with pytest.raises(InvalidInputError) as caught:
        await oauth_http.connection_values(
            salesforce, {"access_token": "00D-1", "instance_url": instance_url}, tokens)
    assert caught.value.field == "connection.instance"


async def test_client_fails_connect_when_the_tenant_value_is_missing(
    oauth_http: OAuthHttp,
) -> None:
    """A token response without instance_url names the missing field instead of guessing."""
    salesforce = load_catalog().get("salesforce")
    tokens = TokenSet(access_token=Secret("00D-1"), obtained_at=NOW)
    with pytest.raises(ProviderAPIError, match="instance_url"):
        await oauth_http.connection_values(salesforce, {"access_token": "00D-1"}, tokens)


async def test_client_invalid_grant_message_redacts_echoed_token(
    oauth_http: OAuthHttp, recorder_factory: Callable[..., RequestRecorder],
) -> None:
    """A provider echoing the refresh token in its error does not put it in our message."""
    rec = recorder_factory(status=400, body=b'{"error": "invalid_grant", '
                                            b'"error_description": "token rt-secret-777 reused"}')
    old = TokenSet(access_token=Secret("at-1"), obtained_at=NOW,
                   refresh_token=Secret("rt-secret-777"))
    with pytest.raises(InvalidGrantError) as caught:
        await oauth_http.refresh(provider(rec.url("/token")), CLIENT, old, now=NOW)
    text = str(caught.value) + repr(caught.value) + json.dumps(caught.value.to_dict())
    assert "rt-secret-777" not in text and SECRET not in text and "reused" in text


async def test_client_unreachable_endpoint_is_provider_api_error(oauth_http: OAuthHttp) -> None:
    """A token endpoint that refuses connections gives a typed error without the code."""
    prov = provider(f"http://127.0.0.1:{free_port()}/token")
    with pytest.raises(ProviderAPIError) as caught:
        await exchange(oauth_http, prov)
    assert "could not be reached" in str(caught.value) and "the-code-123" not in str(
        caught.value)


async def test_client_reads_account_from_id_token_for_this_client_only(
    oauth_http: OAuthHttp, recorder_factory: Callable[..., RequestRecorder],
) -> None:
    """The id_token's claim names the account only when its audience is this client."""
    mine = jwt.encode({"sub": "s-1", "email": "a@acme.example", "aud": "acme app"}, "k" * 32)
    other = jwt.encode({"sub": "s-2", "email": "b@acme.example", "aud": "other"}, "k" * 32)
    for token, expected in ((mine, "a@acme.example"), (other, None)):
        rec = recorder_factory(body=json.dumps({"access_token": "at", "id_token": token,
                                                "expires_in": 60}).encode())
        prov = provider(rec.url("/token"), account_source="id_token", account_field="email")
        assert (await exchange(oauth_http, prov)).account == expected
