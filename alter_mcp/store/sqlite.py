"""The SQLite store: WAL, a busy timeout, foreign keys, versioned migrations.

Its parts: the connections, lifecycle and transactions (:mod:`.sqlite_base`), connect sessions
(:mod:`.sqlite_sessions`), the audit statements (:mod:`.sqlite_audit`) and WAL checkpoints
(:mod:`.sqlite_wal`). This module adds grants, credentials, the refresh lease, managed
secrets, provider configs, agent keys, key rotation and key checks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from alter_mcp.models import (
    ApiKeyRecord,
    AuditEvent,
    Grant,
    GrantStatus,
    ManagedSecret,
)
from alter_mcp.store import _rows, sqlite_audit
from alter_mcp.store.base import (
    AuditFilter,
    AuditHead,
    AuditSealer,
    Checkpoint,
    CheckpointSealer,
    CredentialRecord,
    EncryptedField,
    EncryptedRef,
    ProviderConfigRecord,
    PruneAuditor,
    PruneResult,
    Reservation,
)
from alter_mcp.store.sqlite_base import Conn, now_epoch
from alter_mcp.store.sqlite_sessions import SQLiteSessions

__all__ = ["SQLiteStore"]

_GRANT_COLUMNS = (
    "grant_id, kind, provider_id, owner_key, owner, account_identifier, label, scopes, "
    "status, secret_id, created_at, updated_at, revoked_at, connection"
)
_BLOB_TABLES = {
    EncryptedField.CREDENTIAL: ("credentials", "grant_id", "blob"),
    EncryptedField.MANAGED_SECRET: ("managed_secrets", "secret_id", "blob"),
    EncryptedField.SESSION_VERIFIER: ("connect_sessions", "session_id", "verifier_blob"),
    EncryptedField.PROVIDER_SECRET: ("provider_configs", "provider_id", "secret_blob"),
    EncryptedField.BRIDGE_STATE: ("bridge_state", "state_id", "blob"),
}


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _audit(conn: Conn, seal: AuditSealer | None) -> None:
    if seal is not None:
        sqlite_audit.append(conn, seal)


def _insert_grant(c: Conn, grant: Grant, credential: CredentialRecord | None) -> None:
    c.execute(f"INSERT INTO grants ({_GRANT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
              _rows.grant_params(grant))
    if credential is not None:
        c.execute("INSERT INTO credentials VALUES (?,?,?,?,?,?)",
                  _rows.credential_params(credential))


def _insert_secret(c: Conn, secret: ManagedSecret, blob: bytes, key_id: str) -> None:
    c.execute("INSERT INTO managed_secrets VALUES (?,?,?,?,?,?,?,?)",
              (secret.secret_id, secret.provider_id, secret.label,
               json.dumps(list(secret.field_names)), blob, key_id, _ts(secret.created_at),
               json.dumps(secret.connection, sort_keys=True)))


class SQLiteStore(SQLiteSessions):
    """A ``Store`` on one SQLite file (``sqlite:///path``)."""

    # -- grants and credentials -------------------------------------------------------------
    async def insert_grant(
        self, grant: Grant, credential: CredentialRecord | None, *,
        audit: AuditSealer | None = None,
    ) -> None:
        """Insert a grant and its credential (and audit event) in one transaction."""
        def run(c: Conn) -> None:
            _insert_grant(c, grant, credential)
            _audit(c, audit)

        await self._write(run)

    async def get_grant(self, grant_id: str) -> Grant | None:
        """Return the grant with this id, whoever owns it."""
        row = await self._one(f"SELECT {_GRANT_COLUMNS} FROM grants WHERE grant_id = ?",
                              (grant_id,))
        return _rows.grant(row) if row else None

    async def find_grants(
        self,
        owner_keys: Sequence[str],
        provider_id: str,
        *,
        statuses: Sequence[GrantStatus] = (GrantStatus.ACTIVE,),
        account_identifier: str | None = None,
    ) -> list[Grant]:
        """Return the grants of these owners for a provider, oldest first."""
        if not owner_keys or not statuses:
            return []
        sql = (
            f"SELECT {_GRANT_COLUMNS} FROM grants WHERE owner_key IN "
            f"({','.join('?' * len(owner_keys))}) AND provider_id = ? AND status IN "
            f"({','.join('?' * len(statuses))})"
        )
        params: list[Any] = [*owner_keys, provider_id, *(s.value for s in statuses)]
        if account_identifier is not None:
            sql += " AND account_identifier = ?"
            params.append(account_identifier)
        rows = await self._all(sql + " ORDER BY created_at, grant_id", params)
        return [_rows.grant(r) for r in rows]

    async def list_grants(
        self,
        owner_keys: Sequence[str],
        *,
        provider_id: str | None = None,
        status: GrantStatus | None = None,
        limit: int = 50,
        after: tuple[datetime, str] | None = None,
    ) -> list[Grant]:
        """Return one keyset page of grants ordered by (created_at, grant_id)."""
        if not owner_keys:
            return []
        clauses = ["owner_key = ?"]
        filters: list[Any] = []
        if provider_id is not None:
            clauses.append("provider_id = ?")
            filters.append(provider_id)
        if status is not None:
            clauses.append("status = ?")
            filters.append(status.value)
        if after is not None:
            clauses.append("(created_at, grant_id) > (?, ?)")
            filters.extend([_ts(after[0]), after[1]])
        # One page per owner, each walking the (owner_key, created_at, grant_id) index for at
        # most `limit` rows, merged: a member of many groups reads about one page per group,
        # not every grant of every group (an IN list made SQLite read all and sort them).
        # The pages' keys come from the index alone (it covers them); only the winning
        # `limit` rows are then read from the table.
        one = ("SELECT * FROM (SELECT created_at, grant_id FROM grants INDEXED BY "
               f"grants_owner_page WHERE {' AND '.join(clauses)} "
               "ORDER BY created_at, grant_id LIMIT ?)")
        keys = list(dict.fromkeys(owner_keys))
        if len(keys) == 1:
            rows = await self._all(
                f"SELECT {_GRANT_COLUMNS} FROM grants WHERE {' AND '.join(clauses)} "
                "ORDER BY created_at, grant_id LIMIT ?", [keys[0], *filters, limit])
            return [_rows.grant(r) for r in rows]
        columns = ", ".join(f"g.{c.strip()}" for c in _GRANT_COLUMNS.split(","))
        sql = (f"SELECT {columns} FROM ({' UNION ALL '.join([one] * len(keys))} "
               "ORDER BY created_at, grant_id LIMIT ?) AS page "
               "JOIN grants AS g ON g.grant_id = page.grant_id "
               "ORDER BY page.created_at, page.grant_id")
        params: list[Any] = []
        for key in keys:
            params.extend([key, *filters, limit])
        rows = await self._all(sql, [*params, limit])
        return [_rows.grant(r) for r in rows]

    async def update_grant(
        self, grant: Grant, credential: CredentialRecord | None = None, *,
        audit: AuditSealer | None = None,
    ) -> None:
        """Replace a grant's mutable fields (and optionally its credential) atomically."""
        def run(c: Conn) -> None:
            c.execute(
                "UPDATE grants SET account_identifier=?, label=?, scopes=?, status=?, "
                "updated_at=?, revoked_at=? WHERE grant_id=?",
                (grant.account_identifier, grant.label, json.dumps(list(grant.scopes)),
                 grant.status.value, _ts(grant.updated_at), _ts(grant.revoked_at),
                 grant.grant_id),
            )
            if credential is not None:
                c.execute("INSERT OR REPLACE INTO credentials VALUES (?,?,?,?,?,?)",
                          _rows.credential_params(credential))
            _audit(c, audit)

        await self._write(run)

    async def set_grant_status(
        self, grant_id: str, status: GrantStatus, *, audit: AuditSealer | None = None
    ) -> None:
        """Set a grant's status (e.g. needs_reauth after invalid_grant)."""
        def run(c: Conn) -> None:
            c.execute("UPDATE grants SET status=?, updated_at=? WHERE grant_id=? "
                      "AND status!='revoked'", (status.value, now_epoch(), grant_id))
            _audit(c, audit)

        await self._write(run)

    async def revoke_grant(
        self, grant_id: str, revoked_at: datetime, *, audit: AuditSealer | None = None
    ) -> bool:
        """Delete the credential and mark the grant revoked; False if already revoked."""
        def run(c: Conn) -> bool:
            cur = c.execute("UPDATE grants SET status='revoked', revoked_at=?, updated_at=? "
                            "WHERE grant_id=? AND status!='revoked'",
                            (_ts(revoked_at), _ts(revoked_at), grant_id))
            if cur.rowcount == 0:
                return False
            c.execute("DELETE FROM credentials WHERE grant_id=?", (grant_id,))
            c.execute("DELETE FROM refresh_leases WHERE grant_id=?", (grant_id,))
            _audit(c, audit)
            return True

        return await self._write(run)

    async def get_credential(self, grant_id: str) -> CredentialRecord | None:
        """Return the grant's credential record."""
        row = await self._one("SELECT * FROM credentials WHERE grant_id=?", (grant_id,))
        return _rows.credential(row) if row else None

    async def swap_credential(self, record: CredentialRecord, *, expected_version: int) -> bool:
        """Write ``record`` only if the stored version is ``expected_version``."""
        def run(c: Conn) -> bool:
            cur = c.execute(
                "UPDATE credentials SET blob=?, key_id=?, version=?, expires_at=?, updated_at=? "
                "WHERE grant_id=? AND version=?",
                (record.blob, record.key_id, record.version, _ts(record.expires_at),
                 _ts(record.updated_at), record.grant_id, expected_version),
            )
            return cur.rowcount == 1

        return await self._write(run)

    # -- refresh lease ----------------------------------------------------------------------
    async def acquire_refresh_lease(self, grant_id: str, holder: str, ttl: float) -> bool:
        """Take the grant's refresh lease unless another live holder has it."""
        now = now_epoch()

        def run(c: Conn) -> bool:
            cur = c.execute(
                "INSERT INTO refresh_leases VALUES (?,?,?) ON CONFLICT(grant_id) DO UPDATE SET "
                "holder=excluded.holder, lease_until=excluded.lease_until "
                "WHERE refresh_leases.lease_until < ? OR refresh_leases.holder = excluded.holder",
                (grant_id, holder, now + ttl, now),
            )
            return cur.rowcount == 1

        return await self._write(run)

    async def release_refresh_lease(self, grant_id: str, holder: str) -> None:
        """Release the lease if this holder still owns it."""
        await self._write(lambda c: c.execute(
            "DELETE FROM refresh_leases WHERE grant_id=? AND holder=?", (grant_id, holder)))

    # -- managed secrets ----------------------------------------------------------------------
    async def insert_secret(
        self, secret: ManagedSecret, blob: bytes, key_id: str, *,
        audit: AuditSealer | None = None,
    ) -> None:
        """Store a managed secret's sealed fields."""
        def run(c: Conn) -> None:
            _insert_secret(c, secret, blob, key_id)
            _audit(c, audit)

        await self._write(run)

    async def insert_secret_grant(
        self, secret: ManagedSecret, blob: bytes, key_id: str, grant: Grant, *,
        audit: Sequence[AuditSealer] = (),
    ) -> None:
        """Store a managed secret and its one grant (and their audit events) together."""
        def run(c: Conn) -> None:
            _insert_secret(c, secret, blob, key_id)
            _insert_grant(c, grant, None)
            if audit:
                sqlite_audit.append_many(c, audit)

        await self._write(run)

    async def get_secret(self, secret_id: str) -> tuple[ManagedSecret, bytes] | None:
        """Return a managed secret and its sealed fields."""
        row = await self._one("SELECT * FROM managed_secrets WHERE secret_id=?", (secret_id,))
        return (_rows.secret(row), bytes(row["blob"])) if row else None

    async def get_secret_blob(self, secret_id: str) -> bytes | None:
        """Return only a managed secret's sealed fields (the request hot path's read)."""
        row = await self._one("SELECT blob FROM managed_secrets WHERE secret_id=?", (secret_id,))
        return bytes(row["blob"]) if row else None

    async def list_secrets(self) -> list[ManagedSecret]:
        """Return every managed secret's metadata."""
        rows = await self._all("SELECT * FROM managed_secrets ORDER BY created_at", ())
        return [_rows.secret(r) for r in rows]

    # -- provider configs ---------------------------------------------------------------------
    async def put_provider_config(
        self, record: ProviderConfigRecord, *, audit: AuditSealer | None = None
    ) -> None:
        """Insert or replace a provider's OAuth client."""
        def run(c: Conn) -> None:
            c.execute("INSERT OR REPLACE INTO provider_configs VALUES (?,?,?,?,?,?,?)",
                      _rows.provider_config_params(record))
            _audit(c, audit)

        await self._write(run)

    async def get_provider_config(self, provider_id: str) -> ProviderConfigRecord | None:
        """Return a provider's OAuth client configured through the API."""
        row = await self._one("SELECT * FROM provider_configs WHERE provider_id=?",
                              (provider_id,))
        return _rows.provider_config(row) if row else None

    async def list_provider_configs(self) -> list[ProviderConfigRecord]:
        """Return every provider config stored through the API."""
        rows = await self._all("SELECT * FROM provider_configs ORDER BY provider_id", ())
        return [_rows.provider_config(r) for r in rows]

    # -- audit --------------------------------------------------------------------------------
    async def append_audit(self, seal: AuditSealer) -> AuditEvent:
        """Append the event ``seal`` builds from the next seq and the chain head's hash."""
        return await self._write(lambda c: sqlite_audit.append(c, seal))

    async def append_audit_many(self, seals: Sequence[AuditSealer]) -> list[AuditEvent]:
        """Append the events ``seals`` build, in order, in one transaction."""
        return await self._write(lambda c: sqlite_audit.append_many(c, seals))

    async def append_audit_within(
        self, seal: AuditSealer, limits: Sequence[tuple[AuditFilter, int]]
    ) -> Reservation:
        """Append ``seal``'s event only if every filter matches fewer events than its limit."""
        return await self._write(lambda c: sqlite_audit.append_within(c, seal, limits))

    async def list_audit(self, flt: AuditFilter) -> list[AuditEvent]:
        """Return audit events matching the filter, ordered by seq."""
        return await self._read(lambda c: sqlite_audit.select(c, flt))

    async def count_audit(self, flt: AuditFilter) -> int:
        """Return how many events match ``flt``, counting no further than ``flt.limit``."""
        return await self._read(lambda c: sqlite_audit.count(c, flt))

    async def prune_audit(
        self, before: datetime, seal: CheckpointSealer, *, audit: PruneAuditor | None = None
    ) -> PruneResult:
        """Delete the oldest events timed before ``before`` and checkpoint the last, atomically."""
        return await self._write(lambda c: sqlite_audit.prune(c, before, seal, audit))

    async def latest_checkpoint(self) -> Checkpoint | None:
        """Return the checkpoint with the highest seq: where the remaining chain resumes."""
        found = await self._read(lambda c: sqlite_audit.checkpoints(c, latest=True))
        return found[0] if found else None

    async def audit_head(self) -> AuditHead | None:
        """Return the head anchor every append advances (None only if it was deleted)."""
        return await self._read(sqlite_audit.head)

    async def list_checkpoints(self) -> list[Checkpoint]:
        """Return every checkpoint, ordered by seq."""
        return await self._read(sqlite_audit.checkpoints)

    # -- agent API keys -------------------------------------------------------------------------
    async def insert_api_key(
        self, record: ApiKeyRecord, *, audit: AuditSealer | None = None
    ) -> None:
        """Store an API key's hash."""
        def run(c: Conn) -> None:
            c.execute("INSERT INTO api_keys VALUES (?,?,?,?,?,?)",
                      (record.key_id, record.name, record.prefix, record.key_hash,
                       _ts(record.created_at), _ts(record.revoked_at)))
            _audit(c, audit)

        await self._write(run)

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        """Return the key with this hash."""
        row = await self._one("SELECT * FROM api_keys WHERE key_hash=?", (key_hash,))
        return _rows.api_key(row) if row else None

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """Return every API key record."""
        return [_rows.api_key(r) for r in
                await self._all("SELECT * FROM api_keys ORDER BY created_at", ())]

    async def revoke_api_key(
        self, key_id: str, revoked_at: datetime, *, audit: AuditSealer | None = None
    ) -> bool:
        """Mark a key revoked; False if unknown or already revoked."""
        def run(c: Conn) -> bool:
            cur = c.execute("UPDATE api_keys SET revoked_at=? WHERE key_id=? "
                            "AND revoked_at IS NULL", (_ts(revoked_at), key_id))
            if cur.rowcount != 1:
                return False
            _audit(c, audit)
            return True

        return await self._write(run)

    # -- key rotation ---------------------------------------------------------------------------
    async def blobs_not_under(self, key_id: str, *, limit: int) -> list[EncryptedRef]:
        """Return up to ``limit`` sealed blobs wrapped by any key other than ``key_id``."""
        refs: list[EncryptedRef] = []
        for fld, (table, id_col, blob_col) in _BLOB_TABLES.items():
            if len(refs) >= limit:
                break
            rows = await self._all(
                f"SELECT {id_col} AS rid, {blob_col} AS blob, key_id FROM {table} "
                f"WHERE {blob_col} IS NOT NULL AND key_id != ? LIMIT ?",
                (key_id, limit - len(refs)),
            )
            refs.extend(EncryptedRef(fld, r["rid"], bytes(r["blob"]), r["key_id"]) for r in rows)
        return refs

    async def replace_blob(self, ref: EncryptedRef, blob: bytes, key_id: str) -> bool:
        """Replace one blob if it is still the one in ``ref`` (compare-and-swap)."""
        table, id_col, blob_col = _BLOB_TABLES[ref.location]

        def run(c: Conn) -> bool:
            cur = c.execute(
                f"UPDATE {table} SET {blob_col}=?, key_id=? WHERE {id_col}=? AND {blob_col}=?",
                (blob, key_id, ref.record_id, ref.blob))
            return cur.rowcount == 1

        return await self._write(run)

    async def sealed_key_ids(self) -> set[str]:
        """Return the id of every key that wraps at least one stored blob."""
        found: set[str] = set()
        for table, _, blob_col in _BLOB_TABLES.values():
            rows = await self._all(
                f"SELECT DISTINCT key_id FROM {table} WHERE {blob_col} IS NOT NULL", ())
            found.update(str(r["key_id"]) for r in rows)
        return found

    # -- authorization bridge state ---------------------------------------------------------------
    async def get_bridge_state(self, state_id: str, now: datetime) -> bytes | None:
        """Return the sealed bridge record ``state_id`` unless it is missing or expired."""
        row = await self._one(
            "SELECT blob FROM bridge_state WHERE state_id=? AND (expires_at IS NULL OR "
            "expires_at > ?)", (state_id, now.timestamp()))
        return bytes(row["blob"]) if row else None

    async def put_bridge_state(self, state_id: str, blob: bytes, key_id: str,
                               expires_at: datetime | None) -> None:
        """Insert or replace the sealed bridge record ``state_id``; drop expired records."""
        def run(c: Conn) -> None:
            # Codes and pending logins expire within minutes; writes sweep them, so the table
            # holds live state only (the expiry index keeps this cheap).
            c.execute("DELETE FROM bridge_state WHERE expires_at <= ?", (now_epoch(),))
            c.execute("INSERT OR REPLACE INTO bridge_state VALUES (?, ?, ?, ?)",
                      (state_id, blob, key_id, _ts(expires_at)))

        await self._write(run)

    async def delete_bridge_state(self, state_id: str) -> bool:
        """Delete the bridge record ``state_id``; return whether it existed."""
        def run(c: Conn) -> bool:
            return c.execute("DELETE FROM bridge_state WHERE state_id=?", (state_id,)
                             ).rowcount == 1

        return await self._write(run)

    # -- key checks -----------------------------------------------------------------------------
    async def key_checks(self) -> dict[str, str]:
        """Return the check value recorded for each key id that sealed records here."""
        rows = await self._all("SELECT key_id, check_value FROM key_checks", ())
        return {str(r["key_id"]): str(r["check_value"]) for r in rows}

    async def add_key_checks(self, checks: Mapping[str, str]) -> None:
        """Record check values for key ids that have none; an existing one is never replaced."""
        now = now_epoch()

        def run(c: Conn) -> None:
            c.executemany("INSERT OR IGNORE INTO key_checks VALUES (?, ?, ?)",
                          [(kid, value, now) for kid, value in checks.items()])

        await self._write(run)
