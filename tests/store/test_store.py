"""The shared contract of every ``Store`` backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from alter_mcp.audit import AuditEntry, AuditLog, verify_chain
from alter_mcp.crypto import KeyEncryptionKey, Keyring
from alter_mcp.errors import StoreError
from alter_mcp.models import (
    ApiKeyRecord,
    ConnectSession,
    ConnectSessionStatus,
    Grant,
    GrantKind,
    GrantStatus,
    GroupPrincipal,
    ManagedSecret,
    Outcome,
    SystemPrincipal,
    UserPrincipal,
)
from alter_mcp.store import (
    AuditFilter,
    Checkpoint,
    CredentialRecord,
    EncryptedField,
    SessionRecord,
    Store,
)
from tests.store.conftest import RawSQL

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RING = Keyring(KeyEncryptionKey(bytes(range(32))))
ALICE = UserPrincipal(issuer="https://idp.test", subject="alice")
BOB = UserPrincipal(issuer="https://idp.test", subject="bob")
ENG = GroupPrincipal(issuer="https://idp.test", group="eng")


def make_grant(n: int, owner: object = ALICE, provider: str = "github",
               account: str | None = None) -> Grant:
    when = T0 + timedelta(seconds=n)
    return Grant(
        grant_id=f"g{n:06d}", kind=GrantKind.OAUTH, provider_id=provider, owner=owner,
        account_identifier=account or f"acct{n}", scopes=("read",), created_at=when,
        updated_at=when,
    )


def cred(grant_id: str, version: int = 1, blob: bytes = b"ciphertext",
         key_id: str = "kek_a") -> CredentialRecord:
    return CredentialRecord(grant_id=grant_id, blob=blob, key_id=key_id, version=version,
                            expires_at=T0 + timedelta(hours=1), updated_at=T0)


def entry(action: str = "test.action") -> AuditEntry:
    return AuditEntry(action, Outcome.ALLOWED)


async def test_store_migrations_applied_once(store: Store) -> None:
    """Opening applies every migration and records the schema version."""
    assert await store.schema_version() >= 1


async def test_store_grant_round_trip(store: Store) -> None:
    """A grant and its credential come back exactly as inserted."""
    grant = make_grant(1)
    await store.insert_grant(grant, cred(grant.grant_id))
    assert await store.get_grant(grant.grant_id) == grant
    record = await store.get_credential(grant.grant_id)
    assert record is not None and record.blob == b"ciphertext" and record.version == 1
    assert await store.get_grant("missing") is None


async def test_store_keeps_connection_values_of_grants_and_secrets(store: Store) -> None:
    """A grant's and a managed secret's connection values survive the round trip and updates."""
    grant = make_grant(1, provider="shopify-admin").model_copy(
        update={"connection": {"shop": "acme"}})
    await store.insert_grant(grant, cred(grant.grant_id))
    await store.update_grant(grant.model_copy(update={"label": "renamed"}))
    found = await store.get_grant(grant.grant_id)
    assert found is not None and found.connection == {"shop": "acme"}
    assert [g.connection for g in await store.list_grants([ALICE.key], limit=5)] \
        == [{"shop": "acme"}]
    secret = ManagedSecret(secret_id="sec1", provider_id="zendesk", label="prod",
                           field_names=("api_token",), created_at=T0,
                           connection={"subdomain": "acme"})
    await store.insert_secret(secret, b"blob", "kek_a")
    assert await store.list_secrets() == [secret]


async def test_store_find_grants_by_owner_provider_account(store: Store) -> None:
    """find_grants filters by owner keys, provider, status and account."""
    await store.insert_grant(make_grant(1, ALICE, "github", "a1"), None)
    await store.insert_grant(make_grant(2, ALICE, "github", "a2"), None)
    await store.insert_grant(make_grant(3, BOB, "github", "b1"), None)
    await store.insert_grant(make_grant(4, ENG, "github", "e1"), None)
    await store.insert_grant(make_grant(5, ALICE, "slack", "a3"), None)
    found = await store.find_grants([ALICE.key], "github")
    assert [g.account_identifier for g in found] == ["a1", "a2"]
    found = await store.find_grants([ALICE.key, ENG.key], "github", account_identifier="e1")
    assert [g.grant_id for g in found] == ["g000004"]
    assert await store.find_grants([], "github") == []


async def test_store_list_grants_keyset_pages(store: Store) -> None:
    """list_grants pages by (created_at, grant_id) without gaps or repeats."""
    for n in range(25):
        await store.insert_grant(make_grant(n, ALICE if n % 2 else BOB), None)
    seen: list[str] = []
    after = None
    while True:
        page = await store.list_grants([ALICE.key], limit=5, after=after)
        if not page:
            break
        seen.extend(g.grant_id for g in page)
        after = (page[-1].created_at, page[-1].grant_id)
    assert seen == [f"g{n:06d}" for n in range(25) if n % 2]


async def test_store_swap_credential_compare_and_swap(store: Store) -> None:
    """A credential write succeeds only against the version it read."""
    grant = make_grant(1)
    await store.insert_grant(grant, cred(grant.grant_id))
    assert await store.swap_credential(cred(grant.grant_id, 2, b"new"), expected_version=1)
    assert not await store.swap_credential(cred(grant.grant_id, 3, b"stale"), expected_version=1)
    record = await store.get_credential(grant.grant_id)
    assert record is not None and (record.version, record.blob) == (2, b"new")


async def test_store_revoke_deletes_credential(store: Store) -> None:
    """Revoking deletes the credential, marks the grant, and happens once."""
    grant = make_grant(1)
    await store.insert_grant(grant, cred(grant.grant_id))
    assert await store.revoke_grant(grant.grant_id, T0)
    assert await store.get_credential(grant.grant_id) is None
    stored = await store.get_grant(grant.grant_id)
    assert stored is not None and stored.status is GrantStatus.REVOKED
    assert not await store.revoke_grant(grant.grant_id, T0)


async def test_store_refresh_lease_excludes_others_until_expiry(store: Store) -> None:
    """A live lease blocks other holders; an expired one can be taken over."""
    assert await store.acquire_refresh_lease("g1", "w1", 30)
    assert not await store.acquire_refresh_lease("g1", "w2", 30)
    await store.release_refresh_lease("g1", "w2")  # not the holder: no effect
    assert not await store.acquire_refresh_lease("g1", "w2", 30)
    await store.release_refresh_lease("g1", "w1")
    assert await store.acquire_refresh_lease("g1", "w2", -1)  # already expired
    assert await store.acquire_refresh_lease("g1", "w3", 30)


def make_session(n: int, expires_in: float = 600) -> SessionRecord:
    now = datetime.now(UTC)
    session = ConnectSession(
        session_id=f"s{n}", owner=ALICE, allowed_providers=("github",), created_at=now,
        expires_at=now + timedelta(seconds=expires_in),
    )
    return SessionRecord(session=session, token_hash=f"tok{n}")


async def test_store_session_state_claimed_once(store: Store) -> None:
    """An OAuth state can be claimed exactly once, and only while the session is live."""
    await store.insert_session(make_session(1))
    assert await store.begin_authorization("s1", provider_id="github", state_hash="st1",
                                           verifier_blob=b"v", key_id="kek_a")
    now = datetime.now(UTC)
    claimed = await store.claim_state("st1", now)
    assert claimed is not None and claimed.session.session_id == "s1"
    assert claimed.provider_id == "github" and claimed.verifier_blob == b"v"
    assert await store.claim_state("st1", now) is None
    assert await store.claim_state("unknown", now) is None


async def test_store_session_expired_state_not_claimable(store: Store) -> None:
    """An expired session's state cannot be claimed."""
    await store.insert_session(make_session(2, expires_in=1))
    assert await store.begin_authorization("s2", provider_id="github", state_hash="st2",
                                           verifier_blob=b"v", key_id="kek_a")
    assert await store.claim_state("st2", datetime.now(UTC) + timedelta(seconds=5)) is None


async def test_store_session_claimed_once_without_oauth_state(store: Store) -> None:
    """A one-step session (a pasted key) is claimed once, while live; then its OAuth state
    can no longer be claimed either."""
    now = datetime.now(UTC)
    await store.insert_session(make_session(3))
    assert await store.begin_authorization("s3", provider_id="github", state_hash="st3",
                                           verifier_blob=b"v", key_id="kek_a")
    assert await store.claim_session("s3", provider_id="openai", now=now)
    assert not await store.claim_session("s3", provider_id="openai", now=now)
    assert await store.claim_state("st3", now) is None
    record = await store.get_session("s3")
    assert record is not None and record.provider_id == "openai"
    await store.insert_session(make_session(4, expires_in=1))
    assert not await store.claim_session("s4", provider_id="openai",
                                         now=now + timedelta(seconds=5))
    assert not await store.claim_session("nope", provider_id="openai", now=now)


async def test_store_session_finish_records_outcome(store: Store) -> None:
    """Finishing a session records its status and grants."""
    await store.insert_session(make_session(3))
    await store.finish_session("s3", ConnectSessionStatus.COMPLETED, grant_ids=["g1"])
    record = await store.get_session("s3")
    assert record is not None
    assert record.session.status is ConnectSessionStatus.COMPLETED
    assert record.session.grant_ids == ("g1",)
    assert (await store.get_session_by_token("tok3")) == record


async def test_store_audit_chain_appends_and_filters(store: Store) -> None:
    """Appended audit events chain by hash and can be filtered."""
    log = AuditLog(store)
    for n in range(5):
        await log.record(AuditEntry(f"a{n}", Outcome.ALLOWED if n % 2 else Outcome.DENIED,
                                    grant_id=f"g{n % 2}"))
    events = await store.list_audit(AuditFilter())
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert verify_chain(events, prev_hash="", expected_seq=1).ok
    denied = await store.list_audit(AuditFilter(outcome="denied"))
    assert [e.action for e in denied] == ["a0", "a2", "a4"]
    assert [e.seq for e in await store.list_audit(AuditFilter(grant_id="g1"))] == [2, 4]


async def test_store_mutation_and_audit_fail_together(store: Store) -> None:
    """When the audit sealer fails, the mutation in the same transaction is rolled back."""
    grant = make_grant(1)

    def broken(seq: int, prev: str) -> object:
        raise RuntimeError("audit down")

    with pytest.raises(RuntimeError):
        await store.insert_grant(grant, cred(grant.grant_id), audit=broken)  # type: ignore[arg-type]
    assert await store.get_grant(grant.grant_id) is None
    assert await store.get_credential(grant.grant_id) is None


async def test_store_secret_and_api_key_round_trip(store: Store) -> None:
    """Managed secrets and API keys are stored and read back; keys revoke once."""
    secret = ManagedSecret(secret_id="sec1", provider_id="openai", label="prod",
                           field_names=("api_key",), created_at=T0)
    await store.insert_secret(secret, b"blob", "kek_a")
    assert await store.get_secret("sec1") == (secret, b"blob")
    assert await store.get_secret_blob("sec1") == b"blob"
    assert await store.get_secret_blob("nope") is None
    assert await store.list_secrets() == [secret]
    key = ApiKeyRecord(key_id="k1", name="ci", prefix="amk_abc", key_hash="h1", created_at=T0)
    await store.insert_api_key(key)
    assert await store.get_api_key_by_hash("h1") == key
    assert await store.revoke_api_key("k1", T0)
    assert not await store.revoke_api_key("k1", T0)


async def test_store_secret_grant_inserted_together_or_not_at_all(store: Store) -> None:
    """A managed secret and its grant commit with their audit events, or none of them does."""
    secret = ManagedSecret(secret_id="sec9", provider_id="openai", label="pasted",
                           field_names=("api_key",), created_at=T0)
    grant = Grant(grant_id="g-sec9", kind=GrantKind.MANAGED_SECRET, provider_id="openai",
                  owner=ALICE, account_identifier="pasted", label="pasted",
                  secret_id="sec9", created_at=T0, updated_at=T0)
    log = AuditLog(store)
    await store.insert_secret_grant(secret, b"sblob", "kek_a", grant, audit=[
        log.sealer(entry("secret.create")), log.sealer(entry("secret.grant"))])
    assert await store.get_secret("sec9") == (secret, b"sblob")
    assert await store.get_grant("g-sec9") == grant
    events = await store.list_audit(AuditFilter())
    assert [e.action for e in events] == ["secret.create", "secret.grant"]

    def broken(seq: int, prev: str) -> object:
        raise RuntimeError("audit down")

    other = secret.model_copy(update={"secret_id": "sec10"})
    with pytest.raises(RuntimeError):
        await store.insert_secret_grant(
            other, b"x", "kek_a", grant.model_copy(update={"grant_id": "g-sec10",
                                                           "secret_id": "sec10"}),
            audit=[broken])  # type: ignore[list-item]
    assert await store.get_secret("sec10") is None and await store.get_grant("g-sec10") is None


async def test_store_blobs_not_under_and_replace(store: Store) -> None:
    """Rotation finds blobs under old keys and swaps them only if unchanged."""
    grant = make_grant(1, SystemPrincipal())
    await store.insert_grant(grant, cred(grant.grant_id, key_id="kek_old", blob=b"old"))
    secret = ManagedSecret(secret_id="sec1", provider_id="openai", label="prod",
                           field_names=("api_key",), created_at=T0)
    await store.insert_secret(secret, b"sblob", "kek_new")
    refs = await store.blobs_not_under("kek_new", limit=10)
    assert [(r.location, r.record_id) for r in refs] == [(EncryptedField.CREDENTIAL, "g000001")]
    assert await store.replace_blob(refs[0], b"rewrapped", "kek_new")
    assert not await store.replace_blob(refs[0], b"again", "kek_new")
    assert await store.blobs_not_under("kek_new", limit=10) == []


async def test_store_sealed_key_ids_names_every_wrapping_key(store: Store) -> None:
    """Every key id that wraps a stored blob, in any sealed column, is reported once."""
    assert await store.sealed_key_ids() == set()
    grant = make_grant(1, SystemPrincipal())
    await store.insert_grant(grant, cred(grant.grant_id, key_id="kek_old"))
    await store.insert_grant(make_grant(2, SystemPrincipal()),
                             cred("g000002", key_id="kek_old"))
    secret = ManagedSecret(secret_id="sec1", provider_id="openai", label="prod",
                           field_names=("api_key",), created_at=T0)
    await store.insert_secret(secret, b"sblob", "kek_new")
    assert await store.sealed_key_ids() == {"kek_old", "kek_new"}


async def test_store_key_checks_are_recorded_once_and_never_replaced(store: Store) -> None:
    """A key id's first check value stays; later ones for the same id are ignored."""
    assert await store.key_checks() == {}
    await store.add_key_checks({"kek_a": "c" * 32, "kek_b": "d" * 32})
    await store.add_key_checks({"kek_a": "e" * 32, "kek_c": "f" * 32})
    await store.add_key_checks({})
    assert await store.key_checks() == {"kek_a": "c" * 32, "kek_b": "d" * 32,
                                        "kek_c": "f" * 32}


async def test_store_constraint_violation_is_typed(store: Store) -> None:
    """A duplicate id raises StoreError, not a backend exception."""
    await store.insert_grant(make_grant(1), None)
    with pytest.raises(StoreError):
        await store.insert_grant(make_grant(1), None)


async def test_store_audit_filters_by_action_and_caller(store: Store) -> None:
    """Audit events can be selected by action and by caller name."""
    from alter_mcp.models import CallerType, Identity

    log = AuditLog(store)
    bot = Identity(principal=SystemPrincipal(), caller="bot", caller_type=CallerType.AGENT)
    await log.record(AuditEntry("request", Outcome.ALLOWED, identity=bot))
    await log.record(AuditEntry("grant.list", Outcome.ALLOWED, identity=bot))
    await log.record(AuditEntry("request", Outcome.ALLOWED))
    assert [e.seq for e in await store.list_audit(AuditFilter(action="request"))] == [1, 3]
    assert [e.seq for e in await store.list_audit(AuditFilter(caller="bot"))] == [1, 2]
    assert [e.seq for e in await store.list_audit(AuditFilter(action="request",
                                                              caller="bot"))] == [1]


# -- audit retention ---------------------------------------------------------------------------
def _checkpoint(seq: int, digest: str) -> Checkpoint:
    return Checkpoint(seq=seq, hash=digest, created_at=T0 + timedelta(days=30),
                      signature=f"sig{seq}")


async def _events_on_days(store: Store, *days: int) -> AuditLog:
    """Append one event per entry of ``days``, timed that many days after T0."""
    moments = [T0 + timedelta(days=d) for d in days]
    log = AuditLog(store, clock=lambda: moments.pop(0) if moments else T0 + timedelta(days=99))
    for n in range(len(days)):
        await log.record(entry(f"e{n + 1}"))
    return log


async def test_store_prune_audit_deletes_prefix_behind_checkpoint(store: Store) -> None:
    """Events before the cutoff go, and the last one's seq and hash become the checkpoint."""
    await _events_on_days(store, 0, 1, 2, 3, 4)
    events = await store.list_audit(AuditFilter())
    result = await store.prune_audit(T0 + timedelta(days=2), _checkpoint)
    assert result.deleted == 2
    assert result.checkpoint == _checkpoint(2, events[1].hash)
    assert [e.seq for e in await store.list_audit(AuditFilter())] == [3, 4, 5]
    assert await store.latest_checkpoint() == result.checkpoint
    assert await store.list_checkpoints() == [result.checkpoint]


async def test_store_prune_audit_stops_at_first_recent_event(store: Store) -> None:
    """An old event after a recent one (clock skew) stays, so the chain keeps no hole."""
    await _events_on_days(store, 0, 5, 1, 6)
    result = await store.prune_audit(T0 + timedelta(days=3), _checkpoint)
    assert result.deleted == 1 and result.checkpoint is not None and result.checkpoint.seq == 1
    assert [e.seq for e in await store.list_audit(AuditFilter())] == [2, 3, 4]


async def test_store_prune_audit_keeps_newest_event(store: Store) -> None:
    """Even when every event is old enough, the newest one stays as the chain's head."""
    await _events_on_days(store, 0, 1, 2)
    result = await store.prune_audit(T0 + timedelta(days=50), _checkpoint)
    assert result.deleted == 2
    assert [e.seq for e in await store.list_audit(AuditFilter())] == [3]
    again = await store.prune_audit(T0 + timedelta(days=50), _checkpoint)
    assert again.deleted == 0 and again.checkpoint is None
    assert len(await store.list_checkpoints()) == 1


async def test_store_prune_audit_appends_its_event_in_same_transaction(store: Store) -> None:
    """The prune's own event follows the kept events and is told what was pruned."""
    log = await _events_on_days(store, 0, 1, 2)
    told: list[tuple[int, int | None]] = []

    def audit(deleted: int, checkpoint: Checkpoint | None) -> object:
        told.append((deleted, checkpoint and checkpoint.seq))
        return log.sealer(entry("audit.prune"))

    await store.prune_audit(T0 + timedelta(days=2), _checkpoint, audit=audit)  # type: ignore[arg-type]
    assert told == [(2, 2)]
    events = await store.list_audit(AuditFilter())
    assert [(e.seq, e.action) for e in events] == [(3, "e3"), (4, "audit.prune")]
    assert verify_chain(events, prev_hash=events[0].prev_hash, expected_seq=3).ok


async def test_store_prune_audit_rolls_back_when_its_event_fails(store: Store) -> None:
    """If the prune's audit event cannot be built, nothing is deleted and no checkpoint stays."""
    await _events_on_days(store, 0, 1, 2)

    def broken(deleted: int, checkpoint: Checkpoint | None) -> object:
        raise RuntimeError("audit down")

    with pytest.raises(RuntimeError):
        await store.prune_audit(T0 + timedelta(days=9), _checkpoint, audit=broken)  # type: ignore[arg-type]
    assert [e.seq for e in await store.list_audit(AuditFilter())] == [1, 2, 3]
    assert await store.latest_checkpoint() is None


async def test_store_prune_audit_empty_log_is_noop(store: Store) -> None:
    """Pruning an empty log deletes nothing and writes no checkpoint."""
    result = await store.prune_audit(T0, _checkpoint)
    assert (result.deleted, result.checkpoint) == (0, None)
    assert await store.latest_checkpoint() is None and await store.list_checkpoints() == []


async def test_store_audit_append_continues_from_head_when_events_deleted(
    store: Store, raw_sql: RawSQL
) -> None:
    """With every event deleted behind the store's back, the next one follows the head anchor."""
    log = await _events_on_days(store, 0, 1, 2)
    newest = (await store.list_audit(AuditFilter()))[-1]
    result = await store.prune_audit(T0 + timedelta(days=9), _checkpoint)
    assert result.checkpoint is not None and result.checkpoint.seq == newest.seq - 1
    await raw_sql("DELETE FROM audit_events")
    event = await log.record(entry("after"))
    # Not from the checkpoint: the deleted newest event stays a visible gap.
    assert (event.seq, event.prev_hash) == (newest.seq + 1, newest.hash)


async def test_store_prune_audit_during_appends_keeps_one_chain(store: Store) -> None:
    """Prunes racing with forty appends leave a gapless chain that links to its checkpoint."""
    log = await _events_on_days(store, *range(10))
    prunes = [store.prune_audit(T0 + timedelta(days=d), _checkpoint) for d in (3, 6, 9)]
    appends = [log.record(entry(f"late{n}")) for n in range(40)]
    await asyncio.gather(*appends[:20], *prunes, *appends[20:])
    checkpoint = await store.latest_checkpoint()
    assert checkpoint is not None and checkpoint.seq == 9
    events = await store.list_audit(AuditFilter(limit=100))
    assert [e.seq for e in events] == list(range(10, 51))
    assert verify_chain(events, prev_hash=checkpoint.hash, expected_seq=10).ok


async def test_store_append_within_takes_each_slot_once(store: Store) -> None:
    """Concurrent conditional appends under a limit of 3 append exactly 3 events."""
    import asyncio

    log = AuditLog(store, keyring=RING)
    flt = AuditFilter(action="request.reserve", grant_id="g1")

    async def reserve() -> bool:
        entry = AuditEntry("request.reserve", Outcome.ALLOWED, grant_id="g1")
        taken = await store.append_audit_within(log.sealer(entry), [(flt, 3)])
        return taken.event is not None

    outcomes = await asyncio.gather(*(reserve() for _ in range(12)))
    assert outcomes.count(True) == 3
    assert len(await store.list_audit(flt)) == 3
    other = AuditFilter(action="request.reserve", grant_id="g2")
    taken = await store.append_audit_within(
        log.sealer(AuditEntry("request.reserve", Outcome.ALLOWED, grant_id="g2")),
        [(other, 5), (flt, 3)])
    assert taken.event is None and taken.exceeded == 1
    assert (await log.verify()).ok


async def test_store_pages_of_many_owners_merge_in_order(store: Store) -> None:
    """Keyset pages over several owners (a member's groups) equal the sorted whole, filters too."""
    owners = [ALICE, ENG, GroupPrincipal(issuer="https://idp.test", group="ops"), BOB]
    grants = [make_grant(n, owners[n % 4], provider="slack" if n % 3 == 0 else "github")
              for n in range(60)]
    for grant in grants:
        await store.insert_grant(grant, None)
    keys = [o.key for o in owners[:3]]
    mine = sorted((g for g in grants if g.owner.key in keys),
                  key=lambda g: (g.created_at, g.grant_id))
    for provider in (None, "slack"):
        expected = [g.grant_id for g in mine if provider is None or g.provider_id == provider]
        seen: list[str] = []
        after = None
        while page := await store.list_grants(keys, provider_id=provider, limit=7, after=after):
            seen.extend(g.grant_id for g in page)
            after = (page[-1].created_at, page[-1].grant_id)
        assert seen == expected and len(seen) > 7
    assert await store.list_grants(keys, status=GrantStatus.REVOKED) == []


async def test_store_count_audit_counts_by_column_up_to_its_limit(store: Store) -> None:
    """Audit counts select by action, grant, caller and time in SQL, and stop at the limit."""
    log = AuditLog(store)
    from alter_mcp.models import CallerType, Identity

    bot = Identity(principal=SystemPrincipal(), caller="bot", caller_type=CallerType.AGENT)
    for n in range(7):
        await log.record(AuditEntry("request.reserve", Outcome.ALLOWED, identity=bot,
                                    grant_id="g1" if n < 5 else "g2"))
    await log.record(AuditEntry("request", Outcome.ALLOWED, identity=bot, grant_id="g1"))
    assert await store.count_audit(AuditFilter(action="request.reserve", grant_id="g1")) == 5
    assert await store.count_audit(AuditFilter(action="request.reserve", caller="bot")) == 7
    assert await store.count_audit(AuditFilter(action="request.reserve", caller="bot",
                                               limit=3)) == 3
    assert await store.count_audit(AuditFilter(action="request.reserve", caller="nobody")) == 0
    later = datetime.now(UTC) + timedelta(hours=1)
    assert await store.count_audit(AuditFilter(action="request.reserve", since=later)) == 0


async def test_store_bridge_state_round_trips_and_expired_rows_are_swept(store: Store) -> None:
    """A bridge record reads back until it expires; an expired one is gone after any write."""
    now = datetime.now(UTC)
    await store.put_bridge_state("c:live", b"live-blob", "k1", now + timedelta(minutes=5))
    await store.put_bridge_state("c:forever", b"forever-blob", "k1", None)
    await store.put_bridge_state("c:old", b"old-blob", "k1", now - timedelta(seconds=1))
    assert await store.get_bridge_state("c:live", now) == b"live-blob"
    assert await store.get_bridge_state("c:forever", now) == b"forever-blob"
    assert await store.get_bridge_state("c:live", now + timedelta(minutes=6)) is None
    await store.put_bridge_state("c:live", b"replaced", "k2", None)
    assert await store.get_bridge_state("c:live", now) == b"replaced"
    assert "c:old" not in {ref.record_id for ref in await store.blobs_not_under("kx", limit=10)}
    assert await store.sealed_key_ids() == {"k1", "k2"}
    assert await store.delete_bridge_state("c:live") is True
    assert await store.delete_bridge_state("c:live") is False
