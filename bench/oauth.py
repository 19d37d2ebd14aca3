"""OAuth benchmark against a real oidc-provider started here: connect latency, refresh storms.

    python bench/oauth.py [--connects 40] [--storm 200] [--storms 5]

Connect-to-grant: wall time from ``create_connect_session`` to the stored grant, with a
browserless agent following the redirects (fresh cookie jar each time, so every connect logs
in and consents). Baseline, measured in the same run: the same authorize + PKCE + code
exchange driven directly against the peer (``OidcProviderPeer.code_flow``), no vault.

Refresh storm: ``--storm`` concurrent uses of one grant whose token has expired, repeated
``--storms`` times; prints the refresh requests that reached the token endpoint per storm
(single flight: 1; without it: one per use) and the storm's wall time against a storm of
the same size on a fresh token (no refresh).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alter_mcp.config import Settings, load_settings
from alter_mcp.vault import AlterVault
from tests.peers.fixtures import (
    CONF_APP,
    CONF_APP_SECRET,
    REDIRECT_URIS,
    default_oidc_config,
)
from tests.peers.oidc import BrowserlessAgent, OidcProviderPeer

PROVIDER = "oidc-bench"


class Clock:
    """Real time plus an offset the storm moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def percentiles(samples: list[float]) -> tuple[float, float]:
    """Return p50 and p95 in milliseconds."""
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1e3


def settings_for(peer: OidcProviderPeer, data_dir: str) -> Settings:
    """Return vault settings that know the peer as an OAuth provider."""
    entry = {
        "name": "OIDC bench", "auth_kind": "oauth2", "api_hosts": ["localhost"],
        "injection": [{"kind": "bearer"}],
        "oauth": {"authorization_url": peer.authorization_endpoint,
                  "token_url": peer.token_endpoint, "revocation_url": peer.revocation_endpoint,
                  "userinfo_url": peer.userinfo_endpoint, "account_field": "email",
                  "default_scopes": ["openid", "offline_access", "email"],
                  "token_endpoint_auth": "client_secret_basic"},
    }
    return load_settings(
        {"ALTER_MCP_DATA_DIR": data_dir,
         "ALTER_MCP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()},
        connect_port=0, catalog={PROVIDER: entry},
        providers={PROVIDER: {"client_id": CONF_APP, "client_secret": CONF_APP_SECRET}})


async def connect_once(vault: AlterVault) -> tuple[float, str]:
    """Return the connect-to-grant time of one connect and its grant id."""
    start = time.perf_counter()
    link = await vault.create_connect_session(allowed_providers=[PROVIDER])
    async with BrowserlessAgent() as agent:
        page = await agent.follow_response(link.connect_url)
    session = await vault.connect_status(link.session_id)
    elapsed = time.perf_counter() - start
    if page.status_code != 200 or not session.grant_ids:
        raise SystemExit(f"connect failed: HTTP {page.status_code}")
    return elapsed, session.grant_ids[0]


async def raw_flow_once(peer: OidcProviderPeer, redirect_uri: str) -> float:
    """Return the time of the same flow driven directly against the peer."""
    start = time.perf_counter()
    async with BrowserlessAgent() as agent:
        await peer.code_flow(agent, client_id=CONF_APP, client_secret=CONF_APP_SECRET,
                             auth_method="client_secret_basic", redirect_uri=redirect_uri,
                             scope="openid offline_access email")
    return time.perf_counter() - start


async def storm(vault: AlterVault, grant_id: str, size: int) -> float:
    """Run ``size`` concurrent uses of the grant; return the wall time."""
    grant = await vault.get_grant(grant_id)
    start = time.perf_counter()
    await asyncio.gather(*(vault._credential_for(grant) for _ in range(size)))
    return time.perf_counter() - start


async def main(connects: int, storm_size: int, storms: int) -> None:
    """Run both measurements and print them."""
    peer = OidcProviderPeer().start(default_oidc_config())
    clock = Clock()
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            settings = settings_for(peer, data_dir)
            async with AlterVault(settings, caller="bench", clock=clock) as vault:
                await connect_once(vault)  # warm up: loopback listener, first login page
                vault_times, grant_ids = [], []
                for _ in range(connects):
                    elapsed, grant_id = await connect_once(vault)
                    vault_times.append(elapsed)
                    grant_ids.append(grant_id)
                redirect = REDIRECT_URIS[0]
                raw_times = [await raw_flow_once(peer, redirect) for _ in range(connects)]
                v50, v95 = percentiles(vault_times)
                r50, r95 = percentiles(raw_times)
                print(f"connect-to-grant over {connects} connects (ms)")
                print(f"  vault  p50 {v50:7.1f}  p95 {v95:7.1f}")
                print(f"  direct p50 {r50:7.1f}  p95 {r95:7.1f}   (authorize + PKCE exchange, "
                      "no vault)")
                print(f"  ratio  p50 {v50 / r50:7.2f}  p95 {v95 / r95:7.2f}")

                grant_id = grant_ids[0]
                counts, hot, cold = [], [], []
                for _ in range(storms):
                    cold.append(await storm(vault, grant_id, storm_size))
                    clock.offset += timedelta(hours=1)
                    await peer.areset_stats()
                    hot.append(await storm(vault, grant_id, storm_size))
                    counts.append((await peer.astats())["token"].get("refresh_token", 0))
                print(f"refresh storm: {storm_size} concurrent uses of an expired grant, "
                      f"{storms} storms")
                print(f"  refresh requests at the token endpoint per storm: {counts} "
                      f"(without single flight: {storm_size})")
                h50, c50 = statistics.median(hot) * 1e3, statistics.median(cold) * 1e3
                print(f"  storm wall time p50: expired {h50:.1f} ms, fresh {c50:.1f} ms, "
                      f"ratio {h50 / c50:.2f}")
    finally:
        peer.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connects", type=int, default=40)
    parser.add_argument("--storm", type=int, default=200)
    parser.add_argument("--storms", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.connects, args.storm, args.storms))
