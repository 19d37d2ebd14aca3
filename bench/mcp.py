# ruff: noqa: E402  (imports follow the sys.path fix below)
"""MCP benchmark: ``authenticated_request`` over streamable HTTP against a plain FastMCP tool.

    python bench/mcp.py [--rounds 5] [--calls 240] [--clients 1,8,32] [--profile PREFIX]

Every server runs in its own process on 127.0.0.1, started here and stopped by PID:

- the provider API: a tiny JSON endpoint under uvicorn that wants an ``x-api-key`` header;
- ``alter-mcp serve --transport http``: the real server, its vault holding the key as a
  managed secret granted to an agent key, which the bench's clients present;
- the baseline: a FastMCP server whose ``plain_get`` tool reads the key from an environment
  variable and makes the same GET with httpx2 (what a user would write without a vault), plus
  an ``echo`` tool (the MCP stack alone, for scale).

For each number of concurrent clients, the modes run in alternating blocks (A B C, C B A, …)
for several rounds, so a load change on the machine hits all of them alike. Each round yields
same-run ratios to the plain tool: p50 latency, calls/s, and the server process's CPU time per
call (from /proc: steadier than wall time on a shared machine). Printed: the median ratio over
the rounds and its spread (min-max), after the first call of each fresh server (one sample).
Target (issue 16): ``authenticated_request`` at most 1.15x the plain tool's p50 and at least
0.85x its calls/s at 32 clients.

``--profile PREFIX`` samples the alter-mcp and the plain server with py-spy once warm (needs
``pip install py-spy`` and ptrace rights): collapsed stacks in PREFIX.alter.txt and
PREFIX.plain.txt.
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
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from alter_mcp.config import load_settings
from alter_mcp.models import AgentPrincipal
from alter_mcp.vault import AlterVault

KEY = "bench-key-0123456789abcdef"

UPSTREAM = textwrap.dedent("""
    import json, sys, uvicorn
    BODY = json.dumps({"items": [{"id": i, "name": f"item {i}"} for i in range(5)]}).encode()
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        ok = dict(scope["headers"]).get(b"x-api-key") == sys.argv[2].encode()
        await send({"type": "http.response.start", "status": 200 if ok else 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(BODY)).encode())]})
        await send({"type": "http.response.body", "body": BODY})
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False)
""")

PLAIN = textwrap.dedent("""
    import os, sys, httpx2, uvicorn
    from fastmcp import FastMCP
    server = FastMCP("plain")
    http = httpx2.AsyncClient(timeout=10, trust_env=False)

    @server.tool
    async def plain_get(url: str) -> dict:
        \"\"\"GET the URL with the API key from the environment.\"\"\"
        resp = await http.get(url, headers={"x-api-key": os.environ["BENCH_API_KEY"]})
        return {"status": resp.status_code, "body": resp.json()}

    @server.tool
    async def echo(url: str) -> dict:
        \"\"\"Return the argument: the MCP stack alone.\"\"\"
        return {"url": url}

    uvicorn.run(server.http_app(path="/mcp"), host="127.0.0.1", port=int(sys.argv[1]),
                log_level="warning", access_log=False, server_header=False)
""")

MODES = ("plain tool (baseline)", "authenticated_request", "echo (MCP stack only)")


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(argv: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a server process and return once it accepts connections on ``port``."""
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[:3]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"{argv[:3]} did not listen on {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process started here, by its PID (SIGTERM, then SIGKILL)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


async def provision(env: dict[str, str]) -> tuple[str, str]:
    """Store the key as a managed secret granted to a new agent key; return (grant, agent key)."""
    async with AlterVault(load_settings(env), caller="bench") as vault:
        secret = await vault.create_managed_secret("bench-api", {"api_key": KEY}, label="b")
        record, key = await vault.create_api_key("bench")
        grant = await vault.create_managed_secret_grant(
            secret.secret_id, principal=AgentPrincipal(key_id=record.key_id))
        return grant.grant_id, key.reveal()


async def block(call: Callable[[int], Awaitable[object]], clients: int,
                n: int) -> tuple[list[float], float]:
    """Make n calls from ``clients`` concurrent workers; return latencies and calls/s."""
    remaining = n
    out: list[float] = []

    async def worker(i: int) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            await call(i)
            out.append(time.perf_counter() - t0)

    start_at = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    return out, n / (time.perf_counter() - start_at)


def cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spread(values: list[float]) -> str:
    """Return 'median (min-max)' of ``values``."""
    return f"{statistics.median(values):5.2f} ({min(values):4.2f}-{max(values):4.2f})"


Result = tuple[float, float, float]  # p50 seconds, calls/s, server CPU seconds per call


async def measure(urls: dict[str, str], pids: dict[str, int], agent_key: str, grant_id: str,
                  api: str, clients: int, rounds: int, calls: int,
                  warm: Callable[[], None]) -> dict[str, list[Result]]:
    """Run the modes in alternating blocks; return each mode's results, one per round."""
    async with AsyncExitStack() as stack:
        alter = [await stack.enter_async_context(Client(StreamableHttpTransport(
            urls["alter"], auth=agent_key))) for _ in range(clients)]
        plain = [await stack.enter_async_context(Client(urls["plain"]))
                 for _ in range(clients)]
        request = {"method": "GET", "url": api, "grant_id": grant_id}
        ops: dict[str, Callable[[int], Awaitable[object]]] = {
            MODES[0]: lambda i: plain[i].call_tool("plain_get", {"url": api}),
            MODES[1]: lambda i: alter[i].call_tool("authenticated_request", request),
            MODES[2]: lambda i: plain[i].call_tool("echo", {"url": api}),
        }
        first = await ops[MODES[1]](0)
        assert first.data["status"] == 200, first  # type: ignore[attr-defined]
        check = await ops[MODES[0]](0)
        assert check.data["status"] == 200, check  # type: ignore[attr-defined]
        for op in ops.values():  # warm every client's session and the pools
            await block(op, clients, max(20, 2 * clients))
        warm()
        server = {MODES[0]: pids["plain"], MODES[1]: pids["alter"], MODES[2]: pids["plain"]}
        results: dict[str, list[Result]] = {m: [] for m in MODES}
        for r in range(rounds):
            for mode in (MODES if r % 2 == 0 else MODES[::-1]):
                cpu = cpu_seconds(server[mode])
                samples, rate = await block(ops[mode], clients, calls)
                cpu = (cpu_seconds(server[mode]) - cpu) / calls
                results[mode].append((statistics.median(samples), rate, cpu))
        return results


async def first_calls(urls: dict[str, str], agent_key: str, grant_id: str,
                      api: str) -> tuple[float, float]:
    """Return the seconds of the first call on each fresh server (one sample each)."""
    request = {"method": "GET", "url": api, "grant_id": grant_id}
    async with Client(StreamableHttpTransport(urls["alter"], auth=agent_key)) as alter, \
            Client(urls["plain"]) as plain:
        t0 = time.perf_counter()
        await alter.call_tool("authenticated_request", request)
        t1 = time.perf_counter()
        await plain.call_tool("plain_get", {"url": api})
        return t1 - t0, time.perf_counter() - t1


def report(clients: int, results: dict[str, list[Result]]) -> None:
    """Print each mode's medians and its same-run ratios to the plain tool."""
    base = results[MODES[0]]
    print(f"\n{clients} client(s), {len(base)} rounds; ratios to the plain tool, "
          "median (min-max) over rounds; server CPU per call in its own process")
    print(f"  {'mode':26} {'p50 ms':>7} {'calls/s':>8} {'CPU ms':>7}   {'p50 x':>17}   "
          f"{'calls/s x':>17}   {'CPU x':>17}")
    for mode in MODES:
        rows = results[mode]
        ratios = [[row[k] / b[k] for row, b in zip(rows, base, strict=True)] for k in range(3)]
        medians = [statistics.median(row[k] for row in rows) for k in range(3)]
        print(f"  {mode:26} {medians[0] * 1e3:7.2f} {medians[1]:8.0f} {medians[2] * 1e3:7.2f}"
              f"   {spread(ratios[0]):>17}   {spread(ratios[1]):>17}   "
              f"{spread(ratios[2]):>17}")


async def main(args: argparse.Namespace) -> None:
    """Provision the vault, start the three servers, measure each client count, stop them."""
    up_port, alter_port, plain_port = free_port(), free_port(), free_port()
    data = Path(tempfile.mkdtemp(prefix="alter-bench-"))
    (data / "config.toml").write_text(textwrap.dedent(f"""
        allow_insecure_http = true
        [catalog.bench-api]
        name = "Bench API"
        auth_kind = "api_key"
        api_hosts = ["127.0.0.1"]
        api_ports = [{up_port}]
        secret_fields = [{{name = "api_key", label = "Key"}}]
        injection = [{{kind = "header", name = "X-Api-Key", format = "{{api_key}}"}}]
    """))
    env = {**os.environ, "ALTER_MCP_DATA_DIR": str(data),
           "ALTER_MCP_CONFIG": str(data / "config.toml"), "ALTER_MCP_LOG_LEVEL": "WARNING",
           "ALTER_MCP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
           "ALTER_MCP_PUBLIC_URL": f"http://127.0.0.1:{alter_port}"}
    grant_id, agent_key = await provision(env)
    alter_cli = str(Path(sys.executable).with_name("alter-mcp"))
    procs = []
    profilers: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(start([sys.executable, "-c", UPSTREAM, str(up_port), KEY], up_port, env))
        procs.append(start([alter_cli, "serve", "--transport", "http", "--port",
                            str(alter_port)], alter_port, env))
        procs.append(start([sys.executable, "-c", PLAIN, str(plain_port)], plain_port,
                           {**env, "BENCH_API_KEY": KEY}))

        def warm() -> None:
            # Sampling starts once every first-call import and pool is warm.
            if args.profile and not profilers:
                spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
                for name, proc in (("alter", procs[1]), ("plain", procs[2])):
                    profilers.append(subprocess.Popen(
                        [spy, "record", "--pid", str(proc.pid), "--format", "raw", "--gil",
                         "--rate", "200", "-o", f"{args.profile}.{name}.txt"]))

        urls = {"alter": f"http://127.0.0.1:{alter_port}/mcp",
                "plain": f"http://127.0.0.1:{plain_port}/mcp"}
        api = f"http://127.0.0.1:{up_port}/items"
        print(f"bench/mcp.py: {args.rounds} rounds of {args.calls} calls per mode and client "
              "count; each server in its own process, streamable HTTP")
        alter_first, plain_first = await first_calls(urls, agent_key, grant_id, api)
        print(f"first call after start (one sample): authenticated_request "
              f"{alter_first * 1e3:.0f} ms, plain tool {plain_first * 1e3:.0f} ms")
        for clients in args.clients:
            pids = {"alter": procs[1].pid, "plain": procs[2].pid}
            report(clients, await measure(urls, pids, agent_key, grant_id, api, clients,
                                          args.rounds, args.calls, warm))
    finally:
        for profiler in profilers:
            os.kill(profiler.pid, signal.SIGINT)
            profiler.wait(timeout=30)
        for proc in procs:
            stop(proc)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=240, help="calls per mode per round")
    parser.add_argument("--clients", type=lambda s: [int(c) for c in s.split(",")],
                        default=[1, 8, 32], help="comma-separated client counts")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="write py-spy's stacks of both servers to PREFIX.{alter,plain}.txt")
    asyncio.run(main(parser.parse_args()))
