# ruff: noqa: E402  (imports follow the sys.path fix below)
"""MCP benchmark: ``authenticated_request`` (and ``list_grants``) through alter-mcp, against a
bare FastMCP echo tool measured in the same run, in memory and over streamable HTTP.

    python bench/mcp.py [--calls 300]     (or: python -m bench.mcp)

The provider API is a tiny JSON endpoint served by uvicorn on 127.0.0.1, reached by the vault
through a managed-secret grant (the key is injected as a header). A second baseline, a bare
FastMCP tool making the same GET with httpx2 and no vault, isolates the vault's own cost.
Prints p50/p95 in milliseconds and each ratio to the bare echo tool.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the `mcp` package: run as a script, its own folder would shadow it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import argparse
import asyncio
import base64
import os
import socket
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import uvicorn
from fastmcp import Client, FastMCP
from fastmcp.client.transports import StreamableHttpTransport
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from alter_mcp.config import load_settings
from alter_mcp.models import SystemPrincipal
from alter_mcp.server import build_http_app, build_server
from alter_mcp.vault import AlterVault

KEY = "bench-key-0123456789abcdef"


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def serve(app: Any, port: int) -> AsyncIterator[None]:
    """Run an ASGI app under uvicorn on 127.0.0.1:port for the block."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           lifespan="on", log_config=None))
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


def upstream_app() -> Starlette:
    """Return the provider API stand-in: GET /items answers a small JSON document."""
    async def items(request: Request) -> JSONResponse:
        return JSONResponse({"items": [{"id": i, "name": f"item {i}"} for i in range(5)],
                             "authorized": bool(request.headers.get("x-api-key"))})

    return Starlette(routes=[Route("/items", items)])


def bare_server(upstream: str) -> FastMCP:
    """Return the baselines: an echo tool, and a tool doing the same GET without a vault."""
    server: FastMCP = FastMCP("bare")
    http = httpx2.AsyncClient(timeout=10, trust_env=False)

    @server.tool
    async def echo(method: str, url: str) -> dict[str, Any]:
        """Return the arguments."""
        return {"method": method, "url": url}

    @server.tool
    async def plain_get(url: str) -> dict[str, Any]:
        """GET the URL directly, with the key in the tool (what the vault avoids)."""
        resp = await http.get(url, headers={"x-api-key": KEY})
        return {"status": resp.status_code, "body": resp.json()}

    return server


async def timed(call: Callable[[], Awaitable[object]], n: int) -> list[float]:
    """Return n wall-clock durations of ``call`` after a short warm-up."""
    for _ in range(min(20, n)):
        await call()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        out.append(time.perf_counter() - start)
    return out


def stats(samples: list[float]) -> tuple[float, float]:
    """Return p50 and p95 in milliseconds."""
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[int(len(ordered) * 0.95) - 1] * 1e3


async def measure(client: Client[Any], bare: Client[Any], upstream: str, grant_id: str,
                  n: int, label: str) -> None:
    """Time each operation on its client and print it against the echo baseline."""
    url = upstream + "/items"
    ops: dict[str, Callable[[], Awaitable[object]]] = {
        "bare echo tool (baseline)": lambda: bare.call_tool("echo", {"method": "GET",
                                                                     "url": url}),
        "bare tool, direct GET": lambda: bare.call_tool("plain_get", {"url": url}),
        "list_grants": lambda: client.call_tool("list_grants", {}),
    }
    if hasattr(AlterVault, "request"):
        ops["authenticated_request"] = lambda: client.call_tool("authenticated_request", {
            "method": "GET", "url": url, "grant_id": grant_id})
    results = {name: stats(await timed(op, n)) for name, op in ops.items()}
    base = results["bare echo tool (baseline)"][0]
    print(f"\n{label} ({n} calls each)")
    print(f"  {'operation':32} {'p50 ms':>8} {'p95 ms':>8} {'x echo':>7}")
    for name, (p50, p95) in results.items():
        print(f"  {name:32} {p50:8.2f} {p95:8.2f} {p50 / base:7.1f}")
    if "authenticated_request" in results:
        direct = results["bare tool, direct GET"][0]
        print(f"  vault cost: authenticated_request / direct GET = "
              f"{results['authenticated_request'][0] / direct:.1f}x")
    else:
        print("  authenticated_request: AlterVault.request is not available in this build")


async def main(n: int) -> None:
    """Set up the vault, the upstream and both servers; run the in-memory and HTTP rounds."""
    up_port, mcp_port, bare_port = free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    data = tempfile.mkdtemp(prefix="alter-bench-")
    settings = load_settings(
        {"ALTER_MCP_DATA_DIR": data,
         "ALTER_MCP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()},
        catalog={"bench-api": {
            "name": "Bench API", "auth_kind": "api_key", "api_hosts": ["127.0.0.1"],
            "api_ports": [up_port], "secret_fields": [{"name": "api_key", "label": "Key"}],
            "injection": [{"kind": "header", "name": "X-Api-Key", "format": "{api_key}"}]}},
        allow_insecure_http=True, public_url=f"http://127.0.0.1:{mcp_port}",
        log_level="WARNING")
    async with AlterVault(settings, caller="bench") as vault, serve(upstream_app(), up_port):
        secret = await vault.create_managed_secret("bench-api", {"api_key": KEY}, label="b")
        grant = await vault.create_managed_secret_grant(secret.secret_id,
                                                        principal=SystemPrincipal())
        bare = bare_server(upstream)
        async with Client(build_server(vault)) as client, Client(bare) as bare_client:
            await measure(client, bare_client, upstream, grant.grant_id, n, "in-memory")
        _, key = await vault.create_api_key("bench")
        from alter_mcp.models import AgentPrincipal

        record = (await vault.list_api_keys())[-1]
        agent_secret = await vault.create_managed_secret("bench-api", {"api_key": KEY},
                                                         label="agent")
        agent_grant = await vault.create_managed_secret_grant(
            agent_secret.secret_id, principal=AgentPrincipal(key_id=record.key_id))
        async with serve(build_http_app(vault), mcp_port), serve(bare.http_app(), bare_port):
            mcp = Client(StreamableHttpTransport(f"http://127.0.0.1:{mcp_port}/mcp",
                                                 auth=key.reveal()))
            plain = Client(f"http://127.0.0.1:{bare_port}/mcp")
            async with mcp as client, plain as bare_client:
                await measure(client, bare_client, upstream, agent_grant.grant_id, n,
                              "streamable HTTP (agent key)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    asyncio.run(main(parser.parse_args().calls))
