"""Introspection benchmark against a real oidc-provider started here: what the cache saves.

    python bench/introspection.py [--calls 200] [--rounds 7]

Four variants verify access tokens: (a) *uncached*, ``IntrospectionVerifier`` with cache TTL 0
and one shared HTTP client (what the vault does with the cache off: every call asks the
provider); (b) *fresh-client*, the same with a new HTTP client per introspection (what the
verifier did without an injected client); (c) *cached*, the default 60 s TTL, one token
verified ``--calls`` times; (d) *jwt*, ``JwtVerifier`` on the same provider's JWT access
tokens (keys cached), for scale. Each round
runs every variant once, in a rotating order; prints the median and spread (min to max) of
the per-call latency over rounds and each variant's ratio to (a) by median, plus the requests
that reached the introspection endpoint per round.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx2
from pydantic import SecretStr

from alter_mcp.tokens import IntrospectionVerifier, JwtVerifier
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer

HOST, REDIRECT = "bench-host", "http://127.0.0.1:9/callback"
RS, RS_SECRET = "bench-rs", "bench-rs-secret-0123456789abcdef"
OPAQUE, JWT = "http://127.0.0.1:9/opaque", "http://127.0.0.1:9/jwt"
CONFIG = {
    "clients": [{"client_id": HOST, "token_endpoint_auth_method": "none",
                 "redirect_uris": [REDIRECT], "grant_types": ["authorization_code"],
                 "response_types": ["code"]},
                {"client_id": RS, "client_secret": RS_SECRET, "grant_types": [],
                 "response_types": [], "redirect_uris": []}],
    "scopes": ["vault:read"],
    "resources": {OPAQUE: {"scope": "vault:read", "accessTokenFormat": "opaque"},
                  JWT: {"scope": "vault:read", "accessTokenFormat": "jwt"}},
}


async def token_for(peer: OidcProviderPeer, resource: str) -> str:
    """Return an access token for ``resource`` from a real code + PKCE flow."""
    async with BrowserlessAgent() as agent:
        tokens = await peer.code_flow(agent, client_id=HOST, redirect_uri=REDIRECT,
                                      scope="openid vault:read", resource=resource)
    return str(tokens["access_token"])


async def per_call(verify: Callable[[], Awaitable[object]], calls: int) -> float:
    """Return the mean seconds per ``verify()`` over ``calls`` sequential calls."""
    await verify()  # warm: discovery, keys, first introspection
    start = time.perf_counter()
    for _ in range(calls):
        await verify()
    return (time.perf_counter() - start) / calls


async def main(calls: int, rounds: int) -> None:
    """Run every variant ``rounds`` times and print medians, spreads and ratios."""
    with OidcProviderPeer().start(CONFIG) as peer:
        opaque, jwt_token = await token_for(peer, OPAQUE), await token_for(peer, JWT)

        shared = httpx2.AsyncClient(timeout=10)

        def variant(name: str) -> Callable[[], Awaitable[object]]:
            """Return one fresh verifier's call (its cache lives for the variant's run)."""
            if name == "jwt":
                jwt_verifier = JwtVerifier(issuer=peer.issuer, audience=JWT)
                return lambda: jwt_verifier.verify(jwt_token)
            verifier = IntrospectionVerifier(
                issuer=peer.issuer, audience=OPAQUE, client_id=RS,
                client_secret=SecretStr(RS_SECRET), cache_ttl=60 if name == "cached" else 0,
                http=None if name == "fresh-client" else shared)
            return lambda: verifier.verify(opaque)

        names = ["uncached", "fresh-client", "cached", "jwt"]
        results: dict[str, list[float]] = {name: [] for name in names}
        asked: dict[str, list[int]] = {name: [] for name in names}
        for round_ in range(rounds):
            for name in names[round_ % 4:] + names[:round_ % 4]:
                call = variant(name)
                await peer.areset_stats()
                results[name].append(await per_call(call, calls))
                asked[name].append((await peer.astats())["introspection"])
        await shared.aclose()
    base = statistics.median(results["uncached"])
    print(f"{calls} verifications per round, {rounds} rounds (per call: median, min-max)")
    for name in names:
        times = results[name]
        median = statistics.median(times)
        print(f"  {name:12} {median * 1e6:9.1f} us  ({min(times) * 1e6:.1f}-"
              f"{max(times) * 1e6:.1f})  ratio {median / base:6.3f}  "
              f"introspections/round {statistics.median(asked[name]):.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
