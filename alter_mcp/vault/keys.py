"""Key-encryption-key rotation: re-wrap every sealed blob under the active key, resumably.

The active key must already be in the keyring (added to the key file, or rolled out through
``ALTER_MCP_MASTER_KEY``); this module only moves data keys onto it. Each blob is re-wrapped
with :meth:`Envelope.rewrap` (the ciphertext stays byte for byte) and written back with a
compare-and-swap, so a blob that changed meanwhile is never overwritten. Progress lives in the
store itself (each blob records the id of its wrapping key), so an interrupted rotation is
finished by simply running it again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from alter_mcp.crypto import RecordBinding, key_id_of
from alter_mcp.errors import AlterError, InvalidInputError
from alter_mcp.models import Outcome
from alter_mcp.oauth.clients import provider_secret_binding
from alter_mcp.oauth.sessions import verifier_binding
from alter_mcp.oauth.tokens import credential_binding
from alter_mcp.store import EncryptedField, EncryptedRef
from alter_mcp.vault._action import Action
from alter_mcp.vault._base import VaultBase, secret_binding

__all__ = ["KeyActions", "RotationFailure", "RotationProgress", "RotationReport",
           "binding_of", "bridge_state_binding"]

#: Called after every batch with (blobs re-wrapped so far, blobs to do when the run began).
RotationProgress = Callable[[int, int | None], None]

#: Counting what is left reads blobs; past this many the total is reported as unknown (None).
COUNT_LIMIT = 100_000
_MAX_BATCH = 10_000
_STALLS = 3
#: Past this many unreadable blobs the keyring is wrong, not the records: stop and say so.
_MAX_FAILURES = 1000


def bridge_state_binding(state_id: str) -> RecordBinding:
    """Return the encryption binding of one authorization-bridge record."""
    return RecordBinding("bridge_state", state_id, "value")


def binding_of(location: EncryptedField, record_id: str) -> RecordBinding:
    """Return the binding a blob in ``location`` was sealed under (as the sealing code uses)."""
    if location is EncryptedField.CREDENTIAL:
        return credential_binding(record_id)
    if location is EncryptedField.MANAGED_SECRET:
        return secret_binding(record_id)
    if location is EncryptedField.SESSION_VERIFIER:
        return verifier_binding(record_id)
    if location is EncryptedField.PROVIDER_SECRET:
        return provider_secret_binding(record_id)
    if location is EncryptedField.BRIDGE_STATE:
        return bridge_state_binding(record_id)
    raise ValueError(f"no binding is known for {location!r}")  # a new column needs one here


@dataclass(frozen=True, slots=True)
class RotationFailure:
    """A blob that could not be re-wrapped, and why (never any of its content)."""

    location: str
    record_id: str
    key_id: str
    error: str
    message: str


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What one rotation run did, and how many blobs still wait for the active key."""

    key_id: str
    rewrapped: int
    raced: int
    left: int | None
    batches: int
    seconds: float
    failures: tuple[RotationFailure, ...] = field(default=())

    @property
    def complete(self) -> bool:
        """Return True when every sealed blob is wrapped by the active key."""
        return self.left == 0

    def to_dict(self) -> dict[str, object]:
        """Return the report as JSON-ready data."""
        return {"key_id": self.key_id, "rewrapped": self.rewrapped, "raced": self.raced,
                "left": self.left, "batches": self.batches, "seconds": round(self.seconds, 3),
                "complete": self.complete,
                "failures": [dataclasses.asdict(f) for f in self.failures]}


class KeyActions(VaultBase):
    """Key-encryption-key rotation over every sealed record (operators only)."""

    @property
    def active_key_id(self) -> str:
        """Return the id of the key that wraps newly sealed data keys."""
        return self._core.envelope.keyring.active.id

    async def record_new_key(self, key_id: str, *, source: str) -> None:
        """Audit that a new key-encryption key was made (``source``: key_file or environment)."""
        async def act(action: Action) -> None:
            self._require_admin(action.identity, "add encryption keys")
            action.note(detail={"key_id": key_id, "source": source,
                                "keyring": list(self._core.envelope.keyring.ids)})

        await self._action("key.add", act)

    async def pending_rewrap(self, *, limit: int = COUNT_LIMIT) -> int | None:
        """Return how many blobs are wrapped by an older key (None if more than ``limit``)."""
        await self._ensure_open()
        found = await self._core.store.blobs_not_under(self.active_key_id, limit=limit + 1)
        return len(found) if len(found) <= limit else None

    async def rotate_keys(
        self, *, batch: int = 500, max_batches: int | None = None,
        progress: RotationProgress | None = None,
    ) -> RotationReport:
        """Re-wrap every blob sealed under an older key with the active key; audit the run.

        Stops after ``max_batches`` batches if given; running it again continues where it
        stopped. Blobs that cannot be opened (their key is gone, or they are corrupt) are
        reported in ``failures`` and left as they are (the run stops after 1000 of them).
        """
        async def act(action: Action) -> RotationReport:
            self._require_admin(action.identity, "rotate encryption keys")
            if isinstance(batch, bool) or not isinstance(batch, int) or not (
                    1 <= batch <= _MAX_BATCH):
                raise InvalidInputError(f"batch must be between 1 and {_MAX_BATCH}.",
                                        field="batch", hint="Use the default of 500.")
            if max_batches is not None and (isinstance(max_batches, bool) or not isinstance(
                    max_batches, int) or max_batches < 1):
                raise InvalidInputError("max_batches must be a positive number.",
                                        field="max_batches", hint="Omit it to finish the run.")
            report = await self._rewrap_all(batch, max_batches, progress)
            action.outcome = Outcome.ALLOWED if not report.failures else Outcome.ERROR
            action.note(detail={
                "key_id": report.key_id, "rewrapped": report.rewrapped, "raced": report.raced,
                "left": report.left, "batches": report.batches,
                "failed": len(report.failures),
                "keyring": list(self._core.envelope.keyring.ids)})
            return report

        return await self._action("key.rotate", act)

    async def _rewrap_all(self, batch: int, max_batches: int | None,
                          progress: RotationProgress | None) -> RotationReport:
        store, envelope = self._core.store, self._core.envelope
        active = envelope.keyring.active.id
        started = time.perf_counter()
        total = await self.pending_rewrap()
        failed: dict[tuple[str, str], RotationFailure] = {}
        done = raced = batches = stalls = 0
        if progress is not None:
            progress(0, total)
        while max_batches is None or batches < max_batches:
            # Failed blobs stay under their old key; ask for enough to see past them.
            found = await store.blobs_not_under(active, limit=batch + len(failed))
            todo = [r for r in found if (r.location.value, r.record_id) not in failed][:batch]
            if not todo:
                break
            batches += 1
            moved, failures_before = 0, len(failed)
            for ref in todo:
                result = await self._rewrap_one(ref)
                if isinstance(result, RotationFailure):
                    failed[(result.location, result.record_id)] = result
                elif result:
                    moved += 1
                else:
                    raced += 1
            done += moved
            if progress is not None:
                progress(done, total)
            # A batch where every write lost its compare-and-swap: something keeps rewriting
            # these records (a process still sealing with the old key); do not spin forever.
            stalls = stalls + 1 if moved == 0 and len(failed) == failures_before else 0
            if stalls >= _STALLS or len(failed) >= _MAX_FAILURES:
                break
        left = await self.pending_rewrap()
        return RotationReport(
            key_id=active, rewrapped=done, raced=raced,
            left=None if left is None else max(0, left),
            batches=batches, seconds=time.perf_counter() - started,
            failures=tuple(failed.values()))

    async def _rewrap_one(self, ref: EncryptedRef) -> bool | RotationFailure:
        try:
            blob = self._core.envelope.rewrap(ref.blob, aad=binding_of(ref.location,
                                                                        ref.record_id))
        except AlterError as exc:
            return RotationFailure(location=ref.location.value, record_id=ref.record_id,
                                   key_id=ref.key_id, error=exc.code, message=exc.message)
        return await self._core.store.replace_blob(ref, blob, key_id_of(blob))
