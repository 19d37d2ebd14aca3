"""The SQLite store's foundation: its connections, lifecycle and transactions.

One writer connection (``BEGIN IMMEDIATE``, so other processes sharing the file queue behind
SQLite's own lock) and one reader connection. Each store call is one synchronous function over
a whole transaction. Reads run inline on the event loop: in WAL mode a reader never waits for a
lock, and a point read (~15 µs) is far cheaper than a hop to a worker thread (~100 µs); being
synchronous, two reads never interleave, so the reader needs no lock. Writes are tried inline
with no busy wait; only when another process holds the write lock does the transaction move to
a worker thread that waits for it, holding an async lock that keeps every other write of this
process behind it. A write that finds that lock free runs inline without taking it: nothing can
interleave with a synchronous transaction, and skipping the lock saves an event-loop turn.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypeVar, cast

import anyio
import anyio.to_thread

from alter_mcp.errors import StoreError
from alter_mcp.store.migrations import MIGRATIONS
from alter_mcp.store.sqlite_wal import Checkpointer

__all__ = ["Conn", "SQLiteBase", "now_epoch", "quick_check"]

T = TypeVar("T")
Conn = sqlite3.Connection


def now_epoch() -> float:
    """Return the current UTC time as epoch seconds, as the tables store times."""
    return datetime.now(UTC).timestamp()


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(exc)


def _write_error(exc: sqlite3.Error) -> StoreError:
    if isinstance(exc, sqlite3.IntegrityError):
        return StoreError(f"A database constraint failed: {exc}.")
    return StoreError("A database write failed.")


def quick_check(path: str | Path, *, limit: int = 20) -> list[str]:
    """Return what ``PRAGMA quick_check`` finds wrong in the file (empty when intact).

    Opens its own read-only connection, so a file too damaged for the store to open is still
    examined. Raises ``StoreError`` when the file cannot be read at all.
    """
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
        try:
            rows = conn.execute(f"PRAGMA quick_check({int(limit)})").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        # A page too damaged to walk stops the check itself: that is a finding, not a failure.
        if isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc):
            return [str(exc)]
        raise StoreError(f"Cannot read the SQLite database at {path}: {exc}.",
                         hint="Check the path and its permissions.") from exc
    problems = [str(row[0]) for row in rows]
    return [] if problems == ["ok"] else problems


def _is_damaged(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT) or any(
        words in str(exc) for words in ("file is not a database", "malformed"))


def _open_error(path: Path, exc: Exception) -> StoreError:
    return StoreError(f"Cannot open the SQLite database at {path}: {exc}.",
                      hint="Check ALTER_MCP_DATABASE_URL and that the directory is writable.")


class SQLiteBase:
    """The connections, lifecycle and transaction helpers every part of the store builds on."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 10_000) -> None:
        self._path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._writer: Conn | None = None
        self._reader: Conn | None = None
        self._checkpointer: Checkpointer | None = None
        self._write_lock = anyio.Lock()

    @classmethod
    def from_url(cls, url: str) -> Self:
        """Build a store from a ``sqlite:///path`` URL."""
        return cls(url.removeprefix("sqlite:///"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self._path)!r})"

    @property
    def path(self) -> Path:
        """Return the database file path."""
        return self._path

    # -- lifecycle ------------------------------------------------------------------------
    def _connect(self, busy_timeout_ms: int) -> Conn:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _make_private(self) -> None:
        """Create the database file 0600 (SQLite gives ``-wal``/``-shm`` its mode) or tighten it."""
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            os.close(fd)
        if os.name != "posix":
            return
        for suffix in ("", "-wal", "-shm"):
            path = self._path.with_name(self._path.name + suffix)
            with contextlib.suppress(FileNotFoundError):
                if stat.S_IMODE(path.stat().st_mode) & 0o077:
                    # Sealed blobs are safe anywhere, but the grants, owners and audit trail
                    # beside them are nobody else's business.
                    os.chmod(path, 0o600)

    def _open_sync(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._make_private()
        writer = self._connect(self._busy_timeout_ms)
        try:
            writer.execute("PRAGMA journal_mode = WAL")
            self._transaction(writer, self._migrate)
            writer.execute("PRAGMA busy_timeout = 0")
            self._reader = self._connect(self._busy_timeout_ms)
        except BaseException:
            writer.close()
            raise
        self._checkpointer = Checkpointer(self._path)
        self._checkpointer.start()
        self._writer = writer

    async def open(self) -> None:
        """Open the file (creating its directory), enable WAL and migrate."""
        if self._writer is not None:
            return
        try:
            await anyio.to_thread.run_sync(self._open_sync)
        except sqlite3.DatabaseError as exc:
            if _is_damaged(exc):
                raise StoreError(
                    f"The SQLite database at {self._path} is damaged or is not an alter-mcp "
                    f"database ({exc}).",
                    hint="Stop every alter-mcp process, move the file aside and restore "
                         "vault.db from a backup (with its -wal file, if any); `alter-mcp "
                         "doctor` checks it. Do not delete the key file.",
                ) from exc
            raise _open_error(self._path, exc) from exc
        except OSError as exc:
            raise _open_error(self._path, exc) from exc

    async def close(self) -> None:
        """Stop the checkpoint thread and close both connections."""
        if self._checkpointer is not None:
            await anyio.to_thread.run_sync(self._checkpointer.stop)
            self._checkpointer = None
        async with self._write_lock:
            for conn in (self._reader, self._writer):
                if conn is not None:
                    conn.close()
            self._reader = self._writer = None

    @staticmethod
    def _migrate(conn: Conn) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                     "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
        current = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, now_epoch()))

    async def schema_version(self) -> int:
        """Return the applied migration version."""
        row = await self._one("SELECT MAX(version) AS v FROM schema_migrations", ())
        return int(row["v"]) if row and row["v"] is not None else 0

    @property
    def expected_schema_version(self) -> int:
        """Return the migration version this code writes (the database should be at it)."""
        return MIGRATIONS[-1][0]

    # -- plumbing -------------------------------------------------------------------------
    @staticmethod
    def _transaction(conn: Conn, fn: Callable[[Conn], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def _waiting_transaction(self, conn: Conn, fn: Callable[[Conn], T]) -> T:
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        try:
            return self._transaction(conn, fn)
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    async def _write(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn`` in one write transaction, waiting on a worker thread if locked."""
        # No transaction of ours waits on a thread: inline, without the lock (nothing can
        # interleave with a synchronous transaction, and the lock costs a loop turn).
        if not self._write_lock.locked():
            done, result = self._inline(fn)
            if done:
                return result
        async with self._write_lock:
            done, result = self._inline(fn)
            if done:
                return result
            try:
                return self._committed(await anyio.to_thread.run_sync(
                    self._waiting_transaction, self._writable(), fn))
            except sqlite3.Error as exc:
                raise _write_error(exc) from exc

    def _inline(self, fn: Callable[[Conn], T]) -> tuple[bool, T]:
        """Try ``fn``'s transaction now without waiting; (False, _) if another process holds
        the write lock."""
        try:
            return True, self._committed(self._transaction(self._writable(), fn))
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise _write_error(exc) from exc
        except sqlite3.Error as exc:
            raise _write_error(exc) from exc
        return False, cast(T, None)

    def _committed(self, result: T) -> T:
        if self._checkpointer is not None:
            self._checkpointer.committed()
        return result

    def _writable(self) -> Conn:
        if self._writer is None:
            raise StoreError("The store is not open.", hint="Use the vault as `async with`.")
        return self._writer

    async def _read(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn`` on the reader connection, inline (WAL readers never wait)."""
        conn = self._reader
        if conn is None:
            raise StoreError("The store is not open.", hint="Use the vault as `async with`.")
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise StoreError("A database read failed.") from exc

    async def _all(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        return await self._read(lambda c: c.execute(sql, tuple(params)).fetchall())

    async def _one(self, sql: str, params: Sequence[Any]) -> sqlite3.Row | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None
