"""Request benchmark: ``vault.request`` against a raw httpx2 call to the same loopback server.

    python bench/request.py [--rounds 5] [--requests 400] [--concurrency 32] [--stuck 110]
    python bench/request.py --p50-only [--requests 1000]

Starts a small ASGI echo server (uvicorn, its own process) on 127.0.0.1, then measures in one
run, the modes interleaved over several rounds (the order alternates each round): sequential
latency (p50/p95) and throughput with N concurrent callers, for (a) a raw
``httpx2`` request carrying a bearer header, (b) the same raw request on a client built as the
vault builds its own (a cheaper idle-connection check: see alter_mcp.proxy.transport), (c)
``vault.request`` with a managed-secret grant (guard, decrypt, inject, send, scrub, audit), and
(d) the same with a policy of N rules. Ratios are against (a) in the same round; printed are
their median and spread (min-max) over the rounds. Targets (issue 4): p50 at most 1.25x raw,
throughput at least 0.8x raw.

Then, to show where the vault's time goes, each step of ``vault.request`` is timed alone in a
loop (warm caches, so a lower bound of its cost inside a real request), and the main steps
are timed again inside real sequential requests.

Last, pool isolation (issue 12): a second server holds every ``/slow`` request until told to
let go. Each round measures the p50 of sequential ``vault.request`` calls to the healthy echo
provider unloaded, then again with ``--stuck`` (110) calls in flight to the slow provider on
the same vault, and prints the loaded/unloaded ratio (median and spread over ``--rounds``). On
a build without per-provider limits the healthy calls starve: they time out (``starved``).

``--p50-only`` measures just the sequential p50 of (a) and (c), their calls interleaved one by
one, quickly, to compare builds run alternately (e.g. the write-ahead audit's cost against the
previous main, with PYTHONPATH pointing at a worktree of it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx2

import alter_mcp
from alter_mcp.audit import AuditEntry
from alter_mcp.config import load_settings
from alter_mcp.errors import ProviderAPIError
from alter_mcp.models import Outcome, SystemPrincipal
from alter_mcp.proxy import prepare
from alter_mcp.proxy.inject import inject
from alter_mcp.proxy.result import build_result
from alter_mcp.proxy.send import new_client
from alter_mcp.vault import AlterVault

SERVER = textwrap.dedent("""
    import asyncio, json, sys, uvicorn
    # After /hold, /slow waits until /release; /held?at_least=N answers once N wait.
    # Everything else echoes at once.
    state = {"release": None, "arrived": None, "held": 0}
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if state["release"] is None:
            state["release"], state["arrived"] = asyncio.Event(), asyncio.Condition()
        path, data, arrived = scope["path"], {}, state["arrived"]
        if path == "/slow":
            async with arrived:
                state["held"] += 1
                arrived.notify_all()
            try:
                await state["release"].wait()
            finally:
                state["held"] -= 1
        elif path == "/release":
            state["release"].set()
        elif path == "/hold":
            state["release"] = asyncio.Event()
        elif path == "/held":
            at_least = int(scope["query_string"].decode().partition("=")[2] or 0)
            async with arrived:
                await arrived.wait_for(lambda: state["held"] >= at_least)
            data = {"held": state["held"]}
        auth = dict(scope["headers"]).get(b"authorization", b"")
        body = json.dumps({"ok": True, "auth": bool(auth), **data}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False)
""")


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int) -> subprocess.Popen[bytes]:
    """Start the echo server in its own process and wait until it answers."""
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    for _ in range(200):
        try:
            httpx2.get(f"http://127.0.0.1:{port}/echo", timeout=0.2)
            return server
        except httpx2.HTTPError:
            time.sleep(0.05)
    server.terminate()
    raise RuntimeError("the echo server did not start")


def pct(samples: list[float]) -> tuple[float, float]:
    """Return p50 and p95 in milliseconds."""
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[int(len(ordered) * 0.95) - 1] * 1e3


async def latency(call: Callable[[], Awaitable[object]], n: int) -> list[float]:
    """Return n sequential call durations."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        out.append(time.perf_counter() - start)
    return out


async def throughput(call: Callable[[], Awaitable[object]], n: int, workers: int) -> float:
    """Return calls per second with ``workers`` concurrent callers sharing n calls."""
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return n / (time.perf_counter() - start)


Call = Callable[[], Awaitable[object]]
#: Per round: p50 and p95 latency in seconds, and calls/s with concurrent callers.
Round = tuple[float, float, float]


async def interleaved(modes: Sequence[tuple[str, Call]], rounds: int, n: int,
                      workers: int) -> dict[str, list[Round]]:
    """Measure every mode once per round, in alternating order (A B C D, D C B A, …).

    A load change on the machine then hits every mode alike, and each round gives same-run
    ratios; the spread of those ratios over the rounds says how far to trust them.
    """
    for _, call in modes:
        await latency(call, 50)  # warm up pools and caches
    results: dict[str, list[Round]] = {name: [] for name, _ in modes}
    for r in range(rounds):
        for name, call in (modes if r % 2 == 0 else list(modes)[::-1]):
            ordered = sorted(await latency(call, n))
            rate = await throughput(call, n, workers)
            results[name].append((statistics.median(ordered),
                                  ordered[int(len(ordered) * 0.95) - 1], rate))
    return results


def spread(values: list[float]) -> str:
    """Return 'median (min-max)' of ``values``."""
    return f"{statistics.median(values):5.2f} ({min(values):4.2f}-{max(values):4.2f})"


def report(results: dict[str, list[Round]], rounds: int, workers: int) -> None:
    """Print each mode's median p50/p95/throughput and its same-run ratios to the first mode."""
    base = next(iter(results.values()))
    print(f"\n{rounds} rounds, modes interleaved; ratios to raw httpx2 in the same round, "
          "median (min-max)")
    print(f"{'mode':34} {'p50 ms':>7} {'p95 ms':>7} {'req/s @' + str(workers):>10}   "
          f"{'p50 x':>17}   {'thru x':>17}")
    for name, rows in results.items():
        p50 = [row[0] / b[0] for row, b in zip(rows, base, strict=True)]
        rate = [row[2] / b[2] for row, b in zip(rows, base, strict=True)]
        med = [statistics.median(row[k] for row in rows) for k in range(3)]
        print(f"{name:34} {med[0] * 1e3:7.3f} {med[1] * 1e3:7.3f} {med[2]:10.0f}   "
              f"{spread(p50):>17}   {spread(rate):>17}")


def policy_file(path: Path, rules: int) -> Path:
    """Write a policy of ``rules`` rules that all target the request and all pass."""
    lines = []
    for i in range(rules):
        lines.append(f'[[rule]]\nname = "r{i}"\nproviders = ["echo"]\nmethods = ["GET"]\n'
                     f'allow_paths = ["/echo*"]\ndeny_hosts = ["evil{i}.test"]\n')
    path.write_text("\n".join(lines))
    return path


def _api(port: int) -> dict[str, object]:
    return {"name": f"API on {port}", "auth_kind": "api_key", "api_hosts": ["localhost"],
            "api_ports": [port], "injection": [{"kind": "bearer", "format": "{api_key}"}],
            "secret_fields": [{"name": "api_key", "label": "Key"}]}


async def make_vault(tmp: Path, port: int, policy: Path | None, *, slow_port: int | None = None,
                     env: dict[str, str] | None = None) -> tuple[AlterVault, str]:
    """Open a vault with an echo provider and one bearer grant; return it and the grant id.

    With ``slow_port``, the catalogue also has a ``slow`` provider there, granted alike.
    """
    env = {"ALTER_MCP_DATA_DIR": str(tmp), "ALTER_MCP_ALLOW_INSECURE_HTTP": "true",
           "ALTER_MCP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(), **(env or {})}
    if policy is not None:
        env["ALTER_MCP_POLICY_FILE"] = str(policy)
    catalog = {"echo": _api(port)}
    if slow_port is not None:
        catalog["slow"] = _api(slow_port)
    vault = AlterVault(load_settings(env, catalog=catalog), caller="bench")
    await vault.open()
    gid = ""
    for provider in catalog:
        secret = await vault.create_managed_secret(provider, {"api_key": "bench-token-123"},
                                                   label="bench")
        grant = await vault.create_managed_secret_grant(secret.secret_id,
                                                        principal=SystemPrincipal())
        gid = gid or grant.grant_id
    return vault, gid


async def step_costs(vault: AlterVault, gid: str, url: str) -> list[tuple[str, float]]:
    """Time each step of vault.request alone, in a loop; return (step, µs per call)."""
    core = vault._core
    outbound = core.outbound
    assert outbound is not None
    ident = await vault.current_identity()
    grant = await core.store.get_grant(gid)
    assert grant is not None
    spec = core.catalog.get(grant.provider_id)
    fields = await vault._credential_for(grant, identity=ident)
    prepared = prepare(spec, "GET", url, allow_insecure_http=True)
    sent = inject(prepared, spec, fields)
    headers = [("content-type", "application/json"), ("content-length", "26"),
               ("date", "Sun, 22 Nov 2026 05:00:00 GMT"), ("server", "uvicorn")]
    entry = AuditEntry("request", Outcome.ALLOWED, identity=ident, status=200, latency_ms=1.0,
                       grant_id=gid, provider_id=grant.provider_id, method="GET", url=url)

    async def resolve() -> object:
        return await outbound.resolve(ident, grant_id=gid, provider=None, account=None)

    async def guard() -> object:
        return prepare(spec, "GET", url, allow_insecure_http=True)

    async def credential() -> object:
        return await vault._credential_for(grant, identity=ident)

    async def put_in() -> object:
        return inject(prepared, spec, fields)

    async def result() -> object:
        return build_result(status=200, method="GET", url=url, raw_headers=headers,
                            data=b'{"ok": true, "auth": true}', truncated=False,
                            secrets=sent.secrets)

    async def seal() -> object:
        return core.audit.sealer(entry, list(fields.values()))

    async def record() -> object:
        return await core.audit.record(entry, list(fields.values()))

    # Absent before issue 12 (this bench also runs against older builds for comparison).
    slot_of: Any = getattr(outbound._sender, "slot", None)

    async def take_slot() -> object:
        async with slot_of(prepared, spec):
            return None

    steps = (("resolve the grant (read + checks)", resolve),
             ("destination guard (prepare)", guard),
             ("read + decrypt the credential (cached)", credential),
             ("inject the credential", put_in),
             ("build the safe result (decode + scrub)", result),
             ("seal the audit event (redact + validate)", seal),
             ("audit record (seal + SQLite commit)", record),
             *((("take and give back a connection slot", take_slot),) if slot_of else ()))
    out = []
    for name, step in steps:
        await latency(step, 200)
        out.append((name, statistics.median(await latency(step, 2000)) * 1e6))
    return out


async def isolation(vault: AlterVault, gid: str, url: str, slow_base: str, *, stuck: int,
                    samples: int, rounds: int) -> list[tuple[float, float | None]]:
    """Return per round the healthy p50 in ms, unloaded and with ``stuck`` slow calls held.

    ``None`` for the loaded p50 means the healthy calls starved (timed out in the pool).
    """
    # Without per-provider limits (before issue 12) the pool's global 100 is the slow share.
    share = getattr(vault.settings, "provider_max_connections", 100)
    expected = min(stuck, share)

    async def healthy() -> object:
        return (await vault.request("GET", url, grant_id=gid, timeout=2.0)).json()

    out: list[tuple[float, float | None]] = []
    async with httpx2.AsyncClient() as control:
        for _ in range(rounds):
            await latency(healthy, 20)
            unloaded = statistics.median(await latency(healthy, samples)) * 1e3
            await control.get(f"{slow_base}/hold")
            held = [asyncio.ensure_future(vault.request("GET", f"{slow_base}/slow",
                                                        provider="slow", timeout=300.0))
                    for _ in range(stuck)]
            # The slow server answers once it holds the slow provider's whole share.
            await control.get(f"{slow_base}/held", params={"at_least": expected},
                              timeout=60.0)
            loaded: float | None
            try:
                loaded = statistics.median(await latency(healthy, samples)) * 1e3
            except ProviderAPIError:
                loaded = None
            await control.get(f"{slow_base}/release")
            failed = [r for r in await asyncio.gather(*held, return_exceptions=True)
                      if isinstance(r, BaseException)]
            if failed:
                raise RuntimeError(f"{len(failed)} slow calls failed, first: {failed[0]!r}")
            out.append((unloaded, loaded))
    return out


def print_isolation(rounds: list[tuple[float, float | None]], stuck: int, samples: int) -> None:
    """Print the isolation rounds and the ratio's median and spread."""
    print(f"\npool isolation: healthy provider's p50 with {stuck} calls stuck on a slow one, "
          f"vs unloaded ({len(rounds)} rounds x {samples} sequential calls)")
    print(f"  {'round':>5} {'unloaded ms':>12} {'loaded ms':>10} {'ratio':>7}")
    ratios = []
    for i, (unloaded, loaded) in enumerate(rounds, 1):
        if loaded is None:
            print(f"  {i:5} {unloaded:12.3f} {'starved':>10} {'-':>7}")
            continue
        ratios.append(loaded / unloaded)
        print(f"  {i:5} {unloaded:12.3f} {loaded:10.3f} {ratios[-1]:7.2f}")
    if ratios:
        print(f"  ratio loaded/unloaded: median {statistics.median(ratios):.2f}x, "
              f"spread {min(ratios):.2f}-{max(ratios):.2f}x over {len(ratios)} rounds")
    else:
        print("  every round starved: the healthy calls timed out behind the slow ones")


async def p50_only(requests: int) -> None:
    """Print the sequential p50 of raw httpx2 and of vault.request, and their ratio."""
    import alter_mcp

    port = free_port()
    server = start_server(port)
    try:
        url = f"http://localhost:{port}/echo"
        with tempfile.TemporaryDirectory() as tmp:
            vault, gid = await make_vault(Path(tmp), port, None)
            async with httpx2.AsyncClient(follow_redirects=False) as raw:
                headers = {"Authorization": "Bearer bench-token-123"}

                async def raw_call() -> object:
                    return (await raw.get(url, headers=headers)).json()

                async def vault_call() -> object:
                    return (await vault.request("GET", url, grant_id=gid)).json()

                for call in (raw_call, vault_call):
                    await latency(call, 50)
                # Interleaved, one call of each in turn, so both see the same machine load.
                samples: tuple[list[float], list[float]] = ([], [])
                for _ in range(requests):
                    for call, out in zip((raw_call, vault_call), samples, strict=True):
                        start = time.perf_counter()
                        await call()
                        out.append(time.perf_counter() - start)
                p50s = [pct(out)[0] for out in samples]
            await vault.close()
        print(f"alter_mcp from {Path(alter_mcp.__file__).parent.parent}")
        print(f"raw httpx2 p50 {p50s[0]:.3f} ms  vault.request p50 {p50s[1]:.3f} ms  "
              f"ratio {p50s[1] / p50s[0]:.2f}")
    finally:
        server.terminate()
        server.wait(timeout=10)


@contextlib.contextmanager
def timing(owner: object, names: Sequence[str], into: dict[str, list[float]]) -> Iterator[None]:
    """Time every call of ``owner``'s async methods ``names`` (those it has) into ``into``."""
    wrapped = []
    for name in names:
        method = getattr(owner, name, None)
        if method is None:
            continue

        async def timed(*args: Any, _method: Any = method, _name: str = name,
                        **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await _method(*args, **kwargs)
            finally:
                into.setdefault(_name, []).append(time.perf_counter() - start)

        setattr(owner, name, timed)
        wrapped.append(name)
    try:
        yield
    finally:
        for name in wrapped:
            delattr(owner, name)  # the instance attribute goes; the class's method is back


async def steps_inside(vault: AlterVault, gid: str, url: str, n: int) -> list[tuple[str, float]]:
    """Time the steps of n sequential real requests; return (step, median µs per request)."""
    core = vault._core
    outbound = core.outbound
    assert outbound is not None
    seen: dict[str, list[float]] = {}
    with timing(outbound, ("resolve",), seen), timing(outbound._sender, ("send",), seen), \
            timing(core.audit, ("record",), seen):
        whole = await latency(lambda: vault.request("GET", url, grant_id=gid), n)
    per_request = {}
    for name, times in seen.items():
        k = len(times) // n  # calls per request: the audit may write more than once
        per_request[name] = [sum(times[i * k:(i + 1) * k]) for i in range(n)]
    labels = {"resolve": "resolve the grant", "send": "send (inject, network, scrub)",
              "record": "audit writes"}
    rows = [(f"{labels[name]} ({len(times) // n} per request)",
             statistics.median(per_request[name]) * 1e6)
            for name, times in seen.items() if len(times) >= n]
    rows.append(("vault.request, whole", statistics.median(whole) * 1e6))
    return rows


async def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400, help="calls per mode per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--stuck", type=int, default=110)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--p50-only", action="store_true",
                        help="only the sequential p50 of raw httpx2 and vault.request")
    args = parser.parse_args()
    if args.p50_only:
        await p50_only(args.requests)
        return
    print(f"alter_mcp under test: {Path(alter_mcp.__file__).parent}")
    port, slow_port = free_port(), free_port()
    server = start_server(port)
    slow_server = start_server(slow_port)
    try:
        url = f"http://localhost:{port}/echo"
        with tempfile.TemporaryDirectory() as tmp:
            vault, gid = await make_vault(Path(tmp) / "plain", port, None)
            pvault, pgid = await make_vault(Path(tmp) / "policy", port,
                                            policy_file(Path(tmp) / "p.toml", args.rules))
            same = new_client(trust_env=False)
            async with httpx2.AsyncClient(follow_redirects=False) as raw, same:
                headers = {"Authorization": "Bearer bench-token-123"}

                async def raw_call() -> object:
                    return (await raw.get(url, headers=headers)).json()

                async def same_call() -> object:
                    return (await same.get(url, headers=headers)).json()

                async def vault_call() -> object:
                    return (await vault.request("GET", url, grant_id=gid)).json()

                async def policy_call() -> object:
                    return (await pvault.request("GET", url, grant_id=pgid)).json()

                modes = [("raw httpx2", raw_call),
                         ("raw httpx2, vault's client", same_call),
                         ("vault.request", vault_call),
                         (f"vault.request + {args.rules} rules", policy_call)]
                results = await interleaved(modes, args.rounds, args.requests,
                                            args.concurrency)
                steps = await step_costs(vault, gid, url)
                inside = await steps_inside(vault, gid, url, args.requests)
            await vault.close()
            await pvault.close()
            # Queued slow calls must outlast the measurement: a long wait for a slot.
            ivault, igid = await make_vault(
                Path(tmp) / "isolation", port, None, slow_port=slow_port,
                env={"ALTER_MCP_PROVIDER_POOL_TIMEOUT": "600"})
            try:
                isolated = await isolation(ivault, igid, url, f"http://localhost:{slow_port}",
                                           stuck=args.stuck, samples=args.samples,
                                           rounds=args.rounds)
            finally:
                await ivault.close()
        report(results, args.rounds, args.concurrency)
        p50 = {name: statistics.median(r[0] for r in rows) for name, rows in results.items()}
        names = list(results)
        policy_cost = (p50[names[3]] - p50[names[2]]) * 1e6
        print(f"\npolicy evaluation with {args.rules} rules: ~{policy_cost:.0f} µs per request "
              "(p50 difference)")
        print(f"\nvault.request p50 - raw p50: {(p50[names[2]] - p50[names[0]]) * 1e6:.0f} µs; "
              "each step alone (warm, µs):")
        for name, micros in steps:
            print(f"  {name:44} {micros:7.1f}")
        print("\ninside real requests (sequential, median µs per request):")
        for name, micros in inside:
            print(f"  {name:48} {micros:7.1f}")
        print_isolation(isolated, args.stuck, args.samples)
    finally:
        for process in (server, slow_server):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # uvicorn waits for requests still held
                process.kill()
                process.wait()


if __name__ == "__main__":
    asyncio.run(main())
