"""The PostgreSQL store: a shared database for several replicas (``postgresql://`` URLs).

A connection pool per process (``?pool_size=N``, default 10), every mutation and its audit
event in one READ COMMITTED transaction. What must hold across replicas is decided by the
database: the audit chain head is serialised by a transaction-scoped advisory lock (gapless
``seq``, each ``prev_hash`` linking), refresh leases by ``INSERT … ON CONFLICT … WHERE``
against the database clock, OAuth state claims by one ``UPDATE … RETURNING``, credential
writes by compare-and-swap on ``version``, and migrations by their own advisory lock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from alter_mcp.models import ApiKeyRecord, AuditEvent, Grant, GrantStatus, ManagedSecret
from alter_mcp.store import _rows
from alter_mcp.store._pg import (
    Conn,
    append_event,
    append_events,
    bind,
    bind_all,
    lock_audit,
    rowcount,
    transaction,
)
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
from alter_mcp.store.pg_sessions import PostgresSessions

__all__ = ["PostgresStore"]

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
_DB_NOW = "extract(epoch FROM clock_timestamp())"


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _now() -> float:
    return datetime.now(UTC).timestamp()



async def _insert_grant(conn: Conn, grant: Grant, credential: CredentialRecord | None) -> None:
    await conn.execute(f"INSERT INTO grants ({_GRANT_COLUMNS}) "
                       "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
                       *_rows.grant_params(grant))
    if credential is not None:
        await conn.execute("INSERT INTO credentials VALUES ($1,$2,$3,$4,$5,$6)",
                           *_rows.credential_params(credential))


async def _insert_secret(conn: Conn, secret: ManagedSecret, blob: bytes, key_id: str) -> None:
    await conn.execute("INSERT INTO managed_secrets VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
                       secret.secret_id, secret.provider_id, secret.label,
                       json.dumps(list(secret.field_names)), blob, key_id,
                       _ts(secret.created_at), json.dumps(secret.connection, sort_keys=True))

class PostgresStore(PostgresSessions):
    """A ``Store`` on a PostgreSQL database shared by any number of processes."""

    # -- grants and credentials -------------------------------------------------------------
    async def insert_grant(
        self, grant: Grant, credential: CredentialRecord | None, *,
        audit: AuditSealer | None = None,
    ) -> None:
        """Insert a grant and its credential in one transaction."""
        async with transaction(self._pool) as conn:
            await _insert_grant(conn, grant, credential)
            if audit is not None:
                await append_event(conn, audit)

    async def get_grant(self, grant_id: str) -> Grant | None:
        """Return the grant with this id, whoever owns it."""
        row = await self._one(f"SELECT {_GRANT_COLUMNS} FROM grants WHERE grant_id = $1",
                              grant_id)
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
        # IN lists, not ``= ANY($1::text[])``: array parameters cost a lookup ~60% more here.
        params: list[Any] = []
        owners = bind_all(params, owner_keys)
        provider = bind(params, provider_id)
        wanted = bind_all(params, [s.value for s in statuses])
        sql = (
            f"SELECT {_GRANT_COLUMNS} FROM grants WHERE owner_key IN ({owners}) "
            f"AND provider_id = {provider} AND status IN ({wanted})"
        )
        if account_identifier is not None:
            sql += f" AND account_identifier = {bind(params, account_identifier)}"
        rows = await self._all(sql + " ORDER BY created_at, grant_id", *params)
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
        params: list[Any] = []
        clauses = []
        if provider_id is not None:
            clauses.append(f"provider_id = {bind(params, provider_id)}")
        if status is not None:
            clauses.append(f"status = {bind(params, status.value)}")
        if after is not None:
            when, last = bind(params, _ts(after[0])), bind(params, after[1])
            clauses.append(f"(created_at, grant_id) > ({when}::float8, {last}::text)")
        size = bind(params, limit)
        # One index-ordered page per owner, merged (see the SQLite store): a member of many
        # groups reads about a page per group, never every grant of every group.
        pages = " UNION ALL ".join(
            f"(SELECT created_at, grant_id FROM grants WHERE "
            f"{' AND '.join([f'owner_key = {bind(params, key)}', *clauses])} "
            f"ORDER BY created_at, grant_id LIMIT {size})"
            for key in dict.fromkeys(owner_keys))
        columns = ", ".join(f"g.{c.strip()}" for c in _GRANT_COLUMNS.split(","))
        sql = (f"SELECT {columns} FROM (SELECT created_at, grant_id FROM ({pages}) AS owners "
               f"ORDER BY created_at, grant_id LIMIT {size}) "
               "AS page JOIN grants AS g ON g.grant_id = page.grant_id "
               "ORDER BY page.created_at, page.grant_id")
        return [_rows.grant(r) for r in await self._all(sql, *params)]

    async def update_grant(
        self, grant: Grant, credential: CredentialRecord | None = None, *,
        audit: AuditSealer | None = None,
    ) -> None:
        """Replace a grant's mutable fields (and optionally its credential) atomically."""
        async with transaction(self._pool) as conn:
            await conn.execute(
                "UPDATE grants SET account_identifier=$1, label=$2, scopes=$3, status=$4, "
                "updated_at=$5, revoked_at=$6 WHERE grant_id=$7",
                grant.account_identifier, grant.label, json.dumps(list(grant.scopes)),
                grant.status.value, _ts(grant.updated_at), _ts(grant.revoked_at),
                grant.grant_id,
            )
            if credential is not None:
                await conn.execute(
                    "INSERT INTO credentials VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (grant_id) "
                    "DO UPDATE SET blob=excluded.blob, key_id=excluded.key_id, "
                    "version=excluded.version, expires_at=excluded.expires_at, "
                    "updated_at=excluded.updated_at",
                    *_rows.credential_params(credential),
                )
            if audit is not None:
                await append_event(conn, audit)

    async def set_grant_status(
        self, grant_id: str, status: GrantStatus, *, audit: AuditSealer | None = None
    ) -> None:
        """Set a grant's status (e.g. needs_reauth after invalid_grant)."""
        await self._exec(
            "UPDATE grants SET status=$1, updated_at=$2 WHERE grant_id=$3 AND status<>'revoked'",
            status.value, _now(), grant_id, audit=audit,
        )

    async def revoke_grant(
        self, grant_id: str, revoked_at: datetime, *, audit: AuditSealer | None = None
    ) -> bool:
        """Delete the credential and mark the grant revoked; False if already revoked."""
        async with transaction(self._pool) as conn:
            status = await conn.execute(
                "UPDATE grants SET status='revoked', revoked_at=$1, updated_at=$1 "
                "WHERE grant_id=$2 AND status<>'revoked'",
                _ts(revoked_at), grant_id,
            )
            if rowcount(status) == 0:
                return False
            await conn.execute("DELETE FROM credentials WHERE grant_id=$1", grant_id)
            await conn.execute("DELETE FROM refresh_leases WHERE grant_id=$1", grant_id)
            if audit is not None:
                await append_event(conn, audit)
            return True

    async def get_credential(self, grant_id: str) -> CredentialRecord | None:
        """Return the grant's credential record."""
        row = await self._one("SELECT * FROM credentials WHERE grant_id=$1", grant_id)
        return _rows.credential(row) if row else None

    async def swap_credential(self, record: CredentialRecord, *, expected_version: int) -> bool:
        """Write ``record`` only if the stored version is ``expected_version``."""
        return await self._exec(
            "UPDATE credentials SET blob=$1, key_id=$2, version=$3, expires_at=$4, "
            "updated_at=$5 WHERE grant_id=$6 AND version=$7",
            record.blob, record.key_id, record.version, _ts(record.expires_at),
            _ts(record.updated_at), record.grant_id, expected_version,
        ) == 1

    # -- refresh lease ----------------------------------------------------------------------
    async def acquire_refresh_lease(self, grant_id: str, holder: str, ttl: float) -> bool:
        """Take the grant's refresh lease unless another live holder has it."""
        # The database clock, not each replica's: a lease means the same to every replica.
        return await self._exec(
            f"INSERT INTO refresh_leases VALUES ($1, $2, {_DB_NOW} + $3::float8) "
            "ON CONFLICT (grant_id) DO UPDATE SET holder=excluded.holder, "
            f"lease_until=excluded.lease_until WHERE refresh_leases.lease_until < {_DB_NOW} "
            "OR refresh_leases.holder = excluded.holder",
            grant_id, holder, float(ttl),
        ) == 1

    async def release_refresh_lease(self, grant_id: str, holder: str) -> None:
        """Release the lease if this holder still owns it."""
        await self._exec("DELETE FROM refresh_leases WHERE grant_id=$1 AND holder=$2",
                         grant_id, holder)

    # -- managed secrets ----------------------------------------------------------------------
    async def insert_secret(
        self, secret: ManagedSecret, blob: bytes, key_id: str, *,
        audit: AuditSealer | None = None,
    ) -> None:
        """Store a managed secret's sealed fields."""
        async with transaction(self._pool) as conn:
            await _insert_secret(conn, secret, blob, key_id)
            if audit is not None:
                await append_event(conn, audit)

    async def insert_secret_grant(
        self, secret: ManagedSecret, blob: bytes, key_id: str, grant: Grant, *,
        audit: Sequence[AuditSealer] = (),
    ) -> None:
        """Store a managed secret and its one grant (and their audit events) together."""
        async with transaction(self._pool) as conn:
            await _insert_secret(conn, secret, blob, key_id)
            await _insert_grant(conn, grant, None)
            if audit:
                await append_events(conn, audit)

    async def get_secret(self, secret_id: str) -> tuple[ManagedSecret, bytes] | None:
        """Return a managed secret and its sealed fields."""
        row = await self._one("SELECT * FROM managed_secrets WHERE secret_id=$1", secret_id)
        return (_rows.secret(row), bytes(row["blob"])) if row else None

    async def get_secret_blob(self, secret_id: str) -> bytes | None:
        """Return only a managed secret's sealed fields (the request hot path's read)."""
        row = await self._one("SELECT blob FROM managed_secrets WHERE secret_id=$1", secret_id)
        return bytes(row["blob"]) if row else None

    async def list_secrets(self) -> list[ManagedSecret]:
        """Return every managed secret's metadata."""
        rows = await self._all("SELECT * FROM managed_secrets ORDER BY created_at, secret_id")
        return [_rows.secret(r) for r in rows]

    # -- provider configs ---------------------------------------------------------------------
    async def put_provider_config(
        self, record: ProviderConfigRecord, *, audit: AuditSealer | None = None
    ) -> None:
        """Insert or replace a provider's OAuth client."""
        await self._exec(
            "INSERT INTO provider_configs VALUES ($1,$2,$3,$4,$5,$6,$7) "
            "ON CONFLICT (provider_id) DO UPDATE SET client_id=excluded.client_id, "
            "secret_blob=excluded.secret_blob, key_id=excluded.key_id, "
            "scopes=excluded.scopes, redirect_uri=excluded.redirect_uri, "
            "updated_at=excluded.updated_at",
            *_rows.provider_config_params(record), audit=audit,
        )

    async def get_provider_config(self, provider_id: str) -> ProviderConfigRecord | None:
        """Return a provider's OAuth client configured through the API."""
        row = await self._one("SELECT * FROM provider_configs WHERE provider_id=$1",
                              provider_id)
        return _rows.provider_config(row) if row else None

    async def list_provider_configs(self) -> list[ProviderConfigRecord]:
        """Return every provider config stored through the API."""
        rows = await self._all("SELECT * FROM provider_configs ORDER BY provider_id")
        return [_rows.provider_config(r) for r in rows]

    # -- audit --------------------------------------------------------------------------------
    async def append_audit(self, seal: AuditSealer) -> AuditEvent:
        """Append the event ``seal`` builds from the next seq and the chain head's hash."""
        async with transaction(self._pool) as conn:
            return await append_event(conn, seal)

    async def append_audit_many(self, seals: Sequence[AuditSealer]) -> list[AuditEvent]:
        """Append the events ``seals`` build, in order, in one transaction."""
        async with transaction(self._pool) as conn:
            return await append_events(conn, seals)

    @staticmethod
    def _audit_where(flt: AuditFilter, params: list[Any]) -> str:
        clauses = [f"seq > {bind(params, flt.after_seq)}"] if flt.after_seq else []
        for column, value in (("principal", flt.principal), ("grant_id", flt.grant_id),
                              ("provider_id", flt.provider_id), ("outcome", flt.outcome),
                              ("action", flt.action), ("caller", flt.caller)):
            if value is not None:
                clauses.append(f"{column} = {bind(params, value)}")
        if flt.since is not None:
            clauses.append(f"time >= {bind(params, _ts(flt.since))}")
        if flt.until is not None:
            clauses.append(f"time < {bind(params, _ts(flt.until))}")
        return " AND ".join(clauses) or "TRUE"

    async def list_audit(self, flt: AuditFilter) -> list[AuditEvent]:
        """Return audit events matching the filter, ordered by seq."""
        params: list[Any] = []
        where = self._audit_where(flt, params)
        rows = await self._all(
            f"SELECT * FROM audit_events WHERE {where} "
            f"ORDER BY seq LIMIT {bind(params, flt.limit)}",
            *params,
        )
        return [_rows.audit(r) for r in rows]

    async def append_audit_within(
        self, seal: AuditSealer, limits: Sequence[tuple[AuditFilter, int]]
    ) -> Reservation:
        """Append ``seal``'s event only if every filter matches fewer events than its limit."""
        async with transaction(self._pool) as conn:
            # The chain lock first: every replica counts and appends one at a time.
            await lock_audit(conn)
            for index, (flt, limit) in enumerate(limits):
                if await self._count(conn, replace(flt, limit=limit)) >= limit:
                    return Reservation(event=None, exceeded=index)
            return Reservation(event=await append_event(conn, seal), exceeded=None)

    async def count_audit(self, flt: AuditFilter) -> int:
        """Return how many events match ``flt``, counting no further than ``flt.limit``."""
        async with transaction(self._pool) as conn:
            return await self._count(conn, flt)

    @classmethod
    async def _count(cls, conn: Conn, flt: AuditFilter) -> int:
        params: list[Any] = []
        where = cls._audit_where(flt, params)
        found = await conn.fetchval(
            f"SELECT COUNT(*) FROM (SELECT 1 FROM audit_events WHERE {where} "
            f"LIMIT {bind(params, flt.limit)}) AS window_events", *params)
        return int(found)

    async def prune_audit(
        self, before: datetime, seal: CheckpointSealer, *, audit: PruneAuditor | None = None
    ) -> PruneResult:
        """Delete the oldest events timed before ``before`` and checkpoint the last, atomically."""
        async with transaction(self._pool) as conn:
            # The chain lock: no replica appends or prunes until this prune commits.
            await lock_audit(conn)
            # Only a gapless prefix goes (replica clocks may disagree with seq order), and
            # the newest event always stays as the chain's head.
            row = await conn.fetchrow(
                "SELECT seq, hash FROM audit_events WHERE seq < COALESCE("
                "(SELECT MIN(seq) FROM audit_events WHERE time >= $1), "
                "(SELECT MAX(seq) FROM audit_events)) ORDER BY seq DESC LIMIT 1",
                _ts(before),
            )
            deleted, checkpoint = 0, None
            if row is not None:
                checkpoint = seal(int(row["seq"]), str(row["hash"]))
                await conn.execute("INSERT INTO audit_checkpoints VALUES ($1,$2,$3,$4)",
                                   *_rows.checkpoint_params(checkpoint))
                deleted = rowcount(await conn.execute(
                    "DELETE FROM audit_events WHERE seq <= $1", checkpoint.seq))
            if audit is not None:
                await append_event(conn, audit(deleted, checkpoint))
            return PruneResult(deleted=deleted, checkpoint=checkpoint)

    async def latest_checkpoint(self) -> Checkpoint | None:
        """Return the checkpoint with the highest seq: where the remaining chain resumes."""
        row = await self._one("SELECT * FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
        return _rows.checkpoint(row) if row else None

    async def audit_head(self) -> AuditHead | None:
        """Return the head anchor every append advances (None only if it was deleted)."""
        row = await self._one("SELECT seq, hash, signature FROM audit_head")
        return _rows.audit_head(row) if row else None

    async def list_checkpoints(self) -> list[Checkpoint]:
        """Return every checkpoint, ordered by seq."""
        return [_rows.checkpoint(r)
                for r in await self._all("SELECT * FROM audit_checkpoints ORDER BY seq")]

    # -- agent API keys -------------------------------------------------------------------------
    async def insert_api_key(
        self, record: ApiKeyRecord, *, audit: AuditSealer | None = None
    ) -> None:
        """Store an API key's hash."""
        await self._exec(
            "INSERT INTO api_keys VALUES ($1,$2,$3,$4,$5,$6)",
            record.key_id, record.name, record.prefix, record.key_hash,
            _ts(record.created_at), _ts(record.revoked_at), audit=audit,
        )

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        """Return the key with this hash."""
        row = await self._one("SELECT * FROM api_keys WHERE key_hash=$1", key_hash)
        return _rows.api_key(row) if row else None

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """Return every API key record."""
        rows = await self._all("SELECT * FROM api_keys ORDER BY created_at, key_id")
        return [_rows.api_key(r) for r in rows]

    async def revoke_api_key(
        self, key_id: str, revoked_at: datetime, *, audit: AuditSealer | None = None
    ) -> bool:
        """Mark a key revoked; False if unknown or already revoked."""
        async with transaction(self._pool) as conn:
            status = await conn.execute(
                "UPDATE api_keys SET revoked_at=$1 WHERE key_id=$2 AND revoked_at IS NULL",
                _ts(revoked_at), key_id,
            )
            if rowcount(status) != 1:
                return False
            if audit is not None:
                await append_event(conn, audit)
            return True

    # -- key rotation ---------------------------------------------------------------------------
    async def blobs_not_under(self, key_id: str, *, limit: int) -> list[EncryptedRef]:
        """Return up to ``limit`` sealed blobs wrapped by any key other than ``key_id``."""
        refs: list[EncryptedRef] = []
        for fld, (table, id_col, blob_col) in _BLOB_TABLES.items():
            if len(refs) >= limit:
                break
            rows = await self._all(
                f"SELECT {id_col} AS rid, {blob_col} AS blob, key_id FROM {table} "
                f"WHERE {blob_col} IS NOT NULL AND key_id <> $1 ORDER BY {id_col} LIMIT $2",
                key_id, limit - len(refs),
            )
            refs.extend(EncryptedRef(fld, r["rid"], bytes(r["blob"]), r["key_id"]) for r in rows)
        return refs

    async def replace_blob(self, ref: EncryptedRef, blob: bytes, key_id: str) -> bool:
        """Replace one blob if it is still the one in ``ref`` (compare-and-swap)."""
        table, id_col, blob_col = _BLOB_TABLES[ref.location]
        return await self._exec(
            f"UPDATE {table} SET {blob_col}=$1, key_id=$2 WHERE {id_col}=$3 AND {blob_col}=$4",
            blob, key_id, ref.record_id, ref.blob,
        ) == 1

    async def sealed_key_ids(self) -> set[str]:
        """Return the id of every key that wraps at least one stored blob."""
        found: set[str] = set()
        for table, _, blob_col in _BLOB_TABLES.values():
            rows = await self._all(
                f"SELECT DISTINCT key_id FROM {table} WHERE {blob_col} IS NOT NULL")
            found.update(str(r["key_id"]) for r in rows)
        return found

    # -- authorization bridge state ---------------------------------------------------------
    async def get_bridge_state(self, state_id: str, now: datetime) -> bytes | None:
        """Return the sealed bridge record ``state_id`` unless it is missing or expired."""
        row = await self._one(
            "SELECT blob FROM bridge_state WHERE state_id=$1 AND (expires_at IS NULL OR "
            "expires_at > $2)", state_id, now.timestamp())
        return bytes(row["blob"]) if row else None

    async def put_bridge_state(self, state_id: str, blob: bytes, key_id: str,
                               expires_at: datetime | None) -> None:
        """Insert or replace the sealed bridge record ``state_id``; drop expired records."""
        # Codes and pending logins expire within minutes; writes sweep them (see SQLite).
        await self._exec(
            f"WITH swept AS (DELETE FROM bridge_state WHERE expires_at <= {_DB_NOW} "
            "AND state_id <> $1) "
            "INSERT INTO bridge_state VALUES ($1, $2, $3, $4) ON CONFLICT (state_id) DO UPDATE "
            "SET blob=EXCLUDED.blob, key_id=EXCLUDED.key_id, expires_at=EXCLUDED.expires_at",
            state_id, blob, key_id, _ts(expires_at))

    async def delete_bridge_state(self, state_id: str) -> bool:
        """Delete the bridge record ``state_id``; return whether it existed."""
        return await self._exec("DELETE FROM bridge_state WHERE state_id=$1", state_id) == 1

    # -- key checks -----------------------------------------------------------------------
    async def key_checks(self) -> dict[str, str]:
        """Return the check value recorded for each key id that sealed records here."""
        rows = await self._all("SELECT key_id, check_value FROM key_checks")
        return {str(r["key_id"]): str(r["check_value"]) for r in rows}

    async def add_key_checks(self, checks: Mapping[str, str]) -> None:
        """Record check values for key ids that have none; an existing one is never replaced."""
        async with transaction(self._pool) as conn:
            await conn.executemany(
                "INSERT INTO key_checks VALUES ($1, $2, " + _DB_NOW + ") "
                "ON CONFLICT (key_id) DO NOTHING",
                [(kid, value) for kid, value in checks.items()])
