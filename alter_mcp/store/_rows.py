"""Conversions between stored rows and models, shared by the SQL backends."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import TypeAdapter

from alter_mcp.models import (
    ApiKeyRecord,
    AuditEvent,
    ConnectSession,
    Grant,
    ManagedSecret,
    Principal,
)
from alter_mcp.store.base import (
    AuditSealer,
    Checkpoint,
    CredentialRecord,
    ProviderConfigRecord,
    SessionRecord,
)

_PRINCIPAL: TypeAdapter[Any] = TypeAdapter(Principal)


class Row(Protocol):
    """A database row readable by column name."""

    def __getitem__(self, key: str, /) -> Any: ...


def ts(value: datetime | None) -> float | None:
    """Return a UTC datetime as epoch seconds."""
    return None if value is None else value.timestamp()


def dt(value: float | None) -> datetime | None:
    """Return epoch seconds as a UTC datetime."""
    return None if value is None else datetime.fromtimestamp(float(value), UTC)


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(float(value), UTC)


def grant_params(g: Grant) -> tuple[Any, ...]:
    """Return the insert parameters of a grant, in column order."""
    return (
        g.grant_id, g.kind.value, g.provider_id, g.owner.key, g.owner.model_dump_json(),
        g.account_identifier, g.label, json.dumps(list(g.scopes)), g.status.value,
        g.secret_id, ts(g.created_at), ts(g.updated_at), ts(g.revoked_at),
        json.dumps(g.connection, sort_keys=True),
    )


@functools.lru_cache(maxsize=4096)
def _owner(data: str) -> Any:
    # Principals are immutable, and a handful of owners own most grants: parse each once.
    return _PRINCIPAL.validate_json(data)


def grant(row: Row) -> Grant:
    """Build a grant from its row."""
    return Grant(
        grant_id=row["grant_id"], kind=row["kind"], provider_id=row["provider_id"],
        owner=_owner(row["owner"]),
        account_identifier=row["account_identifier"], label=row["label"],
        scopes=tuple(json.loads(row["scopes"])), status=row["status"],
        secret_id=row["secret_id"], created_at=_dt(row["created_at"]),
        updated_at=_dt(row["updated_at"]), revoked_at=dt(row["revoked_at"]),
        connection=json.loads(row["connection"]),
    )


def credential_params(c: CredentialRecord) -> tuple[Any, ...]:
    """Return the insert parameters of a credential, in column order."""
    return (c.grant_id, c.blob, c.key_id, c.version, ts(c.expires_at), ts(c.updated_at))


def credential(row: Row) -> CredentialRecord:
    """Build a credential record from its row."""
    return CredentialRecord(
        grant_id=row["grant_id"], blob=bytes(row["blob"]), key_id=row["key_id"],
        version=int(row["version"]), expires_at=dt(row["expires_at"]),
        updated_at=_dt(row["updated_at"]),
    )


def secret(row: Row) -> ManagedSecret:
    """Build managed-secret metadata from its row."""
    return ManagedSecret(
        secret_id=row["secret_id"], provider_id=row["provider_id"], label=row["label"],
        field_names=tuple(json.loads(row["field_names"])), created_at=_dt(row["created_at"]),
        connection=json.loads(row["connection"]),
    )


def provider_config_params(r: ProviderConfigRecord) -> tuple[Any, ...]:
    """Return the insert parameters of a provider config, in column order."""
    return (
        r.provider_id, r.client_id, r.secret_blob, r.key_id,
        None if r.scopes is None else json.dumps(list(r.scopes)), r.redirect_uri,
        ts(r.updated_at),
    )


def provider_config(row: Row) -> ProviderConfigRecord:
    """Build a provider config record from its row."""
    scopes = row["scopes"]
    blob = row["secret_blob"]
    return ProviderConfigRecord(
        provider_id=row["provider_id"], client_id=row["client_id"],
        secret_blob=None if blob is None else bytes(blob), key_id=row["key_id"],
        scopes=None if scopes is None else tuple(json.loads(scopes)),
        redirect_uri=row["redirect_uri"], updated_at=_dt(row["updated_at"]),
    )


def session_params(r: SessionRecord) -> tuple[Any, ...]:
    """Return the insert parameters of a connect session."""
    s = r.session
    return (
        s.session_id, r.token_hash, r.state_hash, s.owner.key, s.model_dump_json(),
        s.status.value, r.provider_id, r.verifier_blob, r.key_id, ts(s.expires_at),
    )


def session(row: Row) -> SessionRecord:
    """Build a session record from its row."""
    blob = row["verifier_blob"]
    return SessionRecord(
        session=ConnectSession.model_validate_json(row["data"]),
        token_hash=row["token_hash"], state_hash=row["state_hash"],
        provider_id=row["provider_id"], verifier_blob=None if blob is None else bytes(blob),
        key_id=row["key_id"],
    )


def seal_chain(seals: Sequence[AuditSealer], head: Row | None
               ) -> tuple[list[AuditEvent], list[tuple[Any, ...]]]:
    """Seal events after the chain's ``head`` row (``seq``, ``hash``; None for a new chain).

    Returns the events and their insert parameters, in order. The caller holds the chain's
    lock (SQLite's write lock, PostgreSQL's advisory lock) from reading ``head`` to commit.
    """
    seq, prev = (int(head["seq"]), str(head["hash"])) if head else (0, "")
    events: list[AuditEvent] = []
    params: list[tuple[Any, ...]] = []
    for seal in seals:
        seq += 1
        sealed = seal(seq, prev)
        e = sealed.event
        events.append(e)
        params.append((e.seq, ts(e.time), e.principal, e.grant_id, e.provider_id,
                       e.outcome.value, e.action, sealed.data, e.prev_hash, e.hash))
        prev = e.hash
    return events, params


def audit(row: Row) -> AuditEvent:
    """Build an audit event from its row, as stored (tampering shows in the hash check)."""
    data = json.loads(row["data"])
    data.update(
        seq=int(row["seq"]), time=_dt(row["time"]), prev_hash=row["prev_hash"], hash=row["hash"]
    )
    return AuditEvent.model_validate(data)


def checkpoint_params(c: Checkpoint) -> tuple[Any, ...]:
    """Return the insert parameters of an audit checkpoint."""
    return (c.seq, c.hash, ts(c.created_at), c.signature)


def checkpoint(row: Row) -> Checkpoint:
    """Build an audit checkpoint from its row."""
    return Checkpoint(seq=int(row["seq"]), hash=row["hash"], created_at=_dt(row["created_at"]),
                      signature=row["signature"])


def api_key(row: Row) -> ApiKeyRecord:
    """Build an API key record from its row."""
    return ApiKeyRecord(
        key_id=row["key_id"], name=row["name"], prefix=row["prefix"], key_hash=row["key_hash"],
        created_at=_dt(row["created_at"]), revoked_at=dt(row["revoked_at"]),
    )
