"""The tamper-evident audit log: every action, allowed or denied, is one hash-chained event.

Each event's hash covers its canonical JSON and the previous event's hash, and every indexed
column must repeat that JSON's values, so an edited, deleted or reordered row breaks the chain at
a point :func:`verify_chain` reports. A signed head anchor (:mod:`alter_mcp.audit_head`) names
the newest event, so deleting events from the end shows too. Every field passes through
:mod:`alter_mcp.redaction` before it is sealed. Retention prunes the oldest events behind a
signed checkpoint (:mod:`alter_mcp.audit_retention`), where verification resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from alter_mcp.audit_head import check_head, head_signer
from alter_mcp.audit_retention import check_checkpoint, retention_cutoff, sign_checkpoint
from alter_mcp.crypto import Keyring
from alter_mcp.errors import AlterError, AuditWriteError, RequestSentUnauditedError
from alter_mcp.models import AuditEvent, Identity, Outcome
from alter_mcp.redaction import Secret, known_secrets, redact, redact_text, redact_url
from alter_mcp.store.base import (
    AuditFilter,
    AuditHead,
    AuditSealer,
    Checkpoint,
    HeadSigner,
    PruneResult,
    SealedEvent,
    Store,
)

__all__ = ["INTENT", "INTENT_SEQ", "AuditEntry", "AuditLog", "ChainReport", "event_hash",
           "linked", "nothing_sent", "verify_chain"]

#: ``detail`` key marking an intent event: a credential use about to leave the process.
INTENT = "intent"
#: ``detail`` key of an outcome event naming the seq of the intent it finishes.
INTENT_SEQ = "intent_seq"


def nothing_sent(what: str) -> AuditWriteError:
    """Return the error of a credential use refused because its audit event failed."""
    return AuditWriteError(
        f"The audit log could not be written, so the {what} was not sent: nothing reached "
        "the provider.",
        hint="An operator must repair the audit store (disk space, permissions, database "
             "server; alter-mcp doctor); sending it again is safe once the log is writable.")


def linked(entry: AuditEntry, intent_seq: int | None) -> AuditEntry:
    """Return ``entry`` as the outcome of the intent event ``intent_seq`` (if there is one)."""
    if intent_seq is None:
        return entry
    return dataclasses.replace(entry, detail={**entry.detail, INTENT_SEQ: intent_seq})


def _now() -> datetime:
    return datetime.now(UTC)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(prev_hash: str, payload: dict[str, Any]) -> str:
    """Return the SHA-256 chaining ``prev_hash`` to an event's canonical JSON."""
    return hashlib.sha256(f"{prev_hash}\n{_canonical(payload)}".encode()).hexdigest()


def _payload(event: AuditEvent) -> dict[str, Any]:
    return event.model_dump(mode="json", exclude={"hash"})


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """The facts of one action, before redaction and sealing."""

    action: str
    outcome: Outcome
    identity: Identity | None = None
    grant_id: str | None = None
    provider_id: str | None = None
    method: str | None = None
    url: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    policy_rule: str | None = None
    reason: str | None = None
    error: str | None = None
    tool: str | None = None
    request_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failed(cls, action: str, exc: BaseException, **facts: Any) -> AuditEntry:
        """Return the entry of an action that ended in ``exc`` (denied if a user error)."""
        outcome = Outcome.DENIED if isinstance(exc, AlterError) else Outcome.ERROR
        code = exc.code if isinstance(exc, AlterError) else type(exc).__name__
        rule = getattr(exc, "rule", None)
        return cls(action=action, outcome=outcome, error=code, policy_rule=rule, **facts)


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The result of walking the hash chain (from ``checkpoint_seq`` if the log was pruned)."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    checkpoint_seq: int | None = None


#: The most events one group commit writes; later callers start the next batch.
_MAX_BATCH = 256


class _Batch:
    """Events waiting for one group commit, and its outcome."""

    __slots__ = ("done", "error", "events", "seals")

    def __init__(self, seal: AuditSealer) -> None:
        self.seals = [seal]
        self.done = asyncio.Event()
        self.events: list[AuditEvent] | None = None
        self.error: Exception | None = None


class AuditLog:
    """Seals entries into chained events and writes them through the store.

    With ``keyring``, every append also signs the chain's head anchor, and :meth:`verify`
    checks it; without, the anchor is left unsigned and verify reports so.
    """

    def __init__(self, store: Store, *, clock: Callable[[], datetime] = _now,
                 keyring: Keyring | None = None) -> None:
        self._store = store
        self._clock = clock
        self._keyring = keyring
        self._head_signer = head_signer(keyring) if keyring is not None else None
        self._open: _Batch | None = None
        self._in_flight = 0
        self._flushing: set[asyncio.Task[None]] = set()

    def use_keyring(self, keyring: Keyring) -> None:
        """Sign the head (and verify) with ``keyring`` from now on (set when the vault opens)."""
        self._keyring = keyring
        self._head_signer = head_signer(keyring)

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        """Mark an action that will record an event soon (lets its peers group-commit)."""
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    def sealer(self, entry: AuditEntry, secrets: Iterable[str | Secret] = (), *,
               signer: HeadSigner | None = None) -> AuditSealer:
        """Return the function the store calls to build the event at the chain's head."""
        signer = signer or self._head_signer
        known = known_secrets(secrets)
        ident = entry.identity
        moment = self._clock().astimezone(UTC)
        # Millisecond precision survives every backend's timestamp type unchanged.
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        fields: dict[str, Any] = {
            "time": moment,
            "action": entry.action,
            "outcome": entry.outcome,
            "caller": ident.caller if ident else None,
            "caller_type": ident.caller_type.value if ident else None,
            "mcp_client": ident.mcp_client if ident else None,
            "principal": ident.principal.key if ident else None,
            "tool": entry.tool or (ident.tool if ident else None),
            "request_id": entry.request_id or (ident.request_id if ident else None),
            "grant_id": entry.grant_id,
            "provider_id": entry.provider_id,
            "method": entry.method,
            "url": redact_url(entry.url, known) if entry.url else None,
            "status": entry.status,
            "latency_ms": round(entry.latency_ms, 3) if entry.latency_ms is not None else None,
            "policy_rule": entry.policy_rule,
            "reason": redact_text(entry.reason, known) if entry.reason else None,
            "error": redact_text(entry.error, known) if entry.error else None,
            "detail": redact(entry.detail, known),
        }

        # Validate and serialise once, outside the store's transaction; sealing then only
        # fills in the chain position and hashes.
        base = AuditEvent(seq=0, prev_hash="", hash="", **fields)
        payload = _payload(base)

        def seal(seq: int, prev_hash: str) -> SealedEvent:
            payload["seq"], payload["prev_hash"] = seq, prev_hash
            canonical = _canonical(payload)
            digest = hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()
            event = base.model_copy(update={"seq": seq, "prev_hash": prev_hash, "hash": digest})
            # The data column stores the very text the hash covers; the indexed columns
            # repeat its values, and a row where they differ reads as modified.
            return SealedEvent(event, canonical, signer)

        return seal

    async def record(
        self, entry: AuditEntry, secrets: Iterable[str | Secret] = ()
    ) -> AuditEvent:
        """Write one event now; raise ``AuditWriteError`` if it cannot be written.

        Group commit: events recorded during the same event-loop turn are written in one
        transaction, and each caller returns only once that transaction has committed (or
        raises if it failed), so every answer still waits for its own event. The first caller
        waits one turn for others only when other actions are :meth:`in_flight`.
        """
        seal = self.sealer(entry, secrets)
        batch = self._open
        if batch is not None and len(batch.seals) < _MAX_BATCH:
            index = len(batch.seals)
            batch.seals.append(seal)
        elif self._in_flight > 1:
            # Others may finish during this turn of the event loop: open a batch for them and
            # commit it from a task of its own, after the turn. A cancelled caller then only
            # stops waiting; the batch, its own event included, is still written.
            index, batch = 0, _Batch(seal)
            self._open = batch
            task = asyncio.get_running_loop().create_task(self._flush(batch, after_turn=True))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)
        else:
            # Alone: commit now, inline. Nobody else waits on this batch.
            index, batch = 0, _Batch(seal)
            await self._flush(batch)
        if not batch.done.is_set():
            await batch.done.wait()
        if batch.events is None:
            raise AuditWriteError(
                "The audit event could not be written, so the action was not completed.",
                hint="Check the database (disk space, permissions) and retry.",
            ) from batch.error
        return batch.events[index]

    async def intent(self, entry: AuditEntry, secrets: Iterable[str | Secret] = (), *,
                     what: str) -> int:
        """Commit the intent of a credential use before it is sent; return its seq.

        Raise ``AuditWriteError`` saying nothing was sent if it cannot be written: the caller
        must then not send (write-ahead audit).
        """
        marked = dataclasses.replace(entry, detail={**entry.detail, INTENT: True})
        try:
            event = await self.record(marked, secrets)
        except AuditWriteError as exc:
            raise nothing_sent(what) from exc
        return event.seq

    async def outcome(
        self, entry: AuditEntry, secrets: Iterable[str | Secret] = (), *,
        intent_seq: int | None, sent: bool, status: int | None, what: str,
        note: str | None = None,
    ) -> AuditEvent:
        """Record the outcome of the intent ``intent_seq``.

        If it cannot be written, raise ``RequestSentUnauditedError`` (never a reason to send
        again) when the use was ``sent``, else ``AuditWriteError`` saying nothing was sent.
        """
        try:
            return await self.record(linked(entry, intent_seq), secrets)
        except AuditWriteError as exc:
            if sent:
                raise RequestSentUnauditedError(what=what, status=status,
                                                intent_seq=intent_seq, note=note) from exc
            raise nothing_sent(what) from exc

    async def unfinished(self, *, batch: int = 5000) -> list[AuditEvent]:
        """Return intents with no outcome event: credential uses sent, outcome unknown.

        An intent whose outcome could not be written stays here for good (a crash between
        sending and recording too); a use still in flight shows here until it finishes.
        """
        pending: dict[int, AuditEvent] = {}
        after = 0
        while events := await self._store.list_audit(AuditFilter(after_seq=after,
                                                                  limit=batch)):
            for event in events:
                if event.detail.get(INTENT) is True:
                    pending[event.seq] = event
                done = event.detail.get(INTENT_SEQ)
                if isinstance(done, int):
                    pending.pop(done, None)
            after = events[-1].seq
        return list(pending.values())

    async def _flush(self, batch: _Batch, *, after_turn: bool = False) -> None:
        try:
            if after_turn:
                await asyncio.sleep(0)
                if self._open is batch:
                    self._open = None
            batch.events = await self._store.append_audit_many(batch.seals)
        except Exception as exc:  # every caller of the batch raises it
            batch.error = exc
        finally:
            if self._open is batch:
                self._open = None
            batch.done.set()

    async def events(self, flt: AuditFilter) -> list[AuditEvent]:
        """Return events matching the filter."""
        return await self._store.list_audit(flt)

    async def checkpoints(self) -> list[Checkpoint]:
        """Return every checkpoint pruning has left, oldest first."""
        return await self._store.list_checkpoints()

    async def prune(
        self, older_than: timedelta | datetime, *, keyring: Keyring,
        identity: Identity | None = None,
    ) -> PruneResult:
        """Delete events older than ``older_than`` behind a signed checkpoint; audit the prune.

        ``older_than`` is a retention (``timedelta``, at least one day) or an aware cutoff
        time at least a day old. Only a gapless run of the oldest events goes and the newest
        event always stays, so pruning again with the same cutoff deletes nothing more.
        """
        now = self._clock()
        before = retention_cutoff(older_than, now=now)

        def seal(seq: int, digest: str) -> Checkpoint:
            return sign_checkpoint(keyring, seq=seq, hash=digest, created_at=now)

        def audit(deleted: int, checkpoint: Checkpoint | None) -> AuditSealer:
            detail = {"deleted": deleted, "checkpoint_seq": checkpoint.seq if checkpoint else None,
                      "before": before.isoformat()}
            return self.sealer(AuditEntry("audit.prune", Outcome.ALLOWED, identity=identity,
                                          detail=detail), signer=head_signer(keyring))

        return await self._store.prune_audit(before, seal, audit=audit)

    async def verify(self, *, keyring: Keyring | None = None, batch: int = 5000) -> ChainReport:
        """Walk the chain from its start, or its latest checkpoint, to its signed head.

        Needs ``keyring`` (previous keys included; default: the log's own) to check the head
        anchor and, in a pruned log, the checkpoint's signature. The first remaining event must
        follow the checkpoint exactly, and the last must be the one the head anchor signs.
        """
        keyring = keyring or self._keyring
        for _ in range(3):
            checkpoint = await self._store.latest_checkpoint()
            report = await self._walk(checkpoint, keyring, batch)
            # A prune committing mid-walk deletes rows under the walk: only then walk again.
            if report.ok or await self._store.latest_checkpoint() == checkpoint:
                break
        return report

    async def _walk(self, checkpoint: Checkpoint | None, keyring: Keyring | None, batch: int
                    ) -> ChainReport:
        head = await self._store.list_audit(AuditFilter(limit=1))
        start = _start(checkpoint, head[0] if head else None, keyring)
        if isinstance(start, ChainReport):
            return start
        after, prev = start
        cp_seq = checkpoint.seq if checkpoint else None
        checked = 0
        while True:
            events = await self._store.list_audit(AuditFilter(after_seq=after, limit=batch))
            if not events:
                # Read after the walk: every append advances the anchor in its own
                # transaction, so an anchor ahead of the walk means new events, or deleted ones.
                anchor = await self._store.audit_head()
                if anchor is not None and anchor.seq > after and await self._store.list_audit(
                        AuditFilter(after_seq=after, limit=1)):
                    continue
                problem = _check_end(anchor, after, prev, keyring)
                if problem is not None:
                    return ChainReport(False, checked, *problem, cp_seq)
                return ChainReport(ok=True, checked=checked, checkpoint_seq=cp_seq)
            report = verify_chain(events, prev_hash=prev, expected_seq=after + 1)
            if not report.ok:
                return ChainReport(False, checked + report.checked, report.first_bad_seq,
                                   report.problem, cp_seq)
            checked += report.checked
            after, prev = events[-1].seq, events[-1].hash


def _check_end(anchor: AuditHead | None, last: int, last_hash: str, keyring: Keyring | None
               ) -> tuple[int, str] | None:
    """Return (seq, problem) if the chain's end, ``last``, is not the signed head."""
    if anchor is None:
        return last + 1, ("the signed head is missing: it was deleted, so events after seq "
                          f"{last} may have been deleted too")
    if anchor.seq == last == 0 and not anchor.signature:
        return None  # a new, empty log: nothing recorded, nothing to sign yet
    if keyring is None:
        return anchor.seq, "checking the signed head needs the keyring (pass keyring=...)"
    problem = check_head(keyring, anchor)
    if problem is not None:
        return anchor.seq, problem
    if anchor.seq > last:
        missing = (f"event {last + 1} is" if anchor.seq == last + 1
                   else f"events {last + 1} to {anchor.seq} are")
        return last + 1, (f"{missing} missing: the newest events were deleted (the signed head "
                          f"is at seq {anchor.seq})")
    if anchor.seq < last:
        return anchor.seq + 1, (f"event {anchor.seq + 1} is after the signed head at seq "
                                f"{anchor.seq}: the head was rolled back, or events were "
                                "written without the key")
    if anchor.hash != last_hash:
        return last, (f"event {last} is not the event the signed head anchors: it was "
                      "replaced")
    return None


def _start(checkpoint: Checkpoint | None, first: AuditEvent | None, keyring: Keyring | None
           ) -> tuple[int, str] | ChainReport:
    """Return where the walk starts (after seq, previous hash), or why it cannot start."""
    if checkpoint is None:
        if first is not None and first.seq != 1:
            missing = "event 1 is" if first.seq == 2 else f"events 1 to {first.seq - 1} are"
            return ChainReport(False, 0, 1,
                               f"{missing} missing and no signed checkpoint covers them: rows "
                               "or the checkpoint were deleted")
        return 0, ""
    cp = checkpoint.seq

    def bad(seq: int, problem: str) -> ChainReport:
        return ChainReport(False, 0, seq, problem, cp)

    if keyring is None:
        return bad(cp, f"the log was pruned up to seq {cp}; checking its checkpoint needs the "
                       "keyring (pass keyring=...)")
    problem = check_checkpoint(keyring, checkpoint)
    if problem is not None:
        return bad(cp, problem)
    if first is None:
        return bad(cp + 1, f"no event follows the checkpoint at seq {cp}: rows after it were "
                           "deleted")
    if first.seq > cp + 1:
        return bad(cp + 1, f"expected seq {cp + 1} after the checkpoint at seq {cp}, found "
                              f"{first.seq}: rows missing")
    if first.seq <= cp:
        return bad(first.seq, f"event {first.seq} is at or before the checkpoint at seq {cp}: "
                              "pruned rows were put back or the checkpoint was moved")
    if first.prev_hash != checkpoint.hash:
        return bad(first.seq, f"event {first.seq} does not link to the checkpoint at seq {cp}")
    return cp, checkpoint.hash


def verify_chain(
    events: Sequence[AuditEvent], *, prev_hash: str | None = None, expected_seq: int | None = None
) -> ChainReport:
    """Check links, hashes and sequence numbers of consecutive events."""
    for index, event in enumerate(events):
        if expected_seq is not None and event.seq != expected_seq:
            gap = event.seq > expected_seq
            return ChainReport(False, index, expected_seq if gap else event.seq,
                               f"expected seq {expected_seq}, found {event.seq}: rows "
                               f"{'missing' if gap else 'reordered'}")
        if event.mismatch is not None:
            return ChainReport(False, index, event.seq,
                               f"event {event.seq} was modified after it was written: "
                               f"{event.mismatch}")
        if prev_hash is not None and event.prev_hash != prev_hash:
            return ChainReport(False, index, event.seq,
                               f"event {event.seq} does not link to the event before it")
        if event_hash(event.prev_hash, _payload(event)) != event.hash:
            return ChainReport(False, index, event.seq,
                               f"event {event.seq} was modified after it was written")
        prev_hash, expected_seq = event.hash, event.seq + 1
    return ChainReport(True, len(events))
