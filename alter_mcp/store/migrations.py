"""Versioned schema migrations, shared in spirit by every backend (SQLite dialect here).

Each entry is ``(version, statements)``; a store applies those above its recorded version in
one transaction and records the new version. Never edit an applied migration: add one.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE provider_configs (
                provider_id TEXT PRIMARY KEY,
                client_id TEXT NOT NULL,
                secret_blob BLOB,
                key_id TEXT,
                scopes TEXT,
                redirect_uri TEXT,
                updated_at REAL NOT NULL)""",
            """CREATE TABLE managed_secrets (
                secret_id TEXT PRIMARY KEY,
                provider_id TEXT NOT NULL,
                label TEXT NOT NULL,
                field_names TEXT NOT NULL,
                blob BLOB NOT NULL,
                key_id TEXT NOT NULL,
                created_at REAL NOT NULL)""",
            """CREATE TABLE grants (
                grant_id TEXT PRIMARY KEY,
                kind TEXT NOT NULL CHECK (kind IN ('oauth', 'managed_secret')),
                provider_id TEXT NOT NULL,
                owner_key TEXT NOT NULL,
                owner TEXT NOT NULL,
                account_identifier TEXT,
                label TEXT,
                scopes TEXT NOT NULL DEFAULT '[]',
                status TEXT NOT NULL CHECK (status IN ('active', 'needs_reauth', 'revoked')),
                secret_id TEXT REFERENCES managed_secrets(secret_id) ON DELETE RESTRICT,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                revoked_at REAL)""",
            "CREATE INDEX grants_owner_provider ON grants (owner_key, provider_id, status)",
            "CREATE INDEX grants_owner_page ON grants (owner_key, created_at, grant_id)",
            """CREATE TABLE credentials (
                grant_id TEXT PRIMARY KEY REFERENCES grants(grant_id) ON DELETE CASCADE,
                blob BLOB NOT NULL,
                key_id TEXT NOT NULL,
                version INTEGER NOT NULL,
                expires_at REAL,
                updated_at REAL NOT NULL)""",
            "CREATE INDEX credentials_key ON credentials (key_id)",
            """CREATE TABLE refresh_leases (
                grant_id TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                lease_until REAL NOT NULL)""",
            """CREATE TABLE connect_sessions (
                session_id TEXT PRIMARY KEY,
                token_hash TEXT NOT NULL UNIQUE,
                state_hash TEXT UNIQUE,
                owner_key TEXT NOT NULL,
                data TEXT NOT NULL,
                status TEXT NOT NULL,
                provider_id TEXT,
                verifier_blob BLOB,
                key_id TEXT,
                expires_at REAL NOT NULL,
                state_used INTEGER NOT NULL DEFAULT 0)""",
            """CREATE TABLE audit_events (
                seq INTEGER PRIMARY KEY,
                time REAL NOT NULL,
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
                seq INTEGER PRIMARY KEY,
                hash TEXT NOT NULL,
                created_at REAL NOT NULL,
                signature TEXT NOT NULL)""",
            """CREATE TABLE api_keys (
                key_id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                prefix TEXT NOT NULL,
                key_hash TEXT NOT NULL UNIQUE,
                created_at REAL NOT NULL,
                revoked_at REAL)""",
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
                seq INTEGER NOT NULL,
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
            # One check value per key-encryption key that sealed this database's records:
            # without it a missing or wrong key would pass for a new, empty vault's key.
            """CREATE TABLE key_checks (
                key_id TEXT PRIMARY KEY,
                check_value TEXT NOT NULL,
                created_at REAL NOT NULL)""",
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
            "UPDATE audit_events SET caller = json_extract(data, '$.caller')",
            "CREATE INDEX audit_limit_grant ON audit_events (action, outcome, grant_id, time)",
            "CREATE INDEX audit_limit_caller ON audit_events (action, outcome, caller, time)",
            "CREATE INDEX audit_limit_principal ON audit_events (action, outcome, principal, time)",
        ],
    ),
    (
        6,
        [
            # The authorization bridge's state (client registrations, consents, codes, upstream
            # tokens): one sealed JSON document per (collection, key), so any replica serves
            # any step of a login and a restart loses nothing.
            """CREATE TABLE bridge_state (
                state_id TEXT PRIMARY KEY,
                blob BLOB NOT NULL,
                key_id TEXT NOT NULL,
                expires_at REAL)""",
            "CREATE INDEX bridge_state_expiry ON bridge_state (expires_at)",
        ],
    ),
]
