"""Scale benchmark: per-request costs that must not grow with grants, groups and rules.

    python bench/scale.py [--grants 1000000] [--groups 10] [--per-group 10000]
                          [--rules 10000] [--rounds 7] [--block 200]

Builds a SQLite vault in bulk (a few seconds for a million grants: rows written with
``executemany`` into a migrated database, as the store would write them), then measures, in
alternating blocks over several rounds, each case against its same-run baseline and prints
the median and spread (min-max) of the per-round ratios:

- a member of ``--groups`` groups (each owning ``--per-group`` grants) reading the first
  ``list_grants`` page, against the system principal's first page (target: ≤ 2x);
- the policy decision of a request with ``--rules`` rules that do not target it, against no
  rules at all (target: adds <= 0.1 ms);
- ``vault.request`` p50 against a loopback echo API with a rate-limit rule (per grant, and
  per caller) over an audit log of ``--events`` events, against the same vault with no rule
  (target: <= 1.2x each).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from alter_mcp.models import GroupPrincipal, Identity, SystemPrincipal, UserPrincipal
from alter_mcp.policy import PolicyIndex, PolicyRequest, Rule, evaluate, select
from alter_mcp.store.sqlite import SQLiteStore
from alter_mcp.vault import AlterVault

T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
ISSUER = "https://idp.bench"
PROVIDERS = ("github", "google", "slack", "notion", "linear")


def grant_rows(start: int, count: int, owner_json: str, owner_key: str):  # type: ignore[no-untyped-def]
    """Yield grant rows in the store's column order."""
    for i in range(start, start + count):
        yield (f"{i:08d}-bench", "oauth", PROVIDERS[i % 5], owner_key, owner_json,
               f"acct{i}@example.test", None, '["read"]', "active", None, T0 + i / 1000,
               T0 + i / 1000, None)


async def build(path: Path, *, grants: int, groups: int, per_group: int) -> Identity:
    """Create the vault file: groups' grants interleaved in time with the system's."""
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    system = SystemPrincipal()
    conn = sqlite3.connect(path)
    columns = ("grant_id, kind, provider_id, owner_key, owner, account_identifier, label, "
               "scopes, status, secret_id, created_at, updated_at, revoked_at")
    sql = f"INSERT INTO grants ({columns}) VALUES ({','.join('?' * 13)})"
    with conn:
        n = 0
        group_total = groups * per_group
        # Spread the groups' grants through the timeline, as real usage would.
        stride = max(1, grants // max(1, group_total))
        chunk: list[tuple[object, ...]] = []
        group_keys = []
        for g in range(groups):
            principal = GroupPrincipal(issuer=ISSUER, group=f"team{g}")
            group_keys.append((principal.key, principal.model_dump_json()))
        for i in range(grants):
            if i % stride == 0 and n < group_total:
                key, data = group_keys[n % groups]
                n += 1
            else:
                key, data = system.key, system.model_dump_json()
            chunk.extend(grant_rows(i, 1, data, key))
            if len(chunk) >= 50_000:
                conn.executemany(sql, chunk)
                chunk.clear()
        conn.executemany(sql, chunk)
    # No ANALYZE: the store never runs it, so the planner sees what a real vault shows it.
    conn.close()
    return Identity(principal=UserPrincipal(issuer=ISSUER, subject="member"), caller="bench",
                    groups=frozenset(f"team{g}" for g in range(groups)))


async def timed(fn: Callable[[], Awaitable[object]], n: int) -> float:
    """Return the median duration of ``n`` calls, in seconds."""
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def spread(ratios: list[float]) -> str:
    """Return 'median (min-max)' of a list of ratios."""
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


async def group_pages(path: Path, member: Identity, rounds: int, block: int) -> None:
    """Print the member's first page against the system principal's, in alternating blocks."""
    store = SQLiteStore(path)
    await store.open()
    try:
        member_keys = list(member.owner_keys())
        system_keys = [SystemPrincipal().key]
        first = await store.list_grants(member_keys, limit=50)
        assert len(first) == 50, "the member must see a full page"
        ratios, member_ms, system_ms = [], [], []
        for _ in range(rounds):
            base = await timed(lambda: store.list_grants(system_keys, limit=50), block)
            case = await timed(lambda: store.list_grants(member_keys, limit=50), block)
            ratios.append(case / base)
            member_ms.append(case * 1e3)
            system_ms.append(base * 1e3)
        print(f"first page, member of {len(member.groups)} groups: "
              f"{statistics.median(member_ms):.3f} ms vs system "
              f"{statistics.median(system_ms):.3f} ms  ratio {spread(ratios)}  (target ≤ 2x)")
    finally:
        await store.close()


def policy_cost(rules: int, rounds: int, block: int) -> None:
    """Print the decision cost with ``rules`` non-targeting rules against none."""
    request = PolicyRequest(method="GET", host="api.github.com", path="/user",
                            provider_id="github", grant_id="g-target", principal="system",
                            caller="bench")
    many = PolicyIndex([Rule(name=f"r{n}", grants=(f"g{n}",), methods=("GET",))
                        for n in range(rules)])
    none = PolicyIndex()
    now = datetime.now(UTC)

    def decide(index: PolicyIndex) -> float:
        start = time.perf_counter()
        for _ in range(block):
            evaluate(request, select(request, index), now=now)
        return (time.perf_counter() - start) / block

    added, ratios = [], []
    for _ in range(rounds):
        base = decide(none)
        case = decide(many)
        added.append((case - base) * 1e6)
        ratios.append(case / base)
    print(f"policy decision, {rules} non-targeting rules vs none: adds "
          f"{statistics.median(added):.2f} µs ({min(added):.2f}-{max(added):.2f})  ratio "
          f"{spread(ratios)}  (target: adds ≤ 100 µs)")


def _request_bench() -> object:
    """Load bench/request.py (its echo server and vault builder) as a module."""
    spec = importlib.util.spec_from_file_location("bench_request",
                                                  Path(__file__).with_name("request.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_request"] = module
    spec.loader.exec_module(module)
    return module


def bulk_audit(path: Path, grant_id: str, events: int, recent: int) -> None:
    """Append ``events`` reservation events of one grant and caller, all but ``recent`` old.

    The rows carry placeholder hashes (this log is only counted, never verified); the head
    anchor is moved to the last row, unsigned, as an upgraded vault's would be.
    """
    now = time.time()
    conn = sqlite3.connect(path)
    with conn:
        (start,) = conn.execute("SELECT seq FROM audit_head").fetchone()
        rows = []
        for n in range(events):
            seq = start + 1 + n
            when = now - (86400 * 30 - n) if n < events - recent else now - 60
            data = json.dumps({"action": "request.reserve", "caller": "bench",
                               "grant_id": grant_id, "outcome": "allowed",
                               "principal": "system", "seq": seq})
            rows.append((seq, when, "system", grant_id, "echo", "allowed", "request.reserve",
                         data, f"{seq - 1:064x}", f"{seq:064x}", "bench"))
            if len(rows) >= 50_000:
                conn.executemany("INSERT INTO audit_events (seq, time, principal, grant_id, "
                                 "provider_id, outcome, action, data, prev_hash, hash, caller) "
                                 "VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
                rows.clear()
        conn.executemany("INSERT INTO audit_events (seq, time, principal, grant_id, "
                         "provider_id, outcome, action, data, prev_hash, hash, caller) "
                         "VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        last = start + events
        conn.execute("UPDATE audit_head SET seq = ?, hash = ?, signature = ''",
                     (last, f"{last:064x}"))
    conn.close()


async def rate_limits(events: int, rounds: int, block: int) -> None:
    """Print request p50 with a per-grant and a per-caller rate limit against none."""
    bench = _request_bench()
    port = bench.free_port()  # type: ignore[attr-defined]
    server = bench.start_server(port)  # type: ignore[attr-defined]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp)
            key = __import__("base64").b64encode(__import__("os").urandom(32)).decode()
            env = {"ALTER_MCP_MASTER_KEY": key}
            vault, gid = await bench.make_vault(data, port, None, env=env)  # type: ignore[attr-defined]
            await vault.close()
            start = time.perf_counter()
            bulk_audit(data / "vault.db", gid, events, recent=100)
            print(json.dumps({"audit_events": events,
                              "build_seconds": round(time.perf_counter() - start, 1)}))
            vaults: dict[str, AlterVault] = {}
            for per in ("none", "grant", "caller"):
                policy = None
                if per != "none":
                    policy = data / f"policy-{per}.toml"
                    policy.write_text(f'[[rule]]\nname = "limit-{per}"\nproviders = ["echo"]\n'
                                      f'rate_limit = {{ limit = 1000000, window_seconds = 3600, '
                                      f'per = "{per}" }}\n')
                settings_env = {**env, "ALTER_MCP_DATA_DIR": str(data),
                                "ALTER_MCP_ALLOW_INSECURE_HTTP": "true"}
                if policy is not None:
                    settings_env["ALTER_MCP_POLICY_FILE"] = str(policy)
                from alter_mcp.config import load_settings

                vaults[per] = AlterVault(load_settings(settings_env,
                                                       catalog={"echo": bench._api(port)}),  # type: ignore[attr-defined]
                                         caller="bench")
                await vaults[per].open()
            url = f"http://localhost:{port}/echo"
            p50: dict[str, list[float]] = {per: [] for per in vaults}
            ratios: dict[str, list[float]] = {"grant": [], "caller": []}
            for _ in range(rounds):
                for per, vault in vaults.items():
                    async def call(v: AlterVault = vault) -> object:
                        return await v.request("GET", url, grant_id=gid)
                    p50[per].append(await timed(call, block))
                for per in ratios:
                    ratios[per].append(p50[per][-1] / p50["none"][-1])
            for vault in vaults.values():
                await vault.close()
        for per in ("grant", "caller"):
            print(f"request p50 with a per-{per} rate limit over {events} audit events: "
                  f"{statistics.median(p50[per]) * 1e3:.3f} ms vs no rule "
                  f"{statistics.median(p50['none']) * 1e3:.3f} ms  ratio "
                  f"{spread(ratios[per])}  (target <= 1.2x)")
    finally:
        server.terminate()
        server.wait(timeout=10)


async def main() -> None:
    """Build the data, then run each comparison."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--grants", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--per-group", type=int, default=10_000)
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vault.db"
        start = time.perf_counter()
        member = await build(path, grants=args.grants, groups=args.groups,
                             per_group=args.per_group)
        print(json.dumps({"grants": args.grants, "groups": args.groups,
                          "per_group": args.per_group,
                          "build_seconds": round(time.perf_counter() - start, 1)}))
        await group_pages(path, member, args.rounds, args.block)
    policy_cost(args.rules, args.rounds, args.block)
    await rate_limits(args.events, args.rounds, max(20, args.block // 4))


if __name__ == "__main__":
    asyncio.run(main())
