"""Connect sessions in SQLite: a state is claimed once, inside the write transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from alter_mcp.models import ConnectSession, ConnectSessionStatus
from alter_mcp.store import _rows
from alter_mcp.store.base import SessionRecord
from alter_mcp.store.sqlite_base import Conn, SQLiteBase, now_epoch

__all__ = ["SQLiteSessions"]


class SQLiteSessions(SQLiteBase):
    """The connect-session part of the SQLite store."""

    async def insert_session(self, record: SessionRecord) -> None:
        """Store a new connect session."""
        await self._write(lambda c: c.execute(
            "INSERT INTO connect_sessions (session_id, token_hash, state_hash, owner_key, "
            "data, status, provider_id, verifier_blob, key_id, expires_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)", _rows.session_params(record)))

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """Return a session by id."""
        row = await self._one("SELECT * FROM connect_sessions WHERE session_id=?", (session_id,))
        return _rows.session(row) if row else None

    async def get_session_by_token(self, token_hash: str) -> SessionRecord | None:
        """Return a session by the hash of its connect token."""
        row = await self._one("SELECT * FROM connect_sessions WHERE token_hash=?", (token_hash,))
        return _rows.session(row) if row else None

    async def begin_authorization(
        self, session_id: str, *, provider_id: str, state_hash: str, verifier_blob: bytes,
        key_id: str,
    ) -> bool:
        """Record the OAuth state and sealed verifier of a pending session's authorization."""
        def run(c: Conn) -> bool:
            cur = c.execute(
                "UPDATE connect_sessions SET provider_id=?, state_hash=?, verifier_blob=?, "
                "key_id=? WHERE session_id=? AND status='pending' AND state_used=0 "
                "AND expires_at > ?",
                (provider_id, state_hash, verifier_blob, key_id, session_id, now_epoch()),
            )
            return cur.rowcount == 1

        return await self._write(run)

    async def claim_state(self, state_hash: str, now: datetime) -> SessionRecord | None:
        """Consume a pending, unexpired session's state exactly once; None if not claimable."""
        def run(c: Conn) -> SessionRecord | None:
            cur = c.execute(
                "UPDATE connect_sessions SET state_used=1 WHERE state_hash=? AND state_used=0 "
                "AND status='pending' AND expires_at > ?", (state_hash, now.timestamp()))
            if cur.rowcount != 1:
                return None
            row = c.execute("SELECT * FROM connect_sessions WHERE state_hash=?",
                            (state_hash,)).fetchone()
            return _rows.session(row) if row else None

        return await self._write(run)

    async def claim_session(self, session_id: str, *, provider_id: str, now: datetime) -> bool:
        """Consume a pending, unexpired session with no authorization under way, exactly once."""
        def run(c: Conn) -> bool:
            cur = c.execute(
                "UPDATE connect_sessions SET state_used=1, provider_id=? WHERE session_id=? "
                "AND status='pending' AND state_used=0 AND expires_at > ?",
                (provider_id, session_id, now.timestamp()))
            return cur.rowcount == 1

        return await self._write(run)

    async def finish_session(
        self,
        session_id: str,
        status: ConnectSessionStatus,
        *,
        grant_ids: Sequence[str] = (),
        error: str | None = None,
    ) -> None:
        """Mark a session completed or failed."""
        def run(c: Conn) -> None:
            row = c.execute("SELECT data FROM connect_sessions WHERE session_id=?",
                            (session_id,)).fetchone()
            if row is None:
                return
            session = ConnectSession.model_validate_json(row["data"])
            updated = session.model_copy(
                update={"status": status, "grant_ids": tuple(grant_ids), "error": error})
            c.execute("UPDATE connect_sessions SET data=?, status=? WHERE session_id=?",
                      (updated.model_dump_json(), status.value, session_id))

        await self._write(run)
