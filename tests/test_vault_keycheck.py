"""``AlterVault.open``: no start without the keys that sealed the database, and no silent key."""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest

from alter_mcp.config import Settings, load_settings
from alter_mcp.crypto import key_check_value, parse_key
from alter_mcp.errors import ConfigurationError, KeyMismatchError
from alter_mcp.vault import AlterVault
from tests.cli.conftest import arun

SECRET = "sk-keycheck-0123456789abcdef"


def new_key() -> str:
    """Return a fresh base64 master key."""
    return base64.b64encode(os.urandom(32)).decode()


def key_id(encoded: str) -> str:
    """Return the id of a base64 master key."""
    return parse_key(encoded).id


def snapshot(data: Path) -> tuple[list[str], dict[str, int]]:
    """Return the data directory's file names and the row count of every table."""
    with closing(sqlite3.connect(data / "vault.db")) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}
    names = sorted(p.name for p in data.iterdir() if not p.name.endswith(("-wal", "-shm")))
    return names, counts


async def seed(settings: Settings) -> str:
    """Store one managed secret with these settings; return its id."""
    async with AlterVault(settings, caller="tests") as vault:
        made = await vault.create_managed_secret("openai", {"api_key": SECRET}, label="k")
    return made.secret_id


async def refused(settings: Settings) -> KeyMismatchError:
    """Open a vault that must be refused, and return the error."""
    vault = AlterVault(settings, caller="tests")
    with pytest.raises(KeyMismatchError) as caught:
        await vault.open()
    return caught.value


def env_settings(data: Path, **env: str) -> Settings:
    """Return settings for ``data`` with these extra ALTER_MCP_* values."""
    return load_settings({"ALTER_MCP_DATA_DIR": str(data), **env})


async def test_keycheck_deleted_key_file_is_refused_and_no_key_is_made(tmp_path: Path) -> None:
    """With its key file gone a vault with records refuses, naming the key, making no new one."""
    data = tmp_path / "data"
    settings = env_settings(data)
    await seed(settings)
    key_file = settings.resolved_key_file
    needed = key_file.read_text().split('"active": "')[1].split('"')[0]
    key_file.unlink()
    before = snapshot(data)
    error = await refused(settings)
    assert error.key_ids == (needed,) and needed in error.message
    assert str(key_file) in error.message and "ALTER_MCP_MASTER_KEY" in error.message
    assert "ALTER_MCP_PREVIOUS_KEYS" in error.message and error.hint
    assert str(key_file) in error.hint
    assert not key_file.exists() and snapshot(data) == before


async def test_keycheck_wrong_master_key_is_refused(tmp_path: Path) -> None:
    """A different ALTER_MCP_MASTER_KEY on a vault with records is refused, naming the right id."""
    right, wrong = new_key(), new_key()
    data = tmp_path / "data"
    await seed(env_settings(data, ALTER_MCP_MASTER_KEY=right))
    before = snapshot(data)
    error = await refused(env_settings(data, ALTER_MCP_MASTER_KEY=wrong))
    assert error.key_ids == (key_id(right),) and key_id(right) in error.message
    assert "ALTER_MCP_MASTER_KEY (set)" in error.message
    assert wrong not in str(error) and right not in str(error)
    assert snapshot(data) == before and not (data / "master.key").exists()


async def test_keycheck_truncated_master_key_is_refused_before_anything(tmp_path: Path) -> None:
    """A truncated ALTER_MCP_MASTER_KEY is refused at construction; nothing is created."""
    right = new_key()
    data = tmp_path / "data"
    await seed(env_settings(data, ALTER_MCP_MASTER_KEY=right))
    before = snapshot(data)
    with pytest.raises(ConfigurationError) as caught:
        AlterVault(env_settings(data, ALTER_MCP_MASTER_KEY=right[:30]))
    assert caught.value.setting == "ALTER_MCP_MASTER_KEY" and right[:30] not in str(caught.value)
    assert snapshot(data) == before


async def test_keycheck_wrong_previous_keys_are_refused(tmp_path: Path) -> None:
    """After a rollout, records still under the old key need it in ALTER_MCP_PREVIOUS_KEYS."""
    old, new, wrong = new_key(), new_key(), new_key()
    data = tmp_path / "data"
    await seed(env_settings(data, ALTER_MCP_MASTER_KEY=old))
    rolled = env_settings(data, ALTER_MCP_MASTER_KEY=new, ALTER_MCP_PREVIOUS_KEYS=old)
    await seed(rolled)
    before = snapshot(data)
    error = await refused(env_settings(data, ALTER_MCP_MASTER_KEY=new,
                                       ALTER_MCP_PREVIOUS_KEYS=wrong))
    assert error.key_ids == (key_id(old),) and "ALTER_MCP_PREVIOUS_KEYS (set)" in error.message
    assert snapshot(data) == before
    async with AlterVault(rolled) as vault:  # the right keys still open it
        assert len(await vault.store.list_secrets()) == 2


async def test_keycheck_differing_check_value_is_refused(tmp_path: Path) -> None:
    """A key whose id matches but whose check value differs is refused as the wrong key."""
    right = new_key()
    data = tmp_path / "data"
    settings = env_settings(data, ALTER_MCP_MASTER_KEY=right)
    await seed(settings)
    await seed(settings)  # the second open records the check value of the key in use
    with closing(sqlite3.connect(data / "vault.db")) as db, db:
        [(stored,)] = db.execute("SELECT check_value FROM key_checks").fetchall()
        assert stored == key_check_value(parse_key(right))
        db.execute("UPDATE key_checks SET check_value = ?", ("0" * 32,))
    error = await refused(settings)
    assert error.key_ids == (key_id(right),) and "check value differs" in error.message


async def test_keycheck_key_checks_alone_refuse_an_unrelated_key(tmp_path: Path) -> None:
    """A vault whose records are gone but whose key checks remain refuses a key none match."""
    right = new_key()
    data = tmp_path / "data"
    settings = env_settings(data, ALTER_MCP_MASTER_KEY=right)
    await seed(settings)
    await seed(settings)
    with closing(sqlite3.connect(data / "vault.db")) as db, db:
        db.execute("DELETE FROM managed_secrets")
    error = await refused(env_settings(data, ALTER_MCP_MASTER_KEY=new_key()))
    assert error.key_ids == (key_id(right),) and "none of the keys" in error.message


async def test_keycheck_new_empty_vault_gets_a_private_key_and_database(tmp_path: Path) -> None:
    """A new data directory gets a 0600 key file and 0600 database files, even with umask 0."""
    data = tmp_path / "data"
    settings = env_settings(data)
    previous = os.umask(0)  # the files' own modes must not depend on a careful umask
    try:
        secret_id = await seed(settings)
        for name in ("master.key", "vault.db"):
            assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
        async with AlterVault(settings) as vault:
            wal = [p for p in data.iterdir() if p.name.endswith(("-wal", "-shm"))]
            assert {p.name for p in wal} == {"vault.db-wal", "vault.db-shm"}
            assert {stat.S_IMODE(p.stat().st_mode) for p in wal} == {0o600}
            assert (await vault._secret_values(secret_id))["api_key"].reveal() == SECRET
    finally:
        os.umask(previous)


async def test_keycheck_existing_database_files_are_made_private(tmp_path: Path) -> None:
    """A database file others could read is tightened to 0600 when the vault opens it."""
    data = tmp_path / "data"
    settings = env_settings(data)
    await seed(settings)
    os.chmod(data / "vault.db", 0o644)
    async with AlterVault(settings):
        assert stat.S_IMODE((data / "vault.db").stat().st_mode) == 0o600


async def test_keycheck_empty_vault_accepts_a_new_key(tmp_path: Path) -> None:
    """A vault that holds nothing yet may start with another key (nothing could be lost)."""
    data = tmp_path / "data"
    async with AlterVault(env_settings(data)):
        pass
    (data / "master.key").unlink()
    async with AlterVault(env_settings(data, ALTER_MCP_MASTER_KEY=new_key())) as vault:
        assert await vault.store.key_checks() == {}
    assert not (data / "master.key").exists()


async def test_keycheck_running_vault_reads_records_sealed_after_a_rotation(
        tmp_path: Path) -> None:
    """A vault left open while `keys rotate` runs in another process reads the rotated records."""
    data = tmp_path / "data"
    settings = env_settings(data)
    first = await seed(settings)
    async with AlterVault(settings, caller="tests") as running:
        old = running.envelope.keyring.active.id
        assert (await running._secret_values(first))["api_key"].reveal() == SECRET
        rotate = await arun(["keys", "rotate", "--json"], {"ALTER_MCP_DATA_DIR": str(data)})
        assert rotate.returncode == 0, rotate.stderr
        later = await seed(settings)  # sealed by another vault under the new key
        for secret_id in (first, later):
            assert (await running._secret_values(secret_id))["api_key"].reveal() == SECRET
        assert running.envelope.keyring.active.id != old
        made = await running.create_managed_secret("openai", {"api_key": SECRET}, label="n")
        found = await running.store.get_secret(made.secret_id)
        assert found is not None
    async with AlterVault(settings) as vault:
        assert await vault.pending_rewrap() == 0
        assert set(await vault.store.key_checks()) == {old, vault.envelope.keyring.active.id}


@pytest.mark.peers
async def test_keycheck_postgres_refuses_a_wrong_or_missing_key(tmp_path: Path,
                                                               postgres_url: str) -> None:
    """With a PostgreSQL store a wrong key or a missing key file is refused, nothing written."""
    import asyncpg

    right = new_key()
    base = {"ALTER_MCP_DATABASE_URL": postgres_url}
    await seed(env_settings(tmp_path / "a", ALTER_MCP_MASTER_KEY=right, **base))

    async def counts() -> tuple[int, int, int]:
        conn = await asyncpg.connect(postgres_url)
        try:
            return (await conn.fetchval("SELECT COUNT(*) FROM managed_secrets"),
                    await conn.fetchval("SELECT COUNT(*) FROM key_checks"),
                    await conn.fetchval("SELECT COUNT(*) FROM audit_events"))
        finally:
            await conn.close()

    before = await counts()
    wrong = await refused(env_settings(tmp_path / "b", ALTER_MCP_MASTER_KEY=new_key(), **base))
    assert wrong.key_ids == (key_id(right),)
    missing = await refused(env_settings(tmp_path / "c", **base))
    assert missing.key_ids == (key_id(right),) and "no key is configured" in missing.message
    assert not (tmp_path / "c" / "master.key").exists()
    assert await counts() == before
