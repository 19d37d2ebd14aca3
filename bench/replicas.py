# ruff: noqa: E402  (imports follow the sys.path fix below)
"""Replica benchmark: ``authenticated_request`` throughput over streamable HTTP for one and two
``alter-mcp serve`` replicas on PostgreSQL and one on SQLite, all measured in one run.

    python bench/replicas.py [--calls 2000] [--concurrency 32]

Each deployment is real: ``alter-mcp serve --transport http`` processes on 127.0.0.1 behind the
test suite's load balancer (an httpx2 transport, round robin), a throwaway PostgreSQL cluster
(``initdb``/``pg_ctl``, fsync off) or a SQLite file, and the echo API of ``bench/request.py``
(uvicorn, its own process) as the provider, reached through a managed-secret grant. The load is
2026-07-28 ``tools/call`` POSTs (sessionless, so any replica may answer any of them) sent by
``--concurrency`` callers. Prints calls per second, p50/p95 latency, and ratios to the SQLite
replica and to one PostgreSQL replica. Every process shares this machine's cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder (which holds bench/mcp.py) would shadow the `mcp` package; the
# repository root gives bench.request and the test suite's deployment helpers instead.
HERE = Path(__file__).resolve().parent
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != HERE)]

import argparse
import asyncio
import base64
import json
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2

from alter_mcp.config import load_settings
from alter_mcp.models import AgentPrincipal, Identity, SystemPrincipal
from alter_mcp.vault import AlterVault
from bench.request import free_port, start_server
from tests.peers.postgres import temporary_cluster
from tests.replicas.deployment import Balancer, Deployment

KEY = "bench-key-0123456789abcdef"
PROVIDER = "echo"
_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
         "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"},
         "io.modelcontextprotocol/clientCapabilities": {}}


@dataclass(frozen=True)
class Row:
    """One deployment's measurement."""

    name: str
    rate: float
    p50: float
    p95: float
    server_cpu: float  # CPU milliseconds the replicas spent per call
    db_cpu: float | None  # CPU milliseconds PostgreSQL spent per call (None: SQLite)
    client_cpu: float  # CPU milliseconds the load generator spent per call
    errors: int


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU time a process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # it exited
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cluster_cpu(postmaster: int | None) -> dict[int, float]:
    """Return the CPU seconds of the postmaster and each of its backends, by PID."""
    if postmaster is None:
        return {}
    found = {postmaster: cpu_seconds(postmaster)}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            found[int(stat.parent.name)] = cpu_seconds(int(stat.parent.name))
    return found


def catalog(port: int) -> dict[str, Any]:
    """Return the shared TOML settings: the echo API as an API-key provider on 127.0.0.1."""
    return {"catalog": {PROVIDER: {
        "name": "Echo", "auth_kind": "api_key", "api_hosts": ["localhost"], "api_ports": [port],
        "injection": [{"kind": "header", "name": "X-Api-Key", "format": "{api_key}"}],
        "secret_fields": [{"name": "api_key", "label": "Key"}]}}}


async def prepare(database_url: str, workdir: Path, master_key: str, config: dict[str, Any]
                  ) -> tuple[str, str]:
    """Migrate the database; make an agent key and its grant of the echo key. Return both."""
    settings = load_settings({"ALTER_MCP_DATA_DIR": str(workdir / "admin"),
                              "ALTER_MCP_MASTER_KEY": master_key},
                             database_url=database_url, allow_insecure_http=True, **config)
    async with AlterVault(settings, caller="bench") as admin:
        record, key = await admin.create_api_key("bench-agent")
        system = admin.with_identity(Identity(principal=SystemPrincipal(), caller="bench"))
        secret = await system.create_managed_secret(PROVIDER, {"api_key": KEY}, label="bench")
        grant = await system.create_managed_secret_grant(
            secret.secret_id, principal=AgentPrincipal(key_id=record.key_id), label="bench")
    return key.reveal(), grant.grant_id


@asynccontextmanager
async def deployment(name: str, database_url: str, replicas: int, workdir: Path,
                     config: dict[str, Any]
                     ) -> AsyncIterator[tuple[Deployment, Balancer, str, str]]:
    """Run ``replicas`` servers on ``database_url``; yield them, the balancer, key and grant."""
    master_key = base64.b64encode(os.urandom(32)).decode()
    key, grant_id = await prepare(database_url, workdir, master_key, config)
    deployed = Deployment.configure(
        workdir / "deployment", public_url=f"http://127.0.0.1:{free_port()}",
        database_url=database_url, master_key=master_key,
        request_state_key=base64.b64encode(os.urandom(32)).decode(), config=config)
    balancer = await asyncio.to_thread(deployed.start, replicas)
    try:
        yield deployed, balancer, key, grant_id
    finally:
        list(deployed.stop())
        await balancer.close()


def _result(response: httpx2.Response) -> dict[str, Any]:
    """Return the JSON-RPC result of a tools/call answer (JSON or a server-sent event)."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and '"result"' in line:
                result: dict[str, Any] = json.loads(line[5:])["result"]
                return result
        raise RuntimeError(f"no result in {response.text[:300]!r}")
    answer: dict[str, Any] = response.json()["result"]
    return answer


async def load(balancer: Balancer, public_url: str, key: str, grant_id: str, api: str,
               calls: int, workers: int) -> tuple[float, list[float], int]:
    """Send ``calls`` tools/call POSTs with ``workers`` callers; return rate, latencies, errors."""
    headers = {"x-alter-agent-key": key, "accept": "application/json, text/event-stream",
               "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call",
               "mcp-name": "authenticated_request"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "authenticated_request", "_meta": _META,
        "arguments": {"method": "GET", "url": api, "grant_id": grant_id}}}
    samples: list[float] = []
    errors = 0
    remaining = calls
    async with balancer.http_client(headers=headers) as client:
        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                response = await client.post(public_url + "/mcp", json=body)
                result = _result(response)
                if result.get("isError") or result["structuredContent"]["status"] != 200:
                    errors += 1
                samples.append(time.perf_counter() - started)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        elapsed = time.perf_counter() - start
    return calls / elapsed, samples, errors


async def measure(name: str, database_url: str, replicas: int, workdir: Path, api_port: int,
                  args: argparse.Namespace, postmaster: int | None = None) -> Row:
    """Deploy, warm up, measure, tear down; return the row."""
    api = f"http://localhost:{api_port}/echo"
    async with deployment(name, database_url, replicas, workdir, catalog(api_port)) as (
            deployed, balancer, key, grant_id):
        public = f"http://{balancer.public}"
        await load(balancer, public, key, grant_id, api, 100 * replicas, args.concurrency)
        pids = [r.pid for r in deployed.replicas]
        server_before, client_before = sum(map(cpu_seconds, pids)), time.process_time()
        db_before = cluster_cpu(postmaster)
        rate, samples, errors = await load(balancer, public, key, grant_id, api, args.calls,
                                           args.concurrency)
        server = (sum(map(cpu_seconds, pids)) - server_before) * 1e3 / args.calls
        client = (time.process_time() - client_before) * 1e3 / args.calls
        db_after = cluster_cpu(postmaster)
        db = (sum(v - db_before.get(k, 0.0) for k, v in db_after.items()) * 1e3 / args.calls
              if postmaster is not None else None)
        split = [sum(1 for h in balancer.hops[-args.calls:] if h.replica == i)
                 for i in range(replicas)]
    ordered = sorted(samples)
    print(f"  {name}: {rate:.0f} calls/s, per replica {split}", flush=True)
    return Row(name, rate, statistics.median(ordered) * 1e3,
               ordered[int(len(ordered) * 0.95) - 1] * 1e3, server, db, client, errors)


async def main() -> None:
    """Run every deployment in turn and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    api_port = free_port()
    api = start_server(api_port)
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory() as tmp, temporary_cluster() as cluster:
            work = Path(tmp)
            print(f"{os.cpu_count()} CPUs; {args.calls} calls, {args.concurrency} callers",
                  flush=True)
            rows.append(await measure("SQLite, 1 replica", f"sqlite:///{work / 'vault.db'}", 1,
                                      work / "sqlite", api_port, args))
            for replicas in (1, 2):
                url = cluster.create_database(f"bench_{replicas}")
                rows.append(await measure(f"PostgreSQL, {replicas} replica"
                                          + ("s" if replicas > 1 else ""), url, replicas,
                                          work / f"pg{replicas}", api_port, args,
                                          cluster.postmaster_pid()))
    finally:
        api.terminate()
        api.wait(timeout=10)
    sqlite_rate, pg1_rate = rows[0].rate, rows[1].rate
    print(f"\n{'deployment':24} {'calls/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'x SQLite':>9} "
          f"{'x PG 1':>7} {'srv CPU':>8} {'db CPU':>7} {'gen CPU':>8} {'errors':>7}")
    for row in rows:
        db = f"{row.db_cpu:7.2f}" if row.db_cpu is not None else f"{'-':>7}"
        print(f"{row.name:24} {row.rate:8.0f} {row.p50:8.1f} {row.p95:8.1f} "
              f"{row.rate / sqlite_rate:9.2f} {row.rate / pg1_rate:7.2f} "
              f"{row.server_cpu:8.2f} {db} {row.client_cpu:8.2f} {row.errors:7d}")
    print("\nCPU columns: milliseconds per call spent by all replicas (srv), by PostgreSQL (db) "
          f"and by this load generator (gen). Every process shares {os.cpu_count()} CPUs.")


if __name__ == "__main__":
    asyncio.run(main())
