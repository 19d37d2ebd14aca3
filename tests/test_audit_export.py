"""Audit export: JSONL and CSV round trips, with filters."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alter_mcp.audit import AuditEntry, AuditLog, verify_chain
from alter_mcp.audit_export import export_events, parse_csv_row
from alter_mcp.models import AuditEvent, Identity, Outcome, UserPrincipal
from alter_mcp.store import AuditFilter
from alter_mcp.store.sqlite import SQLiteStore

ALICE = Identity(principal=UserPrincipal(issuer="https://idp.test", subject="alice"))


async def _log(tmp_path: Path) -> tuple[SQLiteStore, AuditLog, datetime]:
    store = SQLiteStore(tmp_path / "e.db")
    await store.open()
    clock = iter(datetime(2026, 5, 1, tzinfo=UTC) + timedelta(minutes=m) for m in range(100))
    log = AuditLog(store, clock=lambda: next(clock))
    for n in range(12):
        await log.record(AuditEntry(
            "request", Outcome.DENIED if n % 3 == 0 else Outcome.ALLOWED,
            identity=ALICE if n % 2 else None, grant_id=f"g{n % 4}",
            provider_id="github" if n < 6 else "slack", method="GET",
            url=f"https://api.test/{n}?page={n}&access_token=tok-{n}-secret", status=200,
            latency_ms=1.25 * n, reason="why, \"quoted\"\nnew line", detail={"n": n, "x": [1]},
        ))
    return store, log, datetime(2026, 5, 1, tzinfo=UTC)


async def test_audit_export_jsonl_round_trip_verifies(tmp_path: Path) -> None:
    """A full JSONL export parses back into events whose chain verifies."""
    store, log, _ = await _log(tmp_path)
    out = io.StringIO()
    assert await export_events(log, out, fmt="jsonl") == 12
    events = [AuditEvent.model_validate(json.loads(line)) for line in out.getvalue().splitlines()]
    assert events == await store.list_audit(AuditFilter())
    assert verify_chain(events, prev_hash="", expected_seq=1).ok
    assert "tok-3-secret" not in out.getvalue()
    await store.close()


async def test_audit_export_csv_round_trip(tmp_path: Path) -> None:
    """A CSV export with quotes and newlines parses back to the same events."""
    store, log, _ = await _log(tmp_path)
    out = io.StringIO()
    await export_events(log, out, fmt="csv")
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    parsed = [parse_csv_row(r) for r in rows]
    assert parsed == await store.list_audit(AuditFilter())
    assert verify_chain(parsed, prev_hash="", expected_seq=1).ok
    await store.close()


async def test_audit_export_filters(tmp_path: Path) -> None:
    """Time range, principal, grant, provider and outcome filters select the right events."""
    store, log, t0 = await _log(tmp_path)

    async def seqs(flt: AuditFilter) -> list[int]:
        out = io.StringIO()
        await export_events(log, out, fmt="jsonl", flt=flt)
        return [json.loads(line)["seq"] for line in out.getvalue().splitlines()]

    assert await seqs(AuditFilter(since=t0 + timedelta(minutes=3),
                                  until=t0 + timedelta(minutes=6))) == [4, 5, 6]
    assert await seqs(AuditFilter(principal=ALICE.principal.key)) == [2, 4, 6, 8, 10, 12]
    assert await seqs(AuditFilter(grant_id="g1")) == [2, 6, 10]
    assert await seqs(AuditFilter(provider_id="slack", outcome="denied")) == [7, 10]
    await store.close()


async def test_audit_export_pages_large_logs(tmp_path: Path) -> None:
    """Exports larger than one page include every event once."""
    store = SQLiteStore(tmp_path / "big.db")
    await store.open()
    log = AuditLog(store)
    for n in range(2500):
        await log.record(AuditEntry(f"a{n}", Outcome.ALLOWED))
    out = io.StringIO()
    assert await export_events(log, out, fmt="jsonl") == 2500
    seqs = [json.loads(line)["seq"] for line in out.getvalue().splitlines()]
    assert seqs == list(range(1, 2501))
    await store.close()
