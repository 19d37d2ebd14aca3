"""``alter-mcp keys``: agent API keys, and key rotation over every record (10,000 of them)."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from alter_mcp.crypto import Envelope, Keyring, load_keyring, parse_key
from alter_mcp.models import Grant, GrantKind, ManagedSecret, SystemPrincipal
from alter_mcp.oauth.clients import provider_secret_binding
from alter_mcp.oauth.sessions import new_session, verifier_binding
from alter_mcp.oauth.tokens import TokenSet, open_credential, seal_credential
from alter_mcp.redaction import Secret
from alter_mcp.store import ProviderConfigRecord
from alter_mcp.store.sqlite import SQLiteStore
from alter_mcp.vault import secret_binding
from tests.cli.conftest import EXE, as_json, cli_env, run

RECORDS = 10_000
TABLES = {"credentials": "blob", "managed_secrets": "blob",
          "connect_sessions": "verifier_blob", "provider_configs": "secret_blob"}


async def populate(data: Path, keyring: Keyring, total: int) -> None:
    """Seal ``total`` records across every encrypted column, with values derived from ids."""
    envelope, now = Envelope(keyring), datetime.now(UTC)
    store = SQLiteStore(data / "vault.db")
    await store.open()
    try:
        config = ProviderConfigRecord(
            provider_id="github", client_id="Iv1.x", updated_at=now, scopes=None,
            redirect_uri=None, key_id=keyring.active.id,
            secret_blob=envelope.seal_text("client-secret-github",
                                           aad=provider_secret_binding("github")))
        await store.put_provider_config(config)
        record, _ = new_session(owner=SystemPrincipal(), allowed=["github"], scopes=(),
                                account_hint=None, repair_grant_id=None, return_url=None,
                                now=now, ttl=600)
        sid = record.session.session_id
        await store.insert_session(record)
        await store.begin_authorization(
            sid, provider_id="github", state_hash="s" * 64, key_id=keyring.active.id,
            verifier_blob=envelope.seal_text(f"verifier-{sid}", aad=verifier_binding(sid)))
        for i in range(total - 2):
            rid = str(uuid.UUID(int=i + 1))
            if i % 2:
                blob = envelope.seal_json({"api_key": f"key-{rid}"}, aad=secret_binding(rid))
                await store.insert_secret(ManagedSecret(
                    secret_id=rid, provider_id="openai", label=f"s{i}",
                    field_names=("api_key",), created_at=now), blob, keyring.active.id)
            else:
                grant = Grant(grant_id=rid, kind=GrantKind.OAUTH, provider_id="github",
                              owner=SystemPrincipal(), created_at=now, updated_at=now)
                tokens = TokenSet(access_token=Secret(f"token-{rid}"), obtained_at=now)
                await store.insert_grant(grant, seal_credential(envelope, rid, tokens,
                                                                version=1, now=now))
    finally:
        await store.close()


def key_counts(db: Path) -> dict[str, int]:
    """Return how many sealed blobs each key id wraps (read from another connection)."""
    counts: dict[str, int] = {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        for table, column in TABLES.items():
            rows = conn.execute(f"SELECT key_id, count(*) FROM {table} "
                                f"WHERE {column} IS NOT NULL GROUP BY key_id")
            for kid, n in rows:
                counts[kid] = counts.get(kid, 0) + n
    return counts


async def assert_all_readable(data: Path, keyring: Keyring) -> int:
    """Open every sealed blob with ``keyring`` and check its value; return how many."""
    envelope = Envelope(keyring)
    store = SQLiteStore(data / "vault.db")
    await store.open()
    opened = 0
    try:
        config = await store.get_provider_config("github")
        assert config is not None and config.secret_blob is not None
        assert envelope.open_text(config.secret_blob, aad=provider_secret_binding("github")) \
            == "client-secret-github"
        opened += 1
        with sqlite3.connect(data / "vault.db") as conn:
            sid = conn.execute("SELECT session_id FROM connect_sessions").fetchone()[0]
            ids = [r[0] for r in conn.execute("SELECT grant_id FROM credentials")]
            secret_ids = [r[0] for r in conn.execute("SELECT secret_id FROM managed_secrets")]
        session = await store.get_session(sid)
        assert session is not None and session.verifier_blob is not None
        assert envelope.open_text(session.verifier_blob, aad=verifier_binding(sid)) \
            == f"verifier-{sid}"
        opened += 1
        for rid in ids:
            record = await store.get_credential(rid)
            assert record is not None
            assert open_credential(envelope, record).access_token.reveal() == f"token-{rid}"
            opened += 1
        for rid in secret_ids:
            found = await store.get_secret(rid)
            assert found is not None
            assert envelope.open_json(found[1], aad=secret_binding(rid)) == {
                "api_key": f"key-{rid}"}
            opened += 1
    finally:
        await store.close()
    return opened


def test_keys_rotate_10k_records_killed_and_resumed(env: dict[str, str],
                                                    tmp_path: Path) -> None:
    """A rotation killed mid-run resumes without a new key and leaves 10,000 records readable."""
    data = tmp_path / "data"
    old = load_keyring(master_key=None, key_file=data / "master.key")
    asyncio.run(populate(data, old, RECORDS))
    assert key_counts(data / "vault.db") == {old.active.id: RECORDS}

    started = time.perf_counter()
    proc = subprocess.Popen([str(EXE), "keys", "rotate", "--batch", "100", "--json"],
                            env=cli_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    new_id, moved = None, 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            active = json.loads((data / "master.key").read_text())["active"]
            if active != old.active.id:
                new_id = active
                moved = key_counts(data / "vault.db").get(new_id, 0)
                if moved >= 2000:
                    break
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    killed_after = time.perf_counter() - started
    assert proc.returncode == -signal.SIGKILL, "the rotation finished before it was killed"
    counts = key_counts(data / "vault.db")
    assert new_id is not None and 0 < counts[new_id] < RECORDS
    assert sum(counts.values()) == RECORDS

    resumed = as_json(run(["keys", "rotate", "--json"], env, timeout=120))
    assert resumed["new_key_id"] is None and resumed["key_id"] == new_id
    assert resumed["complete"] and resumed["left"] == 0 and resumed["failures"] == []
    assert resumed["rewrapped"] == RECORDS - counts[new_id]
    assert key_counts(data / "vault.db") == {new_id: RECORDS}
    key_file = json.loads((data / "master.key").read_text())
    assert key_file["active"] == new_id and set(key_file["keys"]) == {old.active.id, new_id}

    # Only the new key: every record opens, so every one was re-wrapped, none lost.
    only_new = Keyring(parse_key(key_file["keys"][new_id]))
    assert asyncio.run(assert_all_readable(data, only_new)) == RECORDS
    again = as_json(run(["keys", "rotate", "--resume", "--json"], env))
    assert again["rewrapped"] == 0 and again["left"] == 0
    print(f"\nrotation of {RECORDS} records: killed after {killed_after:.2f} s "
          f"({counts[new_id]} done), resumed run {resumed['seconds']:.2f} s "
          f"for {resumed['rewrapped']}")


async def test_keys_rotate_max_batches_stops_and_reports_what_is_left(
        env: dict[str, str], tmp_path: Path) -> None:
    """--max-batches stops early with the count left; a second run finishes the same key."""
    data = tmp_path / "data"
    await populate(data, load_keyring(master_key=None, key_file=data / "master.key"), 5)
    first = as_json(run(["keys", "rotate", "--batch", "2", "--max-batches", "1", "--json"],
                        env))
    assert first["new_key_id"] and first["rewrapped"] == 2 and first["left"] == 3
    assert first["complete"] is False
    second = as_json(run(["keys", "rotate", "--json"], env))
    assert second["new_key_id"] is None and second["key_id"] == first["key_id"]
    assert second["rewrapped"] == 3 and second["complete"]
    events = [json.loads(line) for line in run(["audit", "tail", "-n", "50", "--json"],
                                                env).stdout.splitlines()]
    rotations = [e["detail"] for e in events if e["action"] == "key.rotate"]
    assert [r["rewrapped"] for r in rotations] == [2, 3]
    assert [e["detail"]["key_id"] for e in events if e["action"] == "key.add"] == [
        first["key_id"]]


async def test_keys_rotate_with_master_key_prints_rollout_then_rewraps(
        env: dict[str, str], master_key: str, tmp_path: Path) -> None:
    """With ALTER_MCP_MASTER_KEY, rotate prints a new key and the rollout; then re-wraps."""
    data = tmp_path / "data"
    await populate(data, Keyring(parse_key(master_key)), 3)
    old = {**env, "ALTER_MCP_MASTER_KEY": master_key}
    printed = run(["keys", "rotate"], old)
    assert printed.returncode == 0, printed.stderr
    assert "ALTER_MCP_PREVIOUS_KEYS" in printed.stderr and master_key not in printed.stdout
    new_key = printed.stdout.strip()
    assert key_counts(data / "vault.db") == {parse_key(master_key).id: 3}
    rolled = {**env, "ALTER_MCP_MASTER_KEY": new_key, "ALTER_MCP_PREVIOUS_KEYS": master_key}
    report = as_json(run(["keys", "rotate", "--json"], rolled))
    assert report["rewrapped"] == 3 and report["complete"] and report["new_key_id"] is None
    assert key_counts(data / "vault.db") == {parse_key(new_key).id: 3}
    assert not (data / "master.key").exists()


def test_keys_create_list_revoke_round_trip(env: dict[str, str]) -> None:
    """A key is printed once; the list shows only its prefix; revoke marks it revoked."""
    created = as_json(run(["keys", "create", "billing-agent", "--json"], env))
    assert created["key"].startswith(created["prefix"])
    revoked = as_json(run(["keys", "revoke", created["key_id"], "--json"], env))
    assert revoked == {"key_id": created["key_id"], "revoked": True}
    listed = run(["keys", "list", "--json"], env)
    assert created["key"] not in listed.stdout
    [record] = json.loads(listed.stdout)
    assert record["name"] == "billing-agent" and record["revoked_at"] is not None
