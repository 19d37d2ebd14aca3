"""Versioned schema migrations of the PostgreSQL store, applied under an advisory lock.

Versions match :mod:`alter_mcp.store.migrations` one for one: a change to the schema adds the
same version to both lists. Times are epoch seconds in ``DOUBLE PRECISION``, as in SQLite, so
one set of row conversions (``_rows``) serves both backends and an audit event reads back with
exactly the values its hash was computed over. Columns that keyset pagination sorts on use the
``"C"`` collation, so pages come out in SQLite's byte order whatever the database's locale.
Every replica runs :func:`migrate` on start; the transaction-scoped advisory lock makes the
second one wait and then find nothing left to do.
"""

from __future__ import annotations

import time

import asyncpg
from asyncpg.pool import PoolConnectionProxy

__all__ = ["AUDIT_LOCK", "LOCK_NAMESPACE", "MIGRATIONS", "MIGRATION_LOCK", "migrate"]

#: First key of every advisory lock this store takes ("altr"); the second names the lock.
LOCK_NAMESPACE = 0x616C7472
MIGRATION_LOCK = 1
AUDIT_LOCK = 2

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE provider_configs (
                provider_id TEXT COLLATE "C" PRIMARY KEY,
                client_id TEXT NOT NULL,
                secret_blob BYTEA,
                key_id TEXT,
                scopes TEXT,
                redirect_uri TEXT,
                updated_at DOUBLE PRECISION NOT NULL)""",
            """CREATE TABLE managed_secrets (
                secret_id TEXT COLLATE "C" PRIMARY KEY,
                provider_id TEXT NOT NULL,
                label TEXT NOT NULL,
                field_names TEXT NOT NULL,
                blob BYTEA NOT NULL,
                key_id TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL)""",
            """CREATE TABLE grants (
                grant_id TEXT COLLATE "C" PRIMARY KEY,
                kind TEXT NOT NULL CHECK (kind IN ('oauth', 'managed_secret')),
                provider_id TEXT NOT NULL,
                owner_key TEXT NOT NULL,
                owner TEXT NOT NULL,
                account_identifier TEXT,
                label TEXT,
                scopes TEXT NOT NULL DEFAULT '[]',
                status TEXT NOT NULL CHECK (status IN ('active', 'needs_reauth', 'revoked')),
                secret_id TEXT REFERENCES managed_secrets(secret_id) ON DELETE RESTRICT,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                revoked_at DOUBLE PRECISION)""",
            "CREATE INDEX grants_owner_provider ON grants (owner_key, provider_id, status)",
            "CREATE INDEX grants_owner_page ON grants (owner_key, created_at, grant_id)",
            "CREATE INDEX grants_secret ON grants (secret_id) WHERE secret_id IS NOT NULL",
            """CREATE TABLE credentials (
                grant_id TEXT COLLATE "C" PRIMARY KEY
                    REFERENCES grants(grant_id) ON DELETE CASCADE,
                blob BYTEA NOT NULL,
                key_id TEXT NOT NULL,
                version BIGINT NOT NULL,
                expires_at DOUBLE PRECISION,
                updated_at DOUBLE PRECISION NOT NULL)""",
            "CREATE INDEX credentials_key ON credentials (key_id)",
            """CREATE TABLE refresh_leases (
                grant_id TEXT COLLATE "C" PRIMARY KEY,
                holder TEXT NOT NULL,
                lease_until DOUBLE PRECISION NOT NULL)""",
            """CREATE TABLE connect_sessions (
                session_id TEXT COLLATE "C" PRIMARY KEY,
                token_hash TEXT NOT NULL UNIQUE,
                state_hash TEXT UNIQUE,
                owner_key TEXT NOT NULL,
                data TEXT NOT NULL,
                status TEXT NOT NULL,
                provider_id TEXT,
                verifier_blob BYTEA,
                key_id TEXT,
                expires_at DOUBLE PRECISION NOT NULL,
                state_used BOOLEAN NOT NULL DEFAULT false)""",
            """CREATE TABLE audit_events (
                seq BIGINT PRIMARY KEY CHECK (seq > 0),
                time DOUBLE PRECISION NOT NULL,
                principal TEXT,
                grant_id TEXT,
                provider_id TEXT,
                outcome TEXT NOT NULL,
                action TEXT NOT NULL,
                data TEXT NOT NULL,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL)""",
            "CREATE INDEX audit_time ON audit_events (time)",
            "CREATE INDEX audit_grant ON audit_events (grant_id)",
            """CREATE TABLE audit_checkpoints (
                seq BIGINT PRIMARY KEY,
                hash TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                signature TEXT NOT NULL)""",
            """CREATE TABLE api_keys (
                key_id TEXT COLLATE "C" PRIMARY KEY,
                name TEXT NOT NULL,
                prefix TEXT NOT NULL,
                key_hash TEXT NOT NULL UNIQUE,
                created_at DOUBLE PRECISION NOT NULL,
                revoked_at DOUBLE PRECISION)""",
        ],
    ),
    (
        2,
        [
            # The signed head: deleting the newest events leaves it pointing past them. One
            # row, always present from here on; an upgraded chain's head starts unsigned and
            # the first append signs it (see the README's audit section).
            """CREATE TABLE audit_head (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                seq BIGINT NOT NULL,
                hash TEXT NOT NULL,
                signature TEXT NOT NULL)""",
            """INSERT INTO audit_head (id, seq, hash, signature)
                SELECT 1, seq, hash, '' FROM (
                    SELECT seq, hash FROM audit_events
                    UNION ALL SELECT seq, hash FROM audit_checkpoints
                    UNION ALL SELECT 0, '') AS heads
                ORDER BY seq DESC LIMIT 1""",
        ],
    ),
    (
        3,
        [
            """CREATE TABLE key_checks (
                key_id TEXT PRIMARY KEY,
                check_value TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL)""",
        ],
    ),
    (
        4,
        [
            # Per-grant connection values (a shop, an instance host): not secret, part of the
            # grant, and what the destination guard renders the grant's own API hosts from.
            "ALTER TABLE grants ADD COLUMN connection TEXT NOT NULL DEFAULT '{}'",
            "ALTER TABLE managed_secrets ADD COLUMN connection TEXT NOT NULL DEFAULT '{}'",
        ],
    ),
    (
        5,
        [
            # Rate limits count reservations by grant, caller or principal over a time
            # window: the caller is a column (it was only inside the JSON data), and each
            # count walks an index to the window's rows instead of scanning the log.
            "ALTER TABLE audit_events ADD COLUMN caller TEXT",
            "UPDATE audit_events SET caller = data::json ->> 'caller'",
            "CREATE INDEX audit_limit_grant ON audit_events (action, outcome, grant_id, time)",
            "CREATE INDEX audit_limit_caller ON audit_events (action, outcome, caller, time)",
            "CREATE INDEX audit_limit_principal ON audit_events (action, outcome, principal, time)",
        ],
    ),
    (
        6,
        [
            """CREATE TABLE bridge_state (
                state_id TEXT COLLATE "C" PRIMARY KEY,
                blob BYTEA NOT NULL,
                key_id TEXT NOT NULL,
                expires_at DOUBLE PRECISION)""",
            "CREATE INDEX bridge_state_expiry ON bridge_state (expires_at)",
        ],
    ),
]


async def migrate(conn: PoolConnectionProxy[asyncpg.Record]) -> int:
    """Apply pending migrations in one transaction under the migration lock; return the version."""
    async with conn.transaction():
        # Taken before CREATE TABLE IF NOT EXISTS: two of those racing can still collide.
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_NAMESPACE,
                           MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        current = int(await conn.fetchval(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
        ))
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)", version,
                               time.time())
            current = version
        return current
