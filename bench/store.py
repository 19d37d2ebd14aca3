"""Store benchmark: lookups and list pages at 100,000 grants, against raw sqlite3 in one run.

    python bench/store.py [--grants 100000] [--samples 2000]

Prints p50/p95 per operation for the SQLite store and, as the baseline, the same query through
the standard library's ``sqlite3`` on the same file, with their ratio. Targets (issue 2):
lookups p50 under 1 ms, a 50-item page p50 under 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alter_mcp.models import Grant, GrantKind, UserPrincipal
from alter_mcp.store import CredentialRecord
from alter_mcp.store.sqlite import SQLiteStore

PROVIDERS = ["github", "google", "slack", "notion", "linear"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def percentiles(samples: list[float]) -> tuple[float, float]:
    """Return p50 and p95 of samples, in milliseconds."""
    ordered = sorted(samples)
    return (statistics.median(ordered) * 1e3, ordered[int(len(ordered) * 0.95) - 1] * 1e3)


async def timed_async(fn: Callable[[], Awaitable[object]], n: int) -> list[float]:
    """Return n wall-clock durations of an async call."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - start)
    return out


def timed_sync(fn: Callable[[], object], n: int) -> list[float]:
    """Return n wall-clock durations of a sync call."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


async def populate(store: SQLiteStore, n: int) -> list[Grant]:
    """Insert n grants: most users hold one grant per provider, ten heavy users hold 100 each."""
    heavy = min(1000, n // 10)
    grants = []
    for i in range(n):
        subject = f"user{i // 5}" if i < n - heavy else f"heavy{i % 10}"
        owner = UserPrincipal(issuer="https://idp.bench", subject=subject)
        when = T0 + timedelta(milliseconds=i)
        grant = Grant(
            grant_id=f"{i:08d}-bench", kind=GrantKind.OAUTH, provider_id=PROVIDERS[i % 5],
            owner=owner, account_identifier=f"acct{i}@example.test", scopes=("read",),
            created_at=when, updated_at=when,
        )
        cred = CredentialRecord(grant_id=grant.grant_id, blob=b"x" * 180, key_id="kek_bench",
                                version=1, expires_at=when, updated_at=when)
        await store.insert_grant(grant, cred)
        grants.append(grant)
    return grants


async def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--grants", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        store = SQLiteStore(path)
        await store.open()
        start = time.perf_counter()
        grants = await populate(store, args.grants)
        print(f"inserted {len(grants):,} grants in {time.perf_counter() - start:.1f} s")
        raw = sqlite3.connect(path)
        regular = [g for g in grants if g.owner.key.count("#user")]
        heavy = [g for g in grants if not g.owner.key.count("#user")]
        ids = [rng.choice(regular) for _ in range(args.samples)]
        heavy_ids = [rng.choice(heavy) for _ in range(args.samples)]
        it = iter(ids * 2)

        async def by_id() -> object:
            return await store.get_grant(next(it).grant_id)

        pairs = iter([(g.owner.key, g.provider_id) for g in ids] * 2)

        async def by_owner() -> object:
            key, provider = next(pairs)
            return await store.find_grants([key], provider)

        owners = iter([g.owner.key for g in heavy_ids] * 2)

        async def page() -> object:
            return await store.list_grants([next(owners)], limit=50)

        raw_ids = iter([g.grant_id for g in ids])
        raw_pairs = iter([(g.owner.key, g.provider_id) for g in ids])
        raw_owners = iter([g.owner.key for g in heavy_ids])
        rows = [
            ("lookup by id", await timed_async(by_id, args.samples), timed_sync(
                lambda: raw.execute("SELECT * FROM grants WHERE grant_id=?",
                                    (next(raw_ids),)).fetchall(), args.samples)),
            ("lookup by (principal, provider)", await timed_async(by_owner, args.samples),
             timed_sync(lambda: raw.execute(
                 "SELECT * FROM grants WHERE owner_key=? AND provider_id=? AND status='active'",
                 next(raw_pairs)).fetchall(), args.samples)),
            ("list_grants page of 50", await timed_async(page, args.samples), timed_sync(
                lambda: raw.execute("SELECT * FROM grants WHERE owner_key=? ORDER BY "
                                    "created_at, grant_id LIMIT 50",
                                    (next(raw_owners),)).fetchall(), args.samples)),
        ]
        print(f"\n{'operation':34} {'p50 ms':>8} {'p95 ms':>8} {'raw p50':>8} {'ratio':>6}")
        for name, ours, base in rows:
            p50, p95 = percentiles(ours)
            b50, _ = percentiles(base)
            print(f"{name:34} {p50:8.3f} {p95:8.3f} {b50:8.3f} {p50 / b50:6.1f}x")
        raw.close()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
