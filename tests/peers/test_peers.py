"""The peers themselves work: real OAuth flows against oidc-provider, httpbin, the recorder."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Mapping
from typing import Any

import httpx2
import pytest

from tests.peers.fixtures import (
    CONF_APP,
    CONF_APP_SECRET,
    CONF_POST,
    CONF_POST_SECRET,
    PUBLIC_APP,
    default_oidc_config,
)
from tests.peers.httpbin import HttpbinPeer
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer, callback_params, pkce_pair
from tests.peers.process import PeerProcess, PeerStartError, free_port
from tests.peers.recorder import RequestRecorder

pytestmark = pytest.mark.peers

# Registered as http://127.0.0.1:8765/oauth/callback on native clients: any loopback port works.
CALLBACK = "http://127.0.0.1:40123/oauth/callback"


def _basic(auth: tuple[str, str] | None) -> httpx2.Auth | Any:
    return httpx2.BasicAuth(*auth) if auth else httpx2.USE_CLIENT_DEFAULT


async def _token(peer: OidcProviderPeer, data: dict[str, str],
                 auth: tuple[str, str] | None = None) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=10, trust_env=False) as client:
        return await client.post(peer.token_endpoint, data=data,
                                 auth=_basic(auth))


async def test_discovery_and_issuer(oidc_peer: OidcProviderPeer) -> None:
    doc = oidc_peer.discovery()
    assert oidc_peer.issuer == f"http://127.0.0.1:{oidc_peer.port}"
    assert doc["issuer"] == oidc_peer.issuer
    assert doc["token_endpoint"] == oidc_peer.token_endpoint
    assert doc["introspection_endpoint"] == oidc_peer.introspection_endpoint
    assert doc["revocation_endpoint"] == oidc_peer.revocation_endpoint
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True


async def test_code_flow_pkce_refresh_rotation_and_reuse(
    oidc_peer: OidcProviderPeer, browser_agent: BrowserlessAgent,
) -> None:
    verifier, challenge = pkce_pair()
    url = oidc_peer.authorize_url(client_id=PUBLIC_APP, redirect_uri=CALLBACK,
                                  code_challenge=challenge, scope="openid email profile",
                                  state="st-1", login_hint="bob")
    final = await browser_agent.follow(url, stop_at_prefix=CALLBACK)
    params = callback_params(final)
    assert params["state"] == "st-1"
    assert params["iss"] == oidc_peer.issuer
    assert any("/interaction/" in u for u in browser_agent.history)

    # A wrong verifier is refused; oidc-provider consumes the code only on success.
    exchange = {"grant_type": "authorization_code", "code": params["code"],
                "redirect_uri": CALLBACK, "client_id": PUBLIC_APP}
    bad = await _token(oidc_peer, {**exchange, "code_verifier": pkce_pair()[0]})
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_grant"

    resp = await _token(oidc_peer, {**exchange, "code_verifier": verifier})
    assert resp.status_code == 200, resp.text
    tokens = resp.json()
    assert tokens["token_type"].lower() == "bearer"
    assert tokens["access_token"]
    assert tokens["refresh_token"]
    assert tokens["id_token"]
    assert "offline_access" not in tokens["scope"]  # refresh token without offline_access

    # Claims via userinfo: sub/email/name from findAccount (account id = login_hint).
    async with httpx2.AsyncClient(trust_env=False) as client:
        me = await client.get(oidc_peer.userinfo_endpoint,
                              headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.json() == {"sub": "bob", "email": "bob@example.test", "email_verified": True,
                         "name": "Bob"}

    # Rotation: a new refresh token each time.
    old_rt = tokens["refresh_token"]
    r1 = await _token(oidc_peer, {"grant_type": "refresh_token", "refresh_token": old_rt,
                                  "client_id": PUBLIC_APP})
    assert r1.status_code == 200, r1.text
    new_rt = r1.json()["refresh_token"]
    assert new_rt != old_rt

    # Reuse of the rotated token -> invalid_grant, and the whole family is revoked.
    reuse = await _token(oidc_peer, {"grant_type": "refresh_token", "refresh_token": old_rt,
                                     "client_id": PUBLIC_APP})
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    after = await _token(oidc_peer, {"grant_type": "refresh_token", "refresh_token": new_rt,
                                     "client_id": PUBLIC_APP})
    assert after.json()["error"] == "invalid_grant"

    # Single-use code.
    replay = await _token(oidc_peer, {**exchange, "code_verifier": verifier})
    assert replay.json()["error"] == "invalid_grant"

    assert oidc_peer.stats()["token"] == {"authorization_code": 3, "refresh_token": 3}


async def test_missing_pkce_is_refused(
    oidc_peer: OidcProviderPeer, browser_agent: BrowserlessAgent,
) -> None:
    url = oidc_peer.authorize_url(client_id=PUBLIC_APP, redirect_uri=CALLBACK,
                                  code_challenge="x")
    url = url.replace("&code_challenge=x&code_challenge_method=S256", "")
    params = callback_params(await browser_agent.follow(url, stop_at_prefix=CALLBACK))
    assert params["error"] == "invalid_request"


async def test_unregistered_redirect_uri_is_not_followed(
    oidc_peer: OidcProviderPeer, browser_agent: BrowserlessAgent,
) -> None:
    evil = "http://127.0.0.2:40123/oauth/callback"
    url = oidc_peer.authorize_url(client_id=PUBLIC_APP, redirect_uri=evil,
                                  code_challenge=pkce_pair()[1])
    resp = await browser_agent.follow_response(url, stop_at_prefix=evil)
    assert resp.status_code == 400
    assert "redirect_uri" in resp.text
    assert not any(u.startswith(evil) for u in browser_agent.history)


@pytest.mark.parametrize(
    ("client_id", "secret", "method"),
    [(CONF_APP, CONF_APP_SECRET, "client_secret_basic"),
     (CONF_POST, CONF_POST_SECRET, "client_secret_post")],
)
async def test_confidential_clients_revocation_and_introspection(
    oidc_peer: OidcProviderPeer, browser_agent: BrowserlessAgent,
    client_id: str, secret: str, method: str,
) -> None:
    tokens = await oidc_peer.code_flow(browser_agent, client_id=client_id,
                                       redirect_uri=CALLBACK, client_secret=secret,
                                       auth_method=method, scope="openid")
    rt = tokens["refresh_token"]
    info = oidc_peer.introspect(rt, CONF_APP, CONF_APP_SECRET)
    assert info["active"] is True
    assert info["client_id"] == client_id
    assert info["sub"] == "alice"

    # Wrong secret at the token endpoint -> invalid_client.
    bad = await _token(oidc_peer, {"grant_type": "refresh_token", "refresh_token": rt},
                       auth=(client_id, "wrong"))
    assert bad.json()["error"] == "invalid_client"

    auth = (client_id, secret) if method == "client_secret_basic" else None
    data = {"token": rt, "token_type_hint": "refresh_token"}
    if auth is None:
        data.update(client_id=client_id, client_secret=secret)
    async with httpx2.AsyncClient(trust_env=False) as client:
        revoked = await client.post(oidc_peer.revocation_endpoint, data=data,
                                    auth=_basic(auth))
    assert revoked.status_code == 200
    assert (await oidc_peer.aintrospect(rt, CONF_APP, CONF_APP_SECRET))["active"] is False

    stats = oidc_peer.stats()
    assert stats["token"] == {"authorization_code": 1, "refresh_token": 1}
    assert stats["revocation"] == 1
    assert stats["introspection"] == 2
    await oidc_peer.areset_stats()
    assert (await oidc_peer.astats())["token"] == {}


async def test_login_hint_deny(
    oidc_peer: OidcProviderPeer, browser_agent: BrowserlessAgent,
) -> None:
    url = oidc_peer.authorize_url(client_id=PUBLIC_APP, redirect_uri=CALLBACK,
                                  code_challenge=pkce_pair()[1], state="s", login_hint="deny")
    params = callback_params(await browser_agent.follow(url, stop_at_prefix=CALLBACK))
    assert params["error"] == "access_denied"
    assert params["state"] == "s"
    assert "code" not in params


async def test_follow_response_requests_the_callback(
    oidc_peer: OidcProviderPeer, browser_agent: BrowserlessAgent, recorder: RequestRecorder,
) -> None:
    callback = recorder.url("/oauth/callback")
    url = oidc_peer.authorize_url(client_id=PUBLIC_APP, redirect_uri=callback,
                                  code_challenge=pkce_pair()[1], state="z")
    resp = await browser_agent.follow_response(url, stop_at_prefix=callback)
    assert resp.status_code == 200
    [req] = recorder.requests
    assert req.path.startswith("/oauth/callback?")
    assert req.query["state"] == ["z"]
    assert "code" in req.query


async def test_factory_custom_config_jwt_resource_and_short_ttl(
    oidc_factory: Callable[[Mapping[str, Any]], OidcProviderPeer],
    browser_agent: BrowserlessAgent,
) -> None:
    resource = "http://127.0.0.1:9999/mcp"
    config = copy.deepcopy(default_oidc_config(["http://127.0.0.1/cb"],
                                               application_type="web"))
    config["ttl"]["AccessToken"] = 5
    config["scopes"] = ["api:read"]
    config["resources"] = {resource: {"scope": "mcp:tools", "accessTokenFormat": "jwt"}}
    peer = oidc_factory(config)
    assert peer.stats()["token"] == {}

    tokens = await peer.code_flow(browser_agent, client_id=PUBLIC_APP,
                                  redirect_uri="http://127.0.0.1/cb", scope="openid mcp:tools",
                                  resource=resource)
    assert tokens["expires_in"] <= 5
    assert tokens["access_token"].count(".") == 2  # a JWT for the resource
    assert "mcp:tools" in tokens["scope"]

    # A web client gets exact redirect URI matching (the port counts).
    url = peer.authorize_url(client_id=PUBLIC_APP, redirect_uri="http://127.0.0.1:1/cb",
                             code_challenge=pkce_pair()[1])
    resp = await browser_agent.follow_response(url, stop_at_prefix="http://127.0.0.1:1/")
    assert resp.status_code == 400


async def test_interactive_mode_serves_the_login_form(
    oidc_factory: Callable[[Mapping[str, Any]], OidcProviderPeer],
    browser_agent: BrowserlessAgent,
) -> None:
    peer = oidc_factory({**default_oidc_config(), "interactive": True})
    url = peer.authorize_url(client_id=PUBLIC_APP, redirect_uri=CALLBACK,
                             code_challenge=pkce_pair()[1])
    login_page = await browser_agent.follow_response(url)
    assert login_page.status_code == 200
    assert "/interaction/" in str(login_page.url)
    assert 'name="login"' in login_page.text

    # Fill the forms the way a browser would: login, then consent.
    sent = await browser_agent.post_form(str(login_page.url),
                                         {"prompt": "login", "login": "carol", "password": "x"})
    assert sent.status_code == 303
    consent_page = await browser_agent.follow_response(str(sent.url.join(sent.headers["location"])))
    assert 'value="consent"' in consent_page.text
    sent = await browser_agent.post_form(str(consent_page.url), {"prompt": "consent"})
    final = await browser_agent.follow(str(sent.url.join(sent.headers["location"])),
                                       stop_at_prefix=CALLBACK)
    assert "code" in callback_params(final)


async def test_agent_refuses_non_loopback(browser_agent: BrowserlessAgent) -> None:
    with pytest.raises(ValueError, match="non-loopback"):
        await browser_agent.get("http://example.com/")


async def test_httpbin_headers(httpbin_peer: HttpbinPeer) -> None:
    async with httpx2.AsyncClient(trust_env=False) as client:
        resp = await client.get(httpbin_peer.url("/headers"), headers={"X-Probe": "p-1"})
        bearer = await client.get(httpbin_peer.url("/bearer"),
                                  headers={"Authorization": "Bearer tok"})
    assert resp.status_code == 200
    assert resp.json()["headers"]["X-Probe"] == "p-1"
    assert bearer.json() == {"authenticated": True, "token": "tok"}


async def test_recorder_records_on_two_loopback_origins(
    recorder: RequestRecorder, recorder_factory: Callable[..., RequestRecorder],
) -> None:
    other = recorder_factory("127.0.0.2")
    async with httpx2.AsyncClient(trust_env=False) as client:
        r1 = await client.post(recorder.url("/p?q=1"), content=b"body-secret",
                               headers={"Authorization": "Bearer leak-me"})
        r2 = await client.get(other.url("/x"))
    assert r1.status_code == r2.status_code == 200
    [req] = await recorder.await_requests(1)
    assert (req.method, req.path, req.body) == ("POST", "/p?q=1", b"body-secret")
    assert req.header("authorization") == "Bearer leak-me"
    assert recorder.saw("leak-me")
    assert recorder.saw(b"body-secret")
    assert not other.saw("leak-me")
    assert other.base_url.startswith("http://127.0.0.2:")


def test_process_reports_early_death() -> None:
    proc = PeerProcess([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"])
    with pytest.raises(PeerStartError, match="boom"):
        proc.start(ready_pattern="never", timeout=5)
    assert proc.returncode == 3


def test_process_waits_for_port_and_stops_by_pid() -> None:
    port = free_port()
    proc = PeerProcess([sys.executable, "-m", "http.server", "-b", "127.0.0.1", str(port)])
    proc.start(port=port, timeout=10)
    assert proc.running
    assert proc.stop() is not None
    assert not proc.running
