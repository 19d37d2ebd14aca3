"""vault.request end to end against real httpbin: injection, answers, audit, and leaks."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alter_mcp.config import load_settings
from alter_mcp.errors import (
    AmbiguousGrantError,
    BlockedDestinationError,
    GrantNotFoundError,
    InvalidInputError,
    PolicyViolationError,
    ProviderAPIError,
    RateLimitedError,
)
from alter_mcp.models import Identity, SystemPrincipal, UserPrincipal
from alter_mcp.outbound import ApprovalRequest
from alter_mcp.store import AuditFilter
from alter_mcp.vault import AlterVault
from tests.peers.httpbin import HttpbinPeer

pytestmark = pytest.mark.peers


def catalog_for(port: int) -> dict[str, Any]:
    """Return catalogue additions whose API host is the local httpbin."""
    common = {"api_hosts": ["localhost"], "api_ports": [port]}
    return {
        "bin-bearer": {**common, "name": "Bin bearer", "auth_kind": "api_key",
                       "injection": [{"kind": "bearer", "format": "{api_key}"}],
                       "secret_fields": [{"name": "api_key", "label": "Key"}]},
        "bin-header": {**common, "name": "Bin header", "auth_kind": "api_key",
                       "injection": [{"kind": "header", "name": "X-Api-Key",
                                      "format": "key={api_key}"},
                                     {"kind": "header", "name": "X-App-Id",
                                      "format": "{app_id}"}],
                       "secret_fields": [{"name": "api_key", "label": "Key"},
                                         {"name": "app_id", "label": "App", "secret": False}]},
        "bin-query": {**common, "name": "Bin query", "auth_kind": "api_key",
                      "injection": [{"kind": "query", "name": "api_key", "format": "{api_key}"}],
                      "secret_fields": [{"name": "api_key", "label": "Key"}]},
        "bin-basic": {**common, "name": "Bin basic", "auth_kind": "basic",
                      "injection": [{"kind": "basic", "username": "{user}",
                                     "password": "{password}"}],
                      "secret_fields": [{"name": "user", "label": "User", "secret": False},
                                        {"name": "password", "label": "Password"}]},
    }


@pytest.fixture
async def bin_vault(tmp_path: Path, master_key: str,
                    httpbin_peer: HttpbinPeer) -> AsyncIterator[AlterVault]:
    """Yield a system vault whose catalogue includes httpbin-backed providers."""
    settings = load_settings(
        {"ALTER_MCP_DATA_DIR": str(tmp_path / "d"), "ALTER_MCP_MASTER_KEY": master_key,
         "ALTER_MCP_ALLOW_INSECURE_HTTP": "true", "ALTER_MCP_REQUEST_TIMEOUT": "5"},
        catalog=catalog_for(httpbin_peer.port))
    async with AlterVault(settings, caller="request-tests") as vault:
        yield vault


async def grant_for(vault: AlterVault, provider: str, fields: dict[str, str],
                    principal: Any = None, label: str = "t") -> str:
    """Create a managed secret and a grant of it; return the grant id."""
    secret = await vault.create_managed_secret(provider, fields, label=label)
    grant = await vault.create_managed_secret_grant(
        secret.secret_id, principal=principal or SystemPrincipal(), label=label)
    return grant.grant_id


def base(vault: AlterVault, httpbin_peer: HttpbinPeer, path: str) -> str:
    """Return the httpbin URL under the provider's host name."""
    return f"http://localhost:{httpbin_peer.port}{path}"


async def test_request_bearer_injected_and_scrubbed(bin_vault: AlterVault,
                                                    httpbin_peer: HttpbinPeer) -> None:
    """A bearer credential reaches httpbin and its echo comes back redacted."""
    token = "tok-" + secrets.token_urlsafe(16)
    gid = await grant_for(bin_vault, "bin-bearer", {"api_key": token})
    result = await bin_vault.request("GET", base(bin_vault, httpbin_peer, "/bearer"),
                                     grant_id=gid)
    assert result.status == 200 and result.json()["authenticated"] is True
    echoed = await bin_vault.request("GET", base(bin_vault, httpbin_peer, "/headers"),
                                     grant_id=gid)
    assert echoed.json()["headers"]["Authorization"] == "Bearer [redacted]"
    assert token not in repr(echoed.to_dict())


async def test_request_custom_headers_query_and_basic(bin_vault: AlterVault,
                                                      httpbin_peer: HttpbinPeer) -> None:
    """Header templates, query parameters and HTTP basic are injected as the rules say."""
    key = "k-" + secrets.token_hex(8)
    gid = await grant_for(bin_vault, "bin-header", {"api_key": key, "app_id": "app-7"})
    got = (await bin_vault.request("GET", base(bin_vault, httpbin_peer, "/headers"),
                                   grant_id=gid)).json()["headers"]
    assert got["X-App-Id"] == "app-7" and "[redacted]" in got["X-Api-Key"]
    qid = await grant_for(bin_vault, "bin-query", {"api_key": key})
    args = (await bin_vault.request("GET", base(bin_vault, httpbin_peer, "/get"),
                                    grant_id=qid, query_params={"page": "2"})).json()["args"]
    assert args["page"] == "2" and args["api_key"] == "[redacted]"
    bid = await grant_for(bin_vault, "bin-basic", {"user": "u1", "password": key})
    ok = await bin_vault.request("GET", base(bin_vault, httpbin_peer, f"/basic-auth/u1/{key}"),
                                 grant_id=bid)
    assert ok.status == 200 and ok.json()["authenticated"] is True
    wrong = await bin_vault.request("GET", base(bin_vault, httpbin_peer, "/basic-auth/u1/nope"),
                                    grant_id=bid)
    assert wrong.status == 401


async def test_request_provider_resolution(bin_vault: AlterVault,
                                           httpbin_peer: HttpbinPeer) -> None:
    """By provider: none is GrantNotFound with a connect hint, several are ambiguous."""
    url = base(bin_vault, httpbin_peer, "/get")
    with pytest.raises(GrantNotFoundError) as missing:
        await bin_vault.request("GET", url, provider="bin-bearer")
    assert "connect" in (missing.value.hint or "")
    await grant_for(bin_vault, "bin-bearer", {"api_key": "a-1111"}, label="one")
    assert (await bin_vault.request("GET", url, provider="bin-bearer")).status == 200
    await grant_for(bin_vault, "bin-bearer", {"api_key": "a-2222"}, label="two")
    with pytest.raises(AmbiguousGrantError) as amb:
        await bin_vault.request("GET", url, provider="bin-bearer")
    assert len(amb.value.candidates) == 2
    ok = await bin_vault.request("GET", url, provider="bin-bearer", account="two")
    assert ok.status == 200
    with pytest.raises(InvalidInputError):
        await bin_vault.request("GET", url)


async def test_request_destination_refused_before_credential(
    bin_vault: AlterVault, httpbin_peer: HttpbinPeer
) -> None:
    """Another host is refused with a typed error and audited as denied."""
    gid = await grant_for(bin_vault, "bin-bearer", {"api_key": "a-3333"})
    with pytest.raises(BlockedDestinationError):
        await bin_vault.request("GET", f"http://127.0.0.2:{httpbin_peer.port}/get", grant_id=gid)
    events = await bin_vault.audit_log.events(AuditFilter(action="request"))
    assert events[-1].outcome.value == "denied" and events[-1].error == "blocked_destination"


async def test_request_timeout_and_cap(tmp_path: Path, master_key: str,
                                       httpbin_peer: HttpbinPeer) -> None:
    """A slow provider times out with a typed error; a large body is capped and marked."""
    settings = load_settings(
        {"ALTER_MCP_DATA_DIR": str(tmp_path / "d"), "ALTER_MCP_MASTER_KEY": master_key,
         "ALTER_MCP_ALLOW_INSECURE_HTTP": "true", "ALTER_MCP_RESPONSE_MAX_BYTES": "4096"},
        catalog=catalog_for(httpbin_peer.port))
    async with AlterVault(settings) as vault:
        gid = await grant_for(vault, "bin-bearer", {"api_key": "a-4444"})
        with pytest.raises(ProviderAPIError) as slow:
            await vault.request("GET", base(vault, httpbin_peer, "/delay/3"), grant_id=gid,
                                timeout=0.5)
        assert slow.value.details.get("reason") == "timeout"
        big = await vault.request("GET", base(vault, httpbin_peer, "/bytes/50000"),
                                  grant_id=gid)
        assert big.result.truncated and big.result.size <= 4096


async def test_request_constructor_timeout_bounds_every_request(
        tmp_path: Path, master_key: str, httpbin_peer: HttpbinPeer) -> None:
    """AlterVault(timeout=…) bounds each request of that vault, over the configured timeout."""
    settings = load_settings(
        {"ALTER_MCP_DATA_DIR": str(tmp_path / "d"), "ALTER_MCP_MASTER_KEY": master_key,
         "ALTER_MCP_ALLOW_INSECURE_HTTP": "true", "ALTER_MCP_REQUEST_TIMEOUT": "30"},
        catalog=catalog_for(httpbin_peer.port))
    async with AlterVault(settings, timeout=0.5) as vault:
        gid = await grant_for(vault, "bin-bearer", {"api_key": "a-5555"})
        with pytest.raises(ProviderAPIError) as slow:
            await vault.request("GET", base(vault, httpbin_peer, "/delay/2"), grant_id=gid)
    assert slow.value.details.get("reason") == "timeout"


async def test_request_raise_for_status_never_shows_the_credential(
        bin_vault: AlterVault, httpbin_peer: HttpbinPeer) -> None:
    """raise_for_status on a 404 names status and URL, with a query-injected key redacted."""
    key = "q-key-0123456789abcdef"
    gid = await grant_for(bin_vault, "bin-query", {"api_key": key})
    missing = await bin_vault.request("GET", base(bin_vault, httpbin_peer, "/status/404"),
                                      grant_id=gid)
    with pytest.raises(ProviderAPIError) as caught:
        missing.raise_for_status()
    assert caught.value.status == 404 and "/status/404" in str(caught.value)
    shown = [str(caught.value), repr(caught.value), str(caught.value.to_dict()), missing.text,
             str(missing.headers)]
    assert all(key not in text for text in shown)


async def test_request_rate_limited_carries_retry_after(bin_vault: AlterVault,
                                                        httpbin_peer: HttpbinPeer) -> None:
    """A 429 with Retry-After raises RateLimitedError carrying it, without a retry."""
    gid = await grant_for(bin_vault, "bin-bearer", {"api_key": "a-5555"})
    with pytest.raises(RateLimitedError) as limited:
        await bin_vault.request("GET", base(bin_vault, httpbin_peer, "/status/429"),
                                grant_id=gid)
    assert limited.value.status == 429  # Retry-After parsing: tests/proxy/test_answer.py
    events = await bin_vault.audit_log.events(AuditFilter(action="request"))
    assert events[-1].error == "rate_limited"


async def test_request_isolation_other_user(bin_vault: AlterVault,
                                            httpbin_peer: HttpbinPeer) -> None:
    """Another user cannot use a user's grant, by id or by provider."""
    alice = UserPrincipal(issuer="https://idp.test", subject="alice", label="a")
    gid = await grant_for(bin_vault, "bin-bearer", {"api_key": "a-6666"}, principal=alice)
    bob = bin_vault.with_identity(Identity(principal=UserPrincipal(issuer="https://idp.test",
                                                                   subject="bob")))
    url = base(bin_vault, httpbin_peer, "/get")
    with pytest.raises(GrantNotFoundError):
        await bob.request("GET", url, grant_id=gid)
    with pytest.raises(GrantNotFoundError):
        await bob.request("GET", url, provider="bin-bearer")
    as_alice = bin_vault.with_identity(Identity(principal=alice))
    assert (await as_alice.request("GET", url, provider="bin-bearer")).status == 200


async def test_request_policy_and_approval(tmp_path: Path, master_key: str,
                                           httpbin_peer: HttpbinPeer) -> None:
    """Policy denies by rule; approval runs the request once on accept and denies otherwise."""
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[[rule]]\nname = "read-only"\nproviders = ["bin-bearer"]\nmethods = ["GET", "POST"]\n'
        '[[rule]]\nname = "ask-for-posts"\nproviders = ["bin-bearer"]\n'
        'allow_paths = ["/get", "/post"]\n'
        '[[rule]]\nname = "approve-post"\nproviders = ["bin-bearer"]\n'
        'require_approval = true\nparams = [{path = "amount", op = "lte", value = 100}]\n')
    settings = load_settings(
        {"ALTER_MCP_DATA_DIR": str(tmp_path / "d"), "ALTER_MCP_MASTER_KEY": master_key,
         "ALTER_MCP_ALLOW_INSECURE_HTTP": "true", "ALTER_MCP_POLICY_FILE": str(policy)},
        catalog=catalog_for(httpbin_peer.port))
    asked: list[ApprovalRequest] = []

    async def accept(req: ApprovalRequest) -> bool:
        asked.append(req)
        return True

    async def decline(req: ApprovalRequest) -> bool:
        return False

    async with AlterVault(settings) as vault:
        gid = await grant_for(vault, "bin-bearer", {"api_key": "a-7777"})
        with pytest.raises(PolicyViolationError) as denied:
            await vault.request("DELETE", base(vault, httpbin_peer, "/delete"), grant_id=gid)
        assert denied.value.rule == "read-only"
        with pytest.raises(PolicyViolationError) as too_much:
            await vault.request("POST", base(vault, httpbin_peer, "/post"), grant_id=gid,
                                json={"amount": 500}, approver=accept)
        assert too_much.value.rule == "approve-post" and not asked
        with pytest.raises(PolicyViolationError) as no_client:
            await vault.request("POST", base(vault, httpbin_peer, "/post"), grant_id=gid,
                                json={"amount": 5})
        assert "approval" in no_client.value.message
        with pytest.raises(PolicyViolationError):
            await vault.request("POST", base(vault, httpbin_peer, "/post"), grant_id=gid,
                                json={"amount": 5}, approver=decline)
        ok = await vault.request("POST", base(vault, httpbin_peer, "/post"), grant_id=gid,
                                 json={"amount": 5}, approver=accept, reason="pay")
        assert ok.status == 200 and len(asked) == 1 and asked[0].reason == "pay"
        events = await vault.audit_log.events(AuditFilter(action="request"))
        assert [e.outcome.value for e in events] == ["denied"] * 4 + ["allowed"]
        assert events[-1].detail.get("approved_by") == ["approve-post"]


async def test_request_rate_limit_counts_from_audit(tmp_path: Path, master_key: str,
                                                    httpbin_peer: HttpbinPeer) -> None:
    """A per-grant rate limit allows N requests in the window and denies the next."""
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\nname = "three-per-minute"\n'
                      'rate_limit = {limit = 3, window_seconds = 60}\n')
    settings = load_settings(
        {"ALTER_MCP_DATA_DIR": str(tmp_path / "d"), "ALTER_MCP_MASTER_KEY": master_key,
         "ALTER_MCP_ALLOW_INSECURE_HTTP": "true", "ALTER_MCP_POLICY_FILE": str(policy)},
        catalog=catalog_for(httpbin_peer.port))
    async with AlterVault(settings) as vault:
        gid = await grant_for(vault, "bin-bearer", {"api_key": "a-8888"})
        for _ in range(3):
            assert (await vault.request("GET", base(vault, httpbin_peer, "/get"),
                                        grant_id=gid)).status == 200
        with pytest.raises(PolicyViolationError) as limited:
            await vault.request("GET", base(vault, httpbin_peer, "/get"), grant_id=gid)
        assert limited.value.rule == "three-per-minute"


async def test_request_secrets_absent_from_audit_and_db(bin_vault: AlterVault,
                                                        httpbin_peer: HttpbinPeer) -> None:
    """After requests that echo the credential, no form of it is in the database files."""
    token = "tok-" + secrets.token_urlsafe(20)
    gid = await grant_for(bin_vault, "bin-query", {"api_key": token})
    await bin_vault.request("GET", base(bin_vault, httpbin_peer, "/get"), grant_id=gid)
    await bin_vault.request("GET", base(bin_vault, httpbin_peer, "/anything"), grant_id=gid,
                            query_params={"echo": "x"})
    data_dir = bin_vault.settings.data_dir
    blob = b"".join(p.read_bytes() for p in Path(data_dir).iterdir() if p.is_file())
    for form in (token.encode(), base64.b64encode(token.encode())):
        assert form not in blob
    events = await bin_vault.audit_log.events(AuditFilter(action="request"))
    assert all(token not in (e.url or "") for e in events)


async def test_request_rate_limit_holds_under_concurrency(tmp_path: Path, master_key: str,
                                                          httpbin_peer: HttpbinPeer) -> None:
    """Of 40 concurrent requests under a limit of 4, exactly 4 are sent."""
    import asyncio

    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\nname = "four"\nrate_limit = {limit = 4, window_seconds = 60}\n')
    settings = load_settings(
        {"ALTER_MCP_DATA_DIR": str(tmp_path / "d"), "ALTER_MCP_MASTER_KEY": master_key,
         "ALTER_MCP_ALLOW_INSECURE_HTTP": "true", "ALTER_MCP_POLICY_FILE": str(policy)},
        catalog=catalog_for(httpbin_peer.port))
    async with AlterVault(settings) as vault:
        gid = await grant_for(vault, "bin-bearer", {"api_key": "a-9999"})
        results = await asyncio.gather(*(
            vault.request("GET", base(vault, httpbin_peer, "/get"), grant_id=gid)
            for _ in range(40)), return_exceptions=True)
        sent = [r for r in results if not isinstance(r, BaseException)]
        denied = [r for r in results if isinstance(r, PolicyViolationError)]
        assert len(sent) == 4 and len(denied) == 36
        assert all(d.rule == "four" for d in denied)
