"""Audit append benchmark: the signed head anchor against the append it replaced, in one run.

    python bench/audit.py [--events 2000] [--rounds 7] [--concurrency 32] [--postgres URL]

Three variants append audit events through ``AuditLog.record`` on their own SQLite file (and
PostgreSQL database, with ``--postgres``): (a) *before*, the previous append (the head read from
the newest event, no anchor row), (b) *anchor*, the anchor row read and updated but unsigned,
(c) *signed*, what the vault does (the anchor updated and HMAC-signed once per transaction).
Each round runs every variant once, in a rotating order, for sequential latency (one event per
transaction) and for throughput with N concurrent callers (group commits). Prints the median
and spread (min to max) over rounds, and each variant's ratio to (a) by median.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alter_mcp.audit import AuditEntry, AuditLog
from alter_mcp.crypto import KeyEncryptionKey, Keyring
from alter_mcp.models import AuditEvent, Outcome
from alter_mcp.store import Store, _pg, _rows, sqlite_audit
from alter_mcp.store.base import AuditSealer
from alter_mcp.store.sqlite import SQLiteStore

VARIANTS = ("before", "anchor", "signed")
_EMPTY = {"seq": 0, "hash": ""}


def _before_sqlite(conn: sqlite3.Connection, seals: Sequence[AuditSealer]) -> list[AuditEvent]:
    """The SQLite append as it was before the head anchor (for the baseline only)."""
    head = conn.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
    events, params, _ = _rows.seal_chain(seals, head or _EMPTY)
    conn.executemany("INSERT INTO audit_events VALUES (?,?,?,?,?,?,?,?,?,?)", params)
    return events


async def _before_pg(conn: Any, seals: Sequence[AuditSealer]) -> list[AuditEvent]:
    """The PostgreSQL append as it was before the head anchor (for the baseline only)."""
    await _pg.lock_audit(conn)
    head = await conn.fetchrow("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
    events, params, _ = _rows.seal_chain(seals, head or _EMPTY)
    await conn.executemany("INSERT INTO audit_events VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
                           params)
    return events


@contextmanager
def previous_append(enabled: bool) -> Iterator[None]:
    """Swap the stores' append for the previous one while ``enabled``."""
    from alter_mcp.store import postgres

    targets: list[tuple[Any, str, Any]] = [(sqlite_audit, "append_many", _before_sqlite),
                                          (_pg, "append_events", _before_pg),
                                          (postgres, "append_events", _before_pg)]
    saved = [getattr(module, name) for module, name, _ in targets]
    if enabled:
        for module, name, replacement in targets:
            setattr(module, name, replacement)
    try:
        yield
    finally:
        for (module, name, _), original in zip(targets, saved, strict=True):
            setattr(module, name, original)


async def sequential(log: AuditLog, n: int) -> float:
    """Return the median latency in ms of ``n`` events recorded one after another."""
    samples = []
    for i in range(n):
        start = time.perf_counter()
        await log.record(AuditEntry("bench.seq", Outcome.ALLOWED, grant_id=f"g{i % 9}"))
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


async def concurrent(log: AuditLog, n: int, workers: int) -> float:
    """Return events per second with ``workers`` callers recording ``n`` events in all."""
    async def one(i: int) -> None:
        with log.in_flight():
            await asyncio.sleep(0)
            await log.record(AuditEntry("bench.par", Outcome.ALLOWED, grant_id=f"g{i % 9}"))

    start = time.perf_counter()
    for base in range(0, n, workers):
        await asyncio.gather(*(one(base + k) for k in range(min(workers, n - base))))
    return n / (time.perf_counter() - start)


def summary(name: str, values: dict[str, list[float]], unit: str) -> None:
    """Print one table: median, spread and ratio to 'before' per variant."""
    base = statistics.median(values["before"])
    print(f"\n{name} ({unit})")
    print(f"{'variant':8} {'median':>10} {'min':>10} {'max':>10} {'vs before':>10}")
    for variant in VARIANTS:
        vals = values[variant]
        med = statistics.median(vals)
        ratio = med / base
        print(f"{variant:8} {med:10.3f} {min(vals):10.3f} {max(vals):10.3f} {ratio:9.3f}x")


async def run_backend(label: str, make: Callable[[str], Store], args: argparse.Namespace
                      ) -> None:
    """Benchmark the three variants on one backend, interleaved round by round."""
    ring = Keyring(KeyEncryptionKey(os.urandom(32)))
    stores = {v: make(v) for v in VARIANTS}
    for store in stores.values():
        await store.open()
    logs = {v: AuditLog(stores[v], keyring=ring if v == "signed" else None) for v in VARIANTS}
    latency: dict[str, list[float]] = {v: [] for v in VARIANTS}
    rate: dict[str, list[float]] = {v: [] for v in VARIANTS}
    try:
        for r in range(args.rounds):
            order = VARIANTS[r % 3:] + VARIANTS[:r % 3]
            for v in order:
                with previous_append(v == "before"):
                    latency[v].append(await sequential(logs[v], args.events // 4))
                    rate[v].append(await concurrent(logs[v], args.events, args.concurrency))
        print(f"\n== {label}: {args.rounds} rounds, {args.events // 4} sequential and "
              f"{args.events} concurrent events per variant per round")
        summary("sequential record, median latency", latency, "ms")
        summary(f"{args.concurrency} concurrent callers, throughput", rate, "events/s")
        assert (await logs["signed"].verify()).ok
    finally:
        for store in stores.values():
            await store.close()


async def main() -> None:
    """Run the benchmark on SQLite (and PostgreSQL if given) and print the tables."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--postgres", help="a postgresql:// URL of a server to create 3 "
                        "databases on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await run_backend("SQLite", lambda v: SQLiteStore(Path(tmp) / f"{v}.db"), args)
    if args.postgres:
        import asyncpg

        from alter_mcp.store.postgres import PostgresStore

        admin = await asyncpg.connect(args.postgres)
        base, _, _ = args.postgres.rpartition("/")
        try:
            for v in VARIANTS:
                await admin.execute(f"DROP DATABASE IF EXISTS bench_audit_{v}")
                await admin.execute(f"CREATE DATABASE bench_audit_{v}")
            await run_backend("PostgreSQL",
                              lambda v: PostgresStore(f"{base}/bench_audit_{v}"), args)
        finally:
            for v in VARIANTS:
                await admin.execute(f"DROP DATABASE IF EXISTS bench_audit_{v}")
            await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
