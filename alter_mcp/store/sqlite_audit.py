"""The SQLite store's audit statements: append, filter, prune behind a checkpoint.

Each function runs on a connection inside a transaction the caller holds (``BEGIN IMMEDIATE``
for writes), so a prune, its checkpoint and its own audit event commit or fail together, and
no other writer (in this process or another sharing the file) sees the chain in between.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from alter_mcp.models import AuditEvent
from alter_mcp.store import _rows
from alter_mcp.store.base import (
    AuditFilter,
    AuditHead,
    AuditSealer,
    Checkpoint,
    CheckpointSealer,
    PruneAuditor,
    PruneResult,
    Reservation,
)

__all__ = ["append", "append_many", "append_within", "checkpoints", "head", "prune", "select"]

Conn = sqlite3.Connection


def append(conn: Conn, seal: AuditSealer) -> AuditEvent:
    """Append one chained audit event inside the caller's transaction."""
    return append_many(conn, (seal,))[0]


def append_many(conn: Conn, seals: Sequence[AuditSealer]) -> list[AuditEvent]:
    """Append chained audit events, in order, and advance the head anchor (caller's transaction).

    The chain continues from the anchor, not from the newest row: rows deleted from the end
    then leave a gap the next event cannot close.
    """
    head = conn.execute("SELECT seq, hash FROM audit_head").fetchone()
    if head is None:
        raise _rows.missing_head()
    events, params, anchor = _rows.seal_chain(seals, head)
    conn.executemany(f"INSERT INTO audit_events ({_rows.AUDIT_COLUMNS}) "
                     "VALUES (?,?,?,?,?,?,?,?,?,?,?)", params)
    conn.execute("UPDATE audit_head SET seq = ?, hash = ?, signature = ?", anchor)
    return events


def _where(flt: AuditFilter) -> tuple[str, list[Any]]:
    # No "seq > 0" when not paging: it would tempt the planner onto the primary key.
    clauses: list[str] = ["seq > ?"] if flt.after_seq else []
    params: list[Any] = [flt.after_seq] if flt.after_seq else []
    for column, value in (("principal", flt.principal), ("grant_id", flt.grant_id),
                          ("provider_id", flt.provider_id), ("outcome", flt.outcome),
                          ("action", flt.action), ("caller", flt.caller)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if flt.since is not None:
        clauses.append("time >= ?")
        params.append(_rows.ts(flt.since))
    if flt.until is not None:
        clauses.append("time < ?")
        params.append(_rows.ts(flt.until))
    return " AND ".join(clauses) or "1", params


def select(conn: Conn, flt: AuditFilter) -> list[AuditEvent]:
    """Return the events matching ``flt``, ordered by seq."""
    where, params = _where(flt)
    rows = conn.execute(
        f"SELECT * FROM audit_events WHERE {where} ORDER BY seq LIMIT ?", (*params, flt.limit)
    ).fetchall()
    return [_rows.audit(r) for r in rows]


def count(conn: Conn, flt: AuditFilter) -> int:
    """Return how many events match ``flt``, counting no further than ``flt.limit``."""
    where, params = _where(flt)
    (found,) = conn.execute(
        f"SELECT COUNT(*) FROM (SELECT 1 FROM audit_events WHERE {where} LIMIT ?)",
        (*params, flt.limit)).fetchone()
    return int(found)


def append_within(conn: Conn, seal: AuditSealer,
                  limits: Sequence[tuple[AuditFilter, int]]) -> Reservation:
    """Append ``seal``'s event unless a filter already matches its limit (caller's lock held)."""
    for index, (flt, limit) in enumerate(limits):
        if count(conn, replace(flt, limit=limit)) >= limit:
            return Reservation(event=None, exceeded=index)
    return Reservation(event=append(conn, seal), exceeded=None)


def prune(conn: Conn, before: datetime, seal: CheckpointSealer,
          audit: PruneAuditor | None) -> PruneResult:
    """Delete the gapless prefix of events older than ``before`` behind a new checkpoint."""
    # Events are timed by the clock of whichever process wrote them, so time order and seq
    # order can disagree slightly: stop at the first event that is not old enough, never
    # leaving a hole in the chain, and always keep the newest event as the chain's head.
    row = conn.execute(
        "SELECT seq, hash FROM audit_events WHERE seq < COALESCE("
        "(SELECT MIN(seq) FROM audit_events WHERE time >= ?), "
        "(SELECT MAX(seq) FROM audit_events)) ORDER BY seq DESC LIMIT 1",
        (_rows.ts(before),),
    ).fetchone()
    deleted, checkpoint = 0, None
    if row is not None:
        checkpoint = seal(int(row["seq"]), str(row["hash"]))
        conn.execute("INSERT INTO audit_checkpoints VALUES (?,?,?,?)",
                     _rows.checkpoint_params(checkpoint))
        deleted = conn.execute("DELETE FROM audit_events WHERE seq <= ?",
                               (checkpoint.seq,)).rowcount
    if audit is not None:
        append(conn, audit(deleted, checkpoint))
    return PruneResult(deleted=deleted, checkpoint=checkpoint)


def head(conn: Conn) -> AuditHead | None:
    """Return the audit head anchor, or None if it was deleted."""
    row = conn.execute("SELECT seq, hash, signature FROM audit_head").fetchone()
    return None if row is None else _rows.audit_head(row)


def checkpoints(conn: Conn, *, latest: bool = False) -> list[Checkpoint]:
    """Return every checkpoint ordered by seq, or only the latest one."""
    sql = ("SELECT * FROM audit_checkpoints ORDER BY seq DESC LIMIT 1" if latest
           else "SELECT * FROM audit_checkpoints ORDER BY seq")
    return [_rows.checkpoint(r) for r in conn.execute(sql).fetchall()]
