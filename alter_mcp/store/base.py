"""The ``Store`` protocol: everything the vault persists, and nothing in plaintext that is secret.

Secret material reaches the store only as ciphertext blobs sealed by ``alter_mcp.crypto``; the
store keeps each blob beside the id of the key that wrapped it so rotation can find old ones.
Times are UTC ``datetime`` values in and out. Every mutation takes an optional ``audit``
sealer whose event is appended in the same transaction, so an action and its audit row commit
or fail together. Backends translate their own exceptions into
:class:`~alter_mcp.errors.StoreError` at their boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from alter_mcp.models import (
    ApiKeyRecord,
    AuditEvent,
    ConnectSession,
    ConnectSessionStatus,
    Grant,
    GrantStatus,
    ManagedSecret,
)

__all__ = [
    "AuditFilter",
    "AuditHead",
    "Checkpoint",
    "CheckpointSealer",
    "CredentialRecord",
    "EncryptedField",
    "EncryptedRef",
    "HeadSigner",
    "ProviderConfigRecord",
    "PruneAuditor",
    "PruneResult",
    "Reservation",
    "SealedEvent",
    "SessionRecord",
    "Store",
]


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """A grant's encrypted credential; ``version`` increases on every compare-and-swap write."""

    grant_id: str
    blob: bytes = field(repr=False)
    key_id: str
    version: int
    expires_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ProviderConfigRecord:
    """An OAuth client configured through the vault API (the secret sealed)."""

    provider_id: str
    client_id: str
    secret_blob: bytes | None = field(repr=False)
    key_id: str | None
    scopes: tuple[str, ...] | None
    redirect_uri: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A connect session as stored: the public session plus hashed handles and sealed PKCE."""

    session: ConnectSession
    token_hash: str
    state_hash: str | None = None
    provider_id: str | None = None
    verifier_blob: bytes | None = field(default=None, repr=False)
    key_id: str | None = None


class EncryptedField(StrEnum):
    """Every column that holds a sealed blob, named ``table.column``."""

    CREDENTIAL = "credentials.blob"
    MANAGED_SECRET = "managed_secrets.blob"
    SESSION_VERIFIER = "connect_sessions.verifier_blob"
    PROVIDER_SECRET = "provider_configs.secret_blob"
    BRIDGE_STATE = "bridge_state.blob"


@dataclass(frozen=True, slots=True)
class EncryptedRef:
    """One sealed blob, where it lives, and which key wrapped it."""

    location: EncryptedField
    record_id: str
    blob: bytes = field(repr=False)
    key_id: str


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which audit events to read."""

    since: datetime | None = None
    until: datetime | None = None
    principal: str | None = None
    grant_id: str | None = None
    provider_id: str | None = None
    outcome: str | None = None
    action: str | None = None
    caller: str | None = None
    after_seq: int = 0
    limit: int = 1000


@dataclass(frozen=True, slots=True)
class Reservation:
    """The outcome of a conditional append: the event, or which limit was already reached."""

    event: AuditEvent | None
    exceeded: int | None


@dataclass(frozen=True, slots=True)
class SealedEvent:
    """An audit event at its place in the chain, and its stored ``data`` column, ready."""

    event: AuditEvent
    #: The stored ``data`` column: the event's canonical JSON, the text its hash covers. On
    #: read the indexed columns must repeat its values exactly (a row where they differ reads
    #: as modified).
    data: str
    #: Signs the chain's head anchor once this event is the newest (None: left unsigned).
    head_signer: HeadSigner | None = None


#: Returns the signature of the audit head anchor at (seq, hash).
HeadSigner = Callable[[int, str], str]
#: Builds the next audit event from its sequence number and the previous event's hash.
AuditSealer = Callable[[int, str], SealedEvent]


@dataclass(frozen=True, slots=True)
class AuditHead:
    """The signed seq and hash of the newest event: deleting events after it shows."""

    seq: int
    hash: str
    #: ``hmac-sha256:v1:<kek id>:<mac>``, or empty where no key signed it yet (an upgrade).
    signature: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The signed seq and hash of the last event a prune removed: where the chain resumes."""

    seq: int
    hash: str
    created_at: datetime
    signature: str


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What one prune did: how many events it deleted and the checkpoint it wrote, if any."""

    deleted: int
    checkpoint: Checkpoint | None


#: Builds the signed checkpoint of the last pruned event from that event's seq and hash.
CheckpointSealer = Callable[[int, str], Checkpoint]
#: Builds the prune's own audit event from the number deleted and the checkpoint written.
PruneAuditor = Callable[[int, Checkpoint | None], AuditSealer]


@runtime_checkable
class Store(Protocol):
    """Persistence for grants, credentials, secrets, sessions, audit events and API keys."""

    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None:
        """Release connections."""

    async def schema_version(self) -> int:
        """Return the applied migration version."""

    @property
    def expected_schema_version(self) -> int:
        """Return the migration version this code writes (the database should be at it)."""

    # -- grants and credentials ------------------------------------------------------------
    async def insert_grant(
        self, grant: Grant, credential: CredentialRecord | None, *,
        audit: AuditSealer | None = None,
    ) -> None:
        """Insert a grant and its credential (and audit event) in one transaction."""

    async def get_grant(self, grant_id: str) -> Grant | None:
        """Return the grant with this id, whoever owns it."""

    async def find_grants(
        self,
        owner_keys: Sequence[str],
        provider_id: str,
        *,
        statuses: Sequence[GrantStatus] = (GrantStatus.ACTIVE,),
        account_identifier: str | None = None,
    ) -> list[Grant]:
        """Return the grants of these owners for a provider, oldest first."""

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

    async def update_grant(
        self, grant: Grant, credential: CredentialRecord | None = None, *,
        audit: AuditSealer | None = None,
    ) -> None:
        """Replace a grant's mutable fields (and optionally its credential) atomically."""

    async def set_grant_status(
        self, grant_id: str, status: GrantStatus, *, audit: AuditSealer | None = None
    ) -> None:
        """Set a grant's status (e.g. needs_reauth after invalid_grant)."""

    async def revoke_grant(
        self, grant_id: str, revoked_at: datetime, *, audit: AuditSealer | None = None
    ) -> bool:
        """Delete the credential and mark the grant revoked; False if already revoked."""

    async def get_credential(self, grant_id: str) -> CredentialRecord | None:
        """Return the grant's credential record."""

    async def swap_credential(self, record: CredentialRecord, *, expected_version: int) -> bool:
        """Write ``record`` only if the stored version is ``expected_version``."""

    # -- cross-process refresh lease -------------------------------------------------------
    async def acquire_refresh_lease(self, grant_id: str, holder: str, ttl: float) -> bool:
        """Take the grant's refresh lease unless another live holder has it."""

    async def release_refresh_lease(self, grant_id: str, holder: str) -> None:
        """Release the lease if this holder still owns it."""

    # -- managed secrets -------------------------------------------------------------------
    async def insert_secret(
        self, secret: ManagedSecret, blob: bytes, key_id: str, *,
        audit: AuditSealer | None = None,
    ) -> None:
        """Store a managed secret's sealed fields."""

    async def insert_secret_grant(
        self, secret: ManagedSecret, blob: bytes, key_id: str, grant: Grant, *,
        audit: Sequence[AuditSealer] = (),
    ) -> None:
        """Store a managed secret and its one grant (and their audit events) together."""

    async def get_secret(self, secret_id: str) -> tuple[ManagedSecret, bytes] | None:
        """Return a managed secret and its sealed fields."""

    async def get_secret_blob(self, secret_id: str) -> bytes | None:
        """Return only a managed secret's sealed fields (the request hot path's read)."""

    async def list_secrets(self) -> list[ManagedSecret]:
        """Return every managed secret's metadata."""

    # -- provider configs ------------------------------------------------------------------
    async def put_provider_config(
        self, record: ProviderConfigRecord, *, audit: AuditSealer | None = None
    ) -> None:
        """Insert or replace a provider's OAuth client."""

    async def get_provider_config(self, provider_id: str) -> ProviderConfigRecord | None:
        """Return a provider's OAuth client configured through the API."""

    async def list_provider_configs(self) -> list[ProviderConfigRecord]:
        """Return every provider config stored through the API."""

    # -- connect sessions ------------------------------------------------------------------
    async def insert_session(self, record: SessionRecord) -> None:
        """Store a new connect session."""

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """Return a session by id."""

    async def get_session_by_token(self, token_hash: str) -> SessionRecord | None:
        """Return a session by the hash of its connect token."""

    async def begin_authorization(
        self, session_id: str, *, provider_id: str, state_hash: str, verifier_blob: bytes,
        key_id: str,
    ) -> bool:
        """Record the OAuth state and sealed verifier of a pending session's authorization."""

    async def claim_state(self, state_hash: str, now: datetime) -> SessionRecord | None:
        """Consume a pending, unexpired session's state exactly once; None if not claimable."""

    async def claim_session(self, session_id: str, *, provider_id: str, now: datetime) -> bool:
        """Consume a pending, unexpired session with no authorization under way, exactly once.

        For a session finished in one step (a pasted key) rather than by an OAuth callback.
        """

    async def finish_session(
        self,
        session_id: str,
        status: ConnectSessionStatus,
        *,
        grant_ids: Sequence[str] = (),
        error: str | None = None,
    ) -> None:
        """Mark a session completed or failed."""

    # -- audit -----------------------------------------------------------------------------
    async def append_audit(self, seal: AuditSealer) -> AuditEvent:
        """Append the event ``seal`` builds from the next seq and the chain head's hash."""

    async def append_audit_many(self, seals: Sequence[AuditSealer]) -> list[AuditEvent]:
        """Append the events ``seals`` build, in order, in one transaction (all or none).

        The group commit of :class:`~alter_mcp.audit.AuditLog`: events recorded in the same
        event-loop turn share one transaction, so concurrent requests share its cost.
        """

    async def append_audit_within(
        self, seal: AuditSealer, limits: Sequence[tuple[AuditFilter, int]]
    ) -> Reservation:
        """Append ``seal``'s event only if every filter matches fewer events than its limit.

        Counting and appending happen under the audit chain's lock, so concurrent callers on
        any process or replica cannot both take the last slot of a rate limit.
        """

    async def list_audit(self, flt: AuditFilter) -> list[AuditEvent]:
        """Return audit events matching the filter, ordered by seq."""

    async def count_audit(self, flt: AuditFilter) -> int:
        """Return how many events match ``flt``, counting no further than ``flt.limit``."""

    async def prune_audit(
        self, before: datetime, seal: CheckpointSealer, *, audit: PruneAuditor | None = None
    ) -> PruneResult:
        """Delete the oldest events timed before ``before`` and checkpoint the last, atomically.

        Only a gapless prefix of the chain goes (it stops at the first event at or after
        ``before``), the newest event always stays, and the checkpoint ``seal`` builds for the
        last deleted event is written in the same transaction, followed by the event ``audit``
        builds, if given.
        """

    async def latest_checkpoint(self) -> Checkpoint | None:
        """Return the checkpoint with the highest seq: where the remaining chain resumes."""

    async def audit_head(self) -> AuditHead | None:
        """Return the head anchor every append advances (None only if it was deleted)."""

    async def list_checkpoints(self) -> list[Checkpoint]:
        """Return every checkpoint, ordered by seq."""

    # -- agent API keys --------------------------------------------------------------------
    async def insert_api_key(
        self, record: ApiKeyRecord, *, audit: AuditSealer | None = None
    ) -> None:
        """Store an API key's hash."""

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        """Return the key with this hash."""

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """Return every API key record."""

    async def revoke_api_key(
        self, key_id: str, revoked_at: datetime, *, audit: AuditSealer | None = None
    ) -> bool:
        """Mark a key revoked; False if unknown or already revoked."""

    # -- key rotation ----------------------------------------------------------------------
    async def blobs_not_under(self, key_id: str, *, limit: int) -> list[EncryptedRef]:
        """Return up to ``limit`` sealed blobs wrapped by any key other than ``key_id``."""

    async def replace_blob(self, ref: EncryptedRef, blob: bytes, key_id: str) -> bool:
        """Replace one blob if it is still the one in ``ref`` (compare-and-swap)."""

    async def sealed_key_ids(self) -> set[str]:
        """Return the id of every key that wraps at least one stored blob."""

    # -- authorization bridge state --------------------------------------------------------
    async def get_bridge_state(self, state_id: str, now: datetime) -> bytes | None:
        """Return the sealed bridge record ``state_id`` unless it is missing or expired."""

    async def put_bridge_state(self, state_id: str, blob: bytes, key_id: str,
                               expires_at: datetime | None) -> None:
        """Insert or replace the sealed bridge record ``state_id``; drop expired records."""

    async def delete_bridge_state(self, state_id: str) -> bool:
        """Delete the bridge record ``state_id``; return whether it existed."""

    # -- key checks ------------------------------------------------------------------------
    async def key_checks(self) -> dict[str, str]:
        """Return the check value recorded for each key id that sealed records here."""

    async def add_key_checks(self, checks: Mapping[str, str]) -> None:
        """Record check values for key ids that have none; an existing one is never replaced."""
