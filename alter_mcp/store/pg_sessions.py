"""Connect sessions in PostgreSQL: handles that any replica can look up, states claimed once.

A connect session started on one replica may come back on another (the user's browser is
routed anywhere), so nothing about a session lives in process memory. ``claim_state`` is one
``UPDATE … RETURNING``: of two replicas racing on the same callback, the second re-reads the
updated row, sees ``state_used`` and gets nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from alter_mcp.models import ConnectSession, ConnectSessionStatus
from alter_mcp.store import _rows
from alter_mcp.store._pg import PostgresBase, transaction
from alter_mcp.store.base import SessionRecord

__all__ = ["PostgresSessions"]


def _now() -> float:
    return datetime.now(UTC).timestamp()


def _ts(value: datetime) -> float:
    return value.timestamp()


class PostgresSessions(PostgresBase):
    """The connect-session part of the PostgreSQL store."""

    async def insert_session(self, record: SessionRecord) -> None:
        """Store a new connect session."""
        await self._exec(
            "INSERT INTO connect_sessions (session_id, token_hash, state_hash, owner_key, "
            "data, status, provider_id, verifier_blob, key_id, expires_at) "
            "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
            *_rows.session_params(record),
        )

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """Return a session by id."""
        row = await self._one("SELECT * FROM connect_sessions WHERE session_id=$1", session_id)
        return _rows.session(row) if row else None

    async def get_session_by_token(self, token_hash: str) -> SessionRecord | None:
        """Return a session by the hash of its connect token."""
        row = await self._one("SELECT * FROM connect_sessions WHERE token_hash=$1", token_hash)
        return _rows.session(row) if row else None

    async def begin_authorization(
        self, session_id: str, *, provider_id: str, state_hash: str, verifier_blob: bytes,
        key_id: str,
    ) -> bool:
        """Record the OAuth state and sealed verifier of a pending session's authorization."""
        return await self._exec(
            "UPDATE connect_sessions SET provider_id=$1, state_hash=$2, verifier_blob=$3, "
            "key_id=$4 WHERE session_id=$5 AND status='pending' AND NOT state_used "
            "AND expires_at > $6",
            provider_id, state_hash, verifier_blob, key_id, session_id, _now(),
        ) == 1

    async def claim_state(self, state_hash: str, now: datetime) -> SessionRecord | None:
        """Consume a pending, unexpired session's state exactly once; None if not claimable."""
        # One statement: of two replicas racing, the second re-checks state_used and loses.
        async with transaction(self._pool) as conn:
            row = await conn.fetchrow(
                "UPDATE connect_sessions SET state_used=true WHERE state_hash=$1 "
                "AND NOT state_used AND status='pending' AND expires_at > $2 RETURNING *",
                state_hash, _ts(now),
            )
        return _rows.session(row) if row else None

    async def claim_session(self, session_id: str, *, provider_id: str, now: datetime) -> bool:
        """Consume a pending, unexpired session with no authorization under way, exactly once."""
        # One statement: of two replicas racing, the second re-checks state_used and loses.
        return await self._exec(
            "UPDATE connect_sessions SET state_used=true, provider_id=$1 WHERE session_id=$2 "
            "AND status='pending' AND NOT state_used AND expires_at > $3",
            provider_id, session_id, _ts(now),
        ) == 1

    async def finish_session(
        self,
        session_id: str,
        status: ConnectSessionStatus,
        *,
        grant_ids: Sequence[str] = (),
        error: str | None = None,
    ) -> None:
        """Mark a session completed or failed."""
        async with transaction(self._pool) as conn:
            row = await conn.fetchrow(
                "SELECT data FROM connect_sessions WHERE session_id=$1 FOR UPDATE", session_id
            )
            if row is None:
                return
            session = ConnectSession.model_validate_json(row["data"])
            updated = session.model_copy(
                update={"status": status, "grant_ids": tuple(grant_ids), "error": error}
            )
            await conn.execute("UPDATE connect_sessions SET data=$1, status=$2 "
                               "WHERE session_id=$3",
                               updated.model_dump_json(), status.value, session_id)
