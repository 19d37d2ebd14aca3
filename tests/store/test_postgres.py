"""What the PostgreSQL store must hold across replicas: each test races two stores (two pools,
as two replicas would have) or two processes on one database."""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from alter_mcp.audit import AuditEntry, AuditLog
from alter_mcp.errors import ConfigurationError, StoreError
from alter_mcp.models import GrantStatus, Outcome
from alter_mcp.store import AuditFilter, open_store
from alter_mcp.store.pg_migrations import MIGRATIONS
from alter_mcp.store.postgres import PostgresStore
from alter_mcp.store.sqlite import SQLiteStore
from tests.peers.postgres import PostgresCluster
from tests.store.test_store import ALICE, RING, T0, cred, make_grant, make_session

pytestmark = pytest.mark.peers

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "hunter2-Pg-Secret"
ALL = AuditFilter(limit=10_000)


@pytest.fixture
async def replicas(postgres_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Yield two open stores on one database, each with its own pool of four connections."""
    first = PostgresStore(postgres_url + "?pool_size=4")
    second = PostgresStore(postgres_url + "?pool_size=4")
    await first.open()
    await second.open()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def test_postgres_audit_chain_gapless_under_two_replicas(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    """Two replicas appending 200 events each at once leave one gapless, verifiable chain."""
    logs = [AuditLog(store, keyring=RING) for store in replicas]
    # Store-level appends, one transaction each (AuditLog.record would group-commit them).
    await asyncio.gather(*(
        replicas[n % 2].append_audit(logs[n % 2].sealer(AuditEntry(f"r{n % 2}.{n}",
                                                                   Outcome.ALLOWED)))
        for n in range(400)
    ))
    report = await logs[0].verify()
    assert report.ok and report.checked == 400, report
    events = await replicas[1].list_audit(ALL)
    assert [e.seq for e in events] == list(range(1, 401))
    owners = [e.action.split(".")[0] for e in events]
    assert owners.count("r0") == owners.count("r1") == 200
    assert owners != sorted(owners), "the two replicas' appends did not interleave"


async def test_postgres_audit_chain_gapless_under_two_processes(postgres_url: str) -> None:
    """Two OS processes appending 150 events each at once leave one gapless, verifiable chain."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.store._audit_writer", postgres_url, label, "150",
            RING.active.material.hex(),
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        for label in ("p0", "p1")
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        for proc in procs:
            await asyncio.wait_for(proc.wait(), 60)
            assert proc.returncode == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        report = await AuditLog(store).verify(keyring=RING)
        assert report.ok and report.checked == 300, report
    finally:
        await store.close()


async def test_postgres_audit_event_reads_back_identical(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    """An event read back from the database equals the one sealed, time and hash included."""
    moment = datetime(2026, 3, 4, 5, 6, 7, 891_234, tzinfo=UTC)
    log = AuditLog(replicas[0], clock=lambda: moment)
    written = await log.record(AuditEntry("t.time", Outcome.ALLOWED, latency_ms=12.3456,
                                          detail={"n": 1.5, "s": "é"}))
    [read] = await replicas[1].list_audit(ALL)
    assert read == written and read.time == moment.replace(microsecond=891_000)


async def test_postgres_refresh_lease_raced_one_winner(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    """Of twenty holders on two replicas racing for one grant's lease, exactly one wins."""
    for grant_id in ("g1", "g2", "g3"):
        won = await asyncio.gather(*(
            replicas[n % 2].acquire_refresh_lease(grant_id, f"holder{n}", 30) for n in range(20)
        ))
        assert won.count(True) == 1


async def test_postgres_claim_state_raced_one_winner(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    """An OAuth state claimed at once from both replicas is handed to exactly one claim."""
    await replicas[0].insert_session(make_session(1))
    assert await replicas[1].begin_authorization("s1", provider_id="github", state_hash="st1",
                                                 verifier_blob=b"v", key_id="kek_a")
    now = datetime.now(UTC)
    claims = await asyncio.gather(*(replicas[n % 2].claim_state("st1", now) for n in range(10)))
    assert sum(c is not None for c in claims) == 1


async def test_postgres_swap_credential_raced_one_winner(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    """Of ten replicas' writes against the same credential version, exactly one lands."""
    grant = make_grant(1)
    await replicas[0].insert_grant(grant, cred(grant.grant_id))
    swapped = await asyncio.gather(*(
        replicas[n % 2].swap_credential(cred(grant.grant_id, 2, f"b{n}".encode()),
                                        expected_version=1)
        for n in range(10)
    ))
    assert swapped.count(True) == 1
    record = await replicas[1].get_credential(grant.grant_id)
    assert record is not None and record.version == 2


async def test_postgres_migrations_raced_applied_once(postgres_url: str) -> None:
    """Four replicas starting at once on an empty database apply each migration once."""
    stores = [PostgresStore(postgres_url + "?pool_size=2") for _ in range(4)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        assert {await store.schema_version() for store in stores} == {MIGRATIONS[-1][0]}
        conn = await asyncpg.connect(postgres_url)
        try:
            versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")
        finally:
            await conn.close()
        assert [r["version"] for r in versions] == [v for v, _ in MIGRATIONS]
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_postgres_keyset_order_matches_sqlite_under_any_locale(
    postgres_cluster: PostgresCluster, tmp_path: Path,
) -> None:
    """Pages come out in SQLite's byte order even in a database whose collation differs."""
    ids = ["a_b", "aB", "ab", "A-1", "Ab", "a-b", "b", "Z"]
    name = "t_icu_order"
    postgres_cluster.psql(f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu "
                          "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
    try:
        locale_order = postgres_cluster.psql(
            f"SELECT string_agg(x, ' ' ORDER BY x) FROM unnest(ARRAY{ids!r}) x", database=name
        ).split()
        assert locale_order != sorted(ids), "the test database's collation is bytewise"
        pages: list[list[str]] = []
        for store in (SQLiteStore(tmp_path / "v.db"),
                      PostgresStore(postgres_cluster.url(name))):
            await store.open()
            try:
                for grant_id in ids:
                    await store.insert_grant(make_grant(0).model_copy(
                        update={"grant_id": grant_id}), None)
                seen: list[str] = []
                after = None
                while page := await store.list_grants([ALICE.key], limit=3, after=after):
                    seen.extend(g.grant_id for g in page)
                    after = (page[-1].created_at, page[-1].grant_id)
                pages.append(seen)
            finally:
                await store.close()
        assert pages[0] == pages[1] == sorted(ids)
    finally:
        postgres_cluster.drop_database(name)


async def test_postgres_constraint_violation_names_constraint(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    """A duplicate id raises StoreError naming the constraint, the driver error chained."""
    await replicas[0].insert_grant(make_grant(1), None)
    with pytest.raises(StoreError, match="grants_pkey") as caught:
        await replicas[1].insert_grant(make_grant(1), None)
    assert isinstance(caught.value.__cause__, asyncpg.UniqueViolationError)


async def test_postgres_open_failure_never_shows_password(
    postgres_cluster: PostgresCluster,
) -> None:
    """A failed connection raises StoreError whose text, repr and chain omit the password."""
    url = (f"postgresql://postgres:{PASSWORD}@{postgres_cluster.host}:{postgres_cluster.port}"
           "/no_such_db?pool_size=2")
    store = PostgresStore(url)
    with pytest.raises(StoreError, match="no_such_db") as caught:
        await store.open()
    shown = "".join(traceback.format_exception(caught.value)) + repr(caught.value) + repr(store)
    assert PASSWORD not in shown
    assert "***" in repr(store) and "pool_size" not in repr(store)


def test_postgres_url_settings_parsed_and_stripped() -> None:
    """pool_size and friends are read from the URL, validated, and not passed to the driver."""
    store = open_store(f"postgres://app:{PASSWORD}@db:5432/vault?pool_size=3&sslmode=disable")
    assert isinstance(store, PostgresStore) and store.pool_size == 3
    assert PASSWORD not in repr(store) and "sslmode=disable" in repr(store)
    for bad in ("pool_size=0", "pool_size=ten", "statement_cache_size=-1"):
        with pytest.raises(ConfigurationError, match=bad.split("=")[0]):
            PostgresStore(f"postgresql://app@db/vault?{bad}")


async def test_postgres_closed_store_raises_store_error(postgres_url: str) -> None:
    """Using a store that is not open raises StoreError, not a driver error."""
    store = PostgresStore(postgres_url)
    with pytest.raises(StoreError, match="not open"):
        await store.get_grant("g1")
    with pytest.raises(StoreError, match="not open"):
        await store.revoke_grant("g1", T0 + timedelta(seconds=1))



async def test_postgres_terminated_connections_replaced(
    postgres_cluster: PostgresCluster, replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    """After the server terminates a replica's connections, its next calls still succeed."""
    await replicas[0].insert_grant(make_grant(1), None)
    killed = postgres_cluster.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = 'alter-mcp'"
    )
    assert int(killed) >= 2
    await asyncio.sleep(0.1)
    assert await replicas[0].get_grant("g000001") is not None
    await replicas[1].set_grant_status("g000001", GrantStatus.NEEDS_REAUTH)
    grant = await replicas[0].get_grant("g000001")
    assert grant is not None and grant.status is GrantStatus.NEEDS_REAUTH


async def test_postgres_lost_database_raises_store_error(
    postgres_cluster: PostgresCluster,
) -> None:
    """When the database goes away under a store, reads and writes raise StoreError."""
    with postgres_cluster.database("t_doomed") as url:
        store = PostgresStore(url + "?pool_size=1")
        await store.open()
    try:
        with pytest.raises(StoreError) as read:
            await store.get_grant("g1")
        with pytest.raises(StoreError) as write:
            await store.insert_grant(make_grant(1), None)
        for caught in (read, write):
            assert isinstance(caught.value.__cause__, asyncpg.PostgresError | OSError)
    finally:
        await store.close()
