"""Conversions between stored rows and models, shared by the SQL backends."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import TypeAdapter

from alter_mcp.errors import StoreError
from alter_mcp.models import (
    ApiKeyRecord,
    AuditEvent,
    ConnectSession,
    Grant,
    ManagedSecret,
    Principal,
)
from alter_mcp.store.base import (
    AuditHead,
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


def seal_chain(seals: Sequence[AuditSealer], head: Row
               ) -> tuple[list[AuditEvent], list[tuple[Any, ...]], tuple[int, str, str]]:
    """Seal events after the chain's ``head`` anchor row (``seq``, ``hash``).

    Returns the events and their insert parameters, in order, and the new anchor (seq, hash,
    signature: the last event's, signed once). The caller holds the chain's lock (SQLite's
    write lock, PostgreSQL's advisory lock) from reading ``head`` to commit.
    """
    seq, prev = int(head["seq"]), str(head["hash"])
    events: list[AuditEvent] = []
    params: list[tuple[Any, ...]] = []
    sealed = None
    for seal in seals:
        seq += 1
        sealed = seal(seq, prev)
        e = sealed.event
        events.append(e)
        params.append((e.seq, ts(e.time), e.principal, e.grant_id, e.provider_id,
                       e.outcome.value, e.action, sealed.data, e.prev_hash, e.hash, e.caller))
        prev = e.hash
    signer = sealed.head_signer if sealed is not None else None
    return events, params, (seq, prev, signer(seq, prev) if signer is not None else "")


def missing_head() -> StoreError:
    """Return the error of an append that finds the audit head anchor deleted."""
    return StoreError(
        "The audit head anchor is missing, so the newest audit events may have been deleted; "
        "nothing was written.",
        hint="Run `alter-mcp audit verify` and restore the database from a backup.",
    )


#: The indexed columns of ``audit_events`` that repeat a value of the hashed ``data``.
_REPEATED = ("seq", "time", "principal", "grant_id", "provider_id", "outcome", "action",
             "prev_hash", "caller")

#: The columns of an ``audit_events`` insert, in the order of :func:`seal_chain`'s parameters.
AUDIT_COLUMNS = ("seq, time, principal, grant_id, provider_id, outcome, action, data, "
                 "prev_hash, hash, caller")


def audit(row: Row) -> AuditEvent:
    """Build an audit event from its row; one whose columns disagree with its data says so.

    The event carries the column values (what filters matched), so an edited column also
    fails the hash check; :attr:`AuditEvent.mismatch` names the columns that disagree.
    """
    columns: dict[str, Any] = {name: row[name] for name in _REPEATED}
    columns.update(seq=int(row["seq"]), time=_dt(row["time"]), hash=row["hash"])
    try:
        # Rows written before the data column held the whole payload lack seq, time and
        # prev_hash there: those come from their columns, which their hash covers.
        stored = AuditEvent.model_validate({**columns, **json.loads(row["data"]),
                                            "hash": row["hash"]})
    except (ValueError, TypeError):  # not JSON, not an object, or not an event
        stored = None
    differ = [n for n in _REPEATED if stored is None or getattr(stored, n) != columns[n]]
    if stored is not None and not differ:
        return stored
    try:
        event = AuditEvent.model_validate({**stored.model_dump(), **columns} if stored
                                          else columns)
    except ValueError:
        if stored is None:
            raise StoreError(f"Audit event {columns['seq']} cannot be read: its row is "
                             "corrupt.", hint="Run `alter-mcp audit verify`.") from None
        event = stored.model_copy(update={"seq": columns["seq"]})
    event._mismatch = (
        "its data column is not a valid event" if stored is None else
        f"its {', '.join(differ)} column{'s' if len(differ) > 1 else ''} "
        f"disagree{'' if len(differ) > 1 else 's'} with its hashed data")
    return event


def audit_head(row: Row) -> AuditHead:
    """Build the audit head anchor from its row."""
    return AuditHead(seq=int(row["seq"]), hash=row["hash"], signature=row["signature"])


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
