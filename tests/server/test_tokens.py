"""``JwtVerifier`` against the real identity provider, with a frozen clock where time matters."""

from __future__ import annotations

import json
import socket
import time

import httpx2
import pytest

from alter_mcp.errors import (
    AuthenticationError,
    ConfigurationError,
    IdentityProviderUnavailableError,
)
from alter_mcp.tokens import JwtVerifier
from tests.peers.mockidp import MockIdpPeer, b64url

AUD = "http://127.0.0.1:9/mcp"


def _verifier(idp: MockIdpPeer, **kwargs: object) -> JwtVerifier:
    return JwtVerifier(issuer=idp.issuer, audience=AUD, **kwargs)  # type: ignore[arg-type]


async def _reason(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(AuthenticationError) as info:
        await verifier.verify(token)
    return str(info.value.details["reason"])


async def test_tokens_identity_groups_and_label_from_claims(mockidp: MockIdpPeer) -> None:
    """The identity carries issuer and sub, groups from the configured claim, a label."""
    token = mockidp.token(sub="alice", aud=AUD, roles="eng ops", email="alice@example.test")
    verified = await _verifier(mockidp, groups_claim="roles").verify(token)
    principal = verified.identity.principal
    assert (principal.issuer, principal.subject, principal.label) == (  # type: ignore[union-attr]
        mockidp.issuer, "alice", "alice@example.test")
    assert verified.identity.groups == frozenset({"eng", "ops"})
    assert token not in repr(verified) and verified.fingerprint.startswith("sha256:")


async def test_tokens_unreachable_keys_are_unavailable_not_a_bad_token(
        mockidp: MockIdpPeer) -> None:
    """A JWKS that cannot be fetched raises IdentityProviderUnavailableError, which is not an
    AuthenticationError: the token was never checked."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/jwks"
        verifier = _verifier(mockidp, jwks_uri=url)
        with pytest.raises(IdentityProviderUnavailableError) as info:
            await verifier.verify(mockidp.token(sub="a", aud=AUD))
    assert not isinstance(info.value, AuthenticationError)
    assert info.value.url == url and "could not be fetched" in info.value.message


async def test_tokens_discovers_jwks_uri_from_issuer(mockidp: MockIdpPeer) -> None:
    """Without a JWKS URI the verifier reads it from the issuer's discovery document."""
    verifier = _verifier(mockidp)
    assert (await verifier.verify(mockidp.token(sub="a", aud=AUD))).identity
    mismatched = JwtVerifier(issuer=mockidp.issuer + "/", audience=AUD)
    assert await _reason(mismatched, mockidp.token(sub="a", aud=AUD)) == "discovery_mismatch"


async def test_tokens_time_claims_use_clock_and_leeway(mockidp: MockIdpPeer) -> None:
    """exp, nbf and iat are judged by the injected clock, with the leeway and no more."""
    now = time.time()
    token = mockidp.token(sub="a", aud=AUD, exp=int(now) + 100)
    assert await _verifier(mockidp, clock=lambda: now + 120, leeway=30).verify(token)
    assert await _reason(_verifier(mockidp, clock=lambda: now + 140, leeway=30), token) == \
        "expired"
    assert await _reason(_verifier(mockidp, clock=lambda: now - 300, leeway=30), token) in (
        "not_yet_valid", "issued_in_future")


async def test_tokens_unknown_kid_refetches_at_most_once_per_interval(
    mockidp: MockIdpPeer,
) -> None:
    """A stream of unknown kids triggers one JWKS re-fetch per interval, not one per token."""
    fetched: list[str] = []

    async def count(request: httpx2.Request) -> None:
        fetched.append(str(request.url))

    async with httpx2.AsyncClient(event_hooks={"request": [count]}, trust_env=False) as http:
        verifier = _verifier(mockidp, jwks_uri=mockidp.jwks_uri, http=http,
                             refresh_interval=60)
        await verifier.verify(mockidp.token(sub="a", aud=AUD))
        for _ in range(5):
            forged = MockIdpPeer.forge_unknown_key(mockidp.token(sub="a", aud=AUD))
            assert await _reason(verifier, forged) == "unknown_kid"
    assert fetched == [mockidp.jwks_uri]


async def test_tokens_algorithm_must_fit_the_key(mockidp: MockIdpPeer) -> None:
    """A header claiming ES256 (or HS256) over the issuer's RSA key is refused."""
    header, payload, sig = MockIdpPeer.parts(mockidp.token(sub="a", aud=AUD))
    verifier = _verifier(mockidp)
    for alg in ("ES256", "HS256", "none", "RS1"):
        forged = f"{b64url(json.dumps({**header, 'alg': alg}).encode())}." \
                 f"{b64url(json.dumps(payload).encode())}.{sig}"
        assert await _reason(verifier, forged) in ("algorithm_mismatch", "algorithm_not_allowed")


def test_tokens_symmetric_algorithms_are_not_configurable() -> None:
    """Configuring HS256 (or none) is a configuration error naming the setting."""
    with pytest.raises(ConfigurationError) as info:
        JwtVerifier(issuer="http://127.0.0.1:1", audience=AUD, algorithms=["HS256"])
    assert info.value.setting == "ALTER_MCP_IDP_ALGORITHMS"
