"""PostgreSQL plumbing: the URL (password masked), the pool, error translation, the audit append.

Exceptions of the driver (``asyncpg``) become :class:`~alter_mcp.errors.StoreError` here and
only here, with the driver's exception chained. Messages name a constraint or an operation,
never a value, and the URL's password never appears in a message or a repr.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Self, TypeAlias
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import anyio

from alter_mcp.errors import ConfigurationError, StoreError

try:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy
except ImportError as exc:  # pragma: no cover - the dev extra installs the driver
    raise ConfigurationError(
        "The PostgreSQL store needs the asyncpg driver, which is not installed.",
        setting="ALTER_MCP_DATABASE_URL", hint="pip install 'alter-mcp[postgres]'",
    ) from exc

from alter_mcp.models import AuditEvent
from alter_mcp.store import _rows
from alter_mcp.store.base import AuditSealer
from alter_mcp.store.pg_migrations import AUDIT_LOCK, LOCK_NAMESPACE, MIGRATIONS, migrate

__all__ = [
    "DRIVER_ERRORS",
    "Conn",
    "PostgresBase",
    "PostgresURL",
    "append_event",
    "append_events",
    "bind",
    "bind_all",
    "create_pool",
    "lock_audit",
    "rowcount",
    "transaction",
    "translate",
    "translating",
]

#: A connection borrowed from the pool.
Conn: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

_SETTING = "ALTER_MCP_DATABASE_URL"
_CLOSE_GRACE = 10.0
_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})
#: Query parameters the store reads itself; the driver would send unknown ones as GUCs.
_OWN_QUERY_KEYS = {"pool_size": 10, "pool_min_size": 1, "statement_cache_size": 100}
#: What the driver raises for a failed connection, query or pool operation.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError, asyncpg.InterfaceError, OSError,
)


@dataclass(frozen=True, slots=True)
class PostgresURL:
    """A ``postgresql://`` URL split into the driver's DSN and the store's own settings."""

    dsn: str = field(repr=False)
    masked: str
    pool_size: int
    pool_min_size: int
    statement_cache_size: int
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def parse(cls, url: str) -> PostgresURL:
        """Split ``url``, validating ``pool_size``, ``pool_min_size``, ``statement_cache_size``."""
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigurationError(
                f"Not a PostgreSQL URL (scheme {parts.scheme!r}).", setting=_SETTING,
                hint="Use postgresql://USER:PASSWORD@HOST:PORT/DATABASE.",
            )
        query = parse_qsl(parts.query, keep_blank_values=True)
        own = {key: value for key, value in query if key in _OWN_QUERY_KEYS}
        settings = {key: _positive_int(key, own.get(key), default)
                    for key, default in _OWN_QUERY_KEYS.items()}
        if settings["pool_min_size"] > settings["pool_size"]:
            settings["pool_min_size"] = settings["pool_size"]
        rest = [(key, value) for key, value in query if key not in _OWN_QUERY_KEYS]
        userinfo, _, hosts = parts.netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        secrets = [password, unquote(password)] if colon and password else []
        secrets += [value for key, value in rest if key in _SECRET_QUERY_KEYS and value]
        masked_netloc = f"{user}:***@{hosts}" if colon else parts.netloc
        masked_query = [(k, "***" if k in _SECRET_QUERY_KEYS else v) for k, v in rest]
        return cls(
            dsn=urlunsplit(parts._replace(query=urlencode(rest))),
            masked=urlunsplit(parts._replace(netloc=masked_netloc,
                                             query=urlencode(masked_query, safe="*"))),
            pool_size=settings["pool_size"], pool_min_size=settings["pool_min_size"],
            statement_cache_size=settings["statement_cache_size"],
            secrets=tuple(secrets),
        )

    def scrub(self, text: str) -> str:
        """Return ``text`` with every secret of this URL replaced by ``***``."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def _positive_int(key: str, raw: str | None, default: int) -> int:
    if raw is None:
        return default
    minimum = 0 if key == "statement_cache_size" else 1
    if not re.fullmatch(r"\d{1,6}", raw) or int(raw) < minimum:
        raise ConfigurationError(
            f"The database URL's {key}={raw!r} is not a whole number >= {minimum}.",
            setting=_SETTING, hint=f"Write e.g. ?{key}={default}.",
        )
    return int(raw)


async def create_pool(url: PostgresURL) -> asyncpg.Pool[asyncpg.Record]:
    """Open a connection pool for ``url``, raising ``StoreError`` if it cannot connect."""
    try:
        return await asyncpg.create_pool(
            url.dsn, min_size=url.pool_min_size, max_size=url.pool_size,
            statement_cache_size=url.statement_cache_size,
            server_settings={"application_name": "alter-mcp"}, reset=_keep_session,
        )
    except DRIVER_ERRORS as exc:
        reason = url.scrub(str(exc).strip() or type(exc).__name__).rstrip(".")
        raise StoreError(
            f"Cannot open the PostgreSQL database at {url.masked}: {reason}.",
            hint="Check ALTER_MCP_DATABASE_URL, that the server is reachable and that the "
                 "database and role exist.",
        ) from exc


async def _keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Skip the driver's per-release ``RESET ALL``/unlock round trip (it doubled a lookup).

    The store never changes session state: no ``SET``, no session-level advisory locks, no
    ``LISTEN``. The driver still rolls back a transaction left open before this is called.
    """


def translate(exc: BaseException, operation: str) -> StoreError:
    """Return the ``StoreError`` for a driver exception raised during ``operation``."""
    # The server's message text can quote bound values, so only its class and code are kept.
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        what = exc.constraint_name or exc.sqlstate
        return StoreError(f"A database constraint failed: {what}.")
    if isinstance(exc, asyncpg.exceptions.TransactionRollbackError):
        return StoreError(f"A database {operation} was rolled back by a conflict; retry it.")
    if isinstance(exc, asyncpg.PostgresError) and not isinstance(
        exc, asyncpg.exceptions.PostgresConnectionError
    ):
        hint = ("The first start needs a role that may create tables in the database."
                if operation == "migration" else None)
        return StoreError(f"A database {operation} failed ({type(exc).__name__}, SQLSTATE "
                          f"{exc.sqlstate}).", hint=hint)
    return StoreError(f"A database {operation} failed: the connection was lost or refused.",
                      hint="Check that the PostgreSQL server is reachable.")


@contextmanager
def translating(operation: str) -> Iterator[None]:
    """Translate driver exceptions raised in the block into ``StoreError``."""
    try:
        yield
    except DRIVER_ERRORS as exc:
        raise translate(exc, operation) from exc


@asynccontextmanager
async def transaction(pool: asyncpg.Pool[asyncpg.Record] | None) -> AsyncIterator[Conn]:
    """Yield a pooled connection inside a transaction; driver errors become ``StoreError``."""
    with translating("write"):
        async with _acquire(pool) as conn, conn.transaction():
            yield conn


@asynccontextmanager
async def _acquire(pool: asyncpg.Pool[asyncpg.Record] | None) -> AsyncIterator[Conn]:
    if pool is None:
        raise StoreError("The store is not open.", hint="Use the vault as `async with`.")
    async with pool.acquire() as conn:
        yield conn


def rowcount(status: str) -> int:
    """Return the row count of a command tag such as ``UPDATE 1`` or ``INSERT 0 1``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def bind(params: list[Any], value: Any) -> str:
    """Append ``value`` to ``params`` and return its ``$n`` placeholder."""
    params.append(value)
    return f"${len(params)}"


def bind_all(params: list[Any], values: Sequence[Any]) -> str:
    """Append ``values`` to ``params`` and return their placeholders, comma-separated."""
    return ",".join(bind(params, value) for value in values)


async def lock_audit(conn: Conn) -> None:
    """Take the audit chain's lock until the caller's transaction ends (on every replica)."""
    # Held to commit: the next writer, on any replica, reads the head only after this commits.
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_NAMESPACE, AUDIT_LOCK)


_INSERT_EVENT = (f"INSERT INTO audit_events ({_rows.AUDIT_COLUMNS}) "
                 "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)")


async def append_event(conn: Conn, seal: AuditSealer) -> AuditEvent:
    """Append one chained audit event inside the caller's transaction."""
    return (await append_events(conn, (seal,)))[0]


async def append_events(conn: Conn, seals: Sequence[AuditSealer]) -> list[AuditEvent]:
    """Append chained audit events, in order, and advance the head anchor (caller's transaction).

    The chain continues from the anchor, not from the newest row: rows deleted from the end
    then leave a gap the next event cannot close.
    """
    await lock_audit(conn)
    head = await conn.fetchrow("SELECT seq, hash FROM audit_head")
    if head is None:
        raise _rows.missing_head()
    events, params, anchor = _rows.seal_chain(seals, head)
    if len(params) == 1:
        # One event (most appends): insert it and advance the anchor in one round trip.
        await conn.execute(f"WITH e AS ({_INSERT_EVENT}) "
                           "UPDATE audit_head SET seq = $1, hash = $10, signature = $12",
                           *params[0], anchor[2])
    else:
        await conn.executemany(_INSERT_EVENT, params)
        await conn.execute("UPDATE audit_head SET seq = $1, hash = $2, signature = $3", *anchor)
    return events


class PostgresBase:
    """The pool, lifecycle and query helpers every part of the PostgreSQL store builds on."""

    def __init__(self, url: str) -> None:
        self._url = PostgresURL.parse(url)
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None

    @classmethod
    def from_url(cls, url: str) -> Self:
        """Build a store from a ``postgresql://`` or ``postgres://`` URL."""
        return cls(url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._url.masked!r})"

    @property
    def pool_size(self) -> int:
        """Return the largest number of connections the pool opens."""
        return self._url.pool_size

    # -- lifecycle ------------------------------------------------------------------------
    async def open(self) -> None:
        """Open the pool and apply pending migrations (one replica at a time)."""
        if self._pool is not None:
            return
        pool = await create_pool(self._url)
        try:
            with translating("migration"):
                async with pool.acquire() as conn:
                    await migrate(conn)
        except BaseException:
            pool.terminate()
            raise
        self._pool = pool

    async def close(self) -> None:
        """Close the pool, waiting a while for borrowed connections to come back."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        with anyio.move_on_after(_CLOSE_GRACE) as scope:
            try:
                await pool.close()
            except DRIVER_ERRORS:
                pool.terminate()  # a dead server: nothing left to close politely
        if scope.cancelled_caught:
            pool.terminate()

    async def schema_version(self) -> int:
        """Return the applied migration version."""
        value = await self._val("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        return int(value)

    @property
    def expected_schema_version(self) -> int:
        """Return the migration version this code writes (the database should be at it)."""
        return MIGRATIONS[-1][0]

    # -- plumbing -------------------------------------------------------------------------
    def _require(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            raise StoreError("The store is not open.", hint="Use the vault as `async with`.")
        return self._pool

    async def _all(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        pool = self._require()
        with translating("read"):
            return await pool.fetch(sql, *args)

    async def _one(self, sql: str, *args: Any) -> asyncpg.Record | None:
        pool = self._require()
        with translating("read"):
            return await pool.fetchrow(sql, *args)

    async def _val(self, sql: str, *args: Any) -> Any:
        pool = self._require()
        with translating("read"):
            return await pool.fetchval(sql, *args)

    async def _exec(self, sql: str, *args: Any, audit: AuditSealer | None = None) -> int:
        async with transaction(self._pool) as conn:
            count = rowcount(await conn.execute(sql, *args))
            if audit is not None:
                await append_event(conn, audit)
            return count
