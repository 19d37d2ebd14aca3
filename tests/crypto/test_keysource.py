"""Key sources: the master key from the environment, and the 0600 key file."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from alter_mcp.crypto import (
    MASTER_KEY_ENV,
    PREVIOUS_KEYS_ENV,
    Envelope,
    KeyEncryptionKey,
    RecordBinding,
    add_key_to_file,
    encode_key,
    generate_key,
    load_keyring,
    load_keyring_from_env,
    parse_key,
)
from alter_mcp.errors import ConfigurationError, KeyUnavailableError
from tests.crypto.helpers import assert_no_leak

MAKE_KEY = 'python -c "import base64,os;print(base64.b64encode(os.urandom(32)).decode())"'


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def zero_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_generate_key_returns_distinct_random_keys() -> None:
    """Each generated key is new."""
    assert generate_key().id != generate_key().id


def test_parse_key_accepts_standard_and_urlsafe_base64(key_a: KeyEncryptionKey) -> None:
    """Standard, urlsafe, unpadded and whitespace-wrapped base64 all give the same key."""
    material = key_a.material
    forms = [
        base64.b64encode(material).decode(),
        base64.urlsafe_b64encode(material).decode(),
        base64.urlsafe_b64encode(material).decode().rstrip("="),
        f"  {base64.b64encode(material).decode()}\n",
        encode_key(key_a),
    ]
    assert {parse_key(form).id for form in forms} == {key_a.id}


@pytest.mark.parametrize(
    "bad",
    [
        "not base64 at all!",
        base64.b64encode(b"k" * 16).decode(),
        base64.b64encode(b"k" * 33).decode(),
        (b"k" * 32).hex(),
        "c2hvcnQ",
    ],
    ids=["garbage", "16-bytes", "33-bytes", "hex", "unpadded-5-bytes"],
)
def test_parse_key_rejects_bad_values_without_echoing_them(bad: str) -> None:
    """A bad master key raises ConfigurationError naming the setting and the fix, not the value."""
    with pytest.raises(ConfigurationError) as caught:
        load_keyring(master_key=bad, key_file=None)
    error = caught.value
    assert error.setting == MASTER_KEY_ENV
    assert MAKE_KEY in str(error)
    shown = f"{error} {error!r} {error.to_dict()}"
    assert bad not in shown


def test_load_keyring_uses_master_key_and_previous_keys(
    tmp_path: Path, key_a: KeyEncryptionKey, key_b: KeyEncryptionKey
) -> None:
    """The master key becomes active, previous keys join the ring, and no key file is created."""
    key_file = tmp_path / "keys.json"
    ring = load_keyring(
        master_key=encode_key(key_b), previous_keys=[encode_key(key_a)], key_file=key_file
    )
    assert ring.ids == (key_b.id, key_a.id)
    assert not key_file.exists()


def test_load_keyring_rejects_bad_previous_key_without_echo(key_a: KeyEncryptionKey) -> None:
    """A bad previous key names ALTER_MCP_PREVIOUS_KEYS and its position, not its value."""
    bad = base64.b64encode(b"p" * 20).decode()
    with pytest.raises(ConfigurationError, match="Entry 2") as caught:
        load_keyring(
            master_key=encode_key(key_a), previous_keys=[encode_key(key_a), bad], key_file=None
        )
    assert caught.value.setting == PREVIOUS_KEYS_ENV
    assert bad not in f"{caught.value} {caught.value!r}"


def test_load_keyring_from_env_splits_previous_keys(
    key_a: KeyEncryptionKey, key_b: KeyEncryptionKey
) -> None:
    """ALTER_MCP_PREVIOUS_KEYS is comma separated, blanks ignored."""
    environ = {
        MASTER_KEY_ENV: encode_key(key_b),
        PREVIOUS_KEYS_ENV: f" {encode_key(key_a)} ,, ",
    }
    assert load_keyring_from_env(environ, key_file=None).ids == (key_b.id, key_a.id)


def test_load_keyring_without_any_source_refuses() -> None:
    """With neither a master key nor a key file the vault refuses to start."""
    with pytest.raises(KeyUnavailableError, match=MASTER_KEY_ENV):
        load_keyring(master_key=None, key_file=None)
    with pytest.raises(KeyUnavailableError):
        load_keyring(master_key="  ", key_file=None)


def test_key_file_is_created_private_and_reused(tmp_path: Path, zero_umask: None) -> None:
    """A new key file is 0600 in a 0700 directory, even with umask 0, and reused next load."""
    key_file = tmp_path / "data" / "alter" / "keys.json"
    first = load_keyring(master_key=None, key_file=key_file)
    assert _mode(key_file) == 0o600
    assert _mode(key_file.parent) == 0o700
    second = load_keyring(master_key=None, key_file=key_file)
    assert second.active.id == first.active.id
    assert second == first
    assert [p.name for p in key_file.parent.iterdir()] == ["keys.json"]


def test_key_file_has_documented_format(tmp_path: Path) -> None:
    """The key file is JSON with a version, the active id and base64 keys by id."""
    key_file = tmp_path / "keys.json"
    ring = load_keyring(master_key=None, key_file=key_file)
    doc = json.loads(key_file.read_text())
    assert doc["version"] == 1
    assert doc["active"] == ring.active.id
    assert list(doc["keys"]) == [ring.active.id]
    assert parse_key(doc["keys"][ring.active.id]) == ring.active


def test_key_file_created_once_under_concurrent_starts(tmp_path: Path) -> None:
    """Processes starting at once all end up with the one key that was written first."""
    key_file = tmp_path / "keys.json"
    ids: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        ids.append(load_keyring(master_key=None, key_file=key_file).active.id)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8
    assert set(ids) == {json.loads(key_file.read_text())["active"]}


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    """A key file with any group or world permission is refused with the chmod fix."""
    key_file = tmp_path / "keys.json"
    ring = load_keyring(master_key=None, key_file=key_file)
    key_file.chmod(mode)
    with pytest.raises(KeyUnavailableError) as caught:
        load_keyring(master_key=None, key_file=key_file)
    assert str(key_file) in str(caught.value)
    assert f"chmod 600 {key_file}" in str(caught.value)
    assert_no_leak(str(caught.value), ring.active.material)


def test_key_file_symlink_is_refused(tmp_path: Path) -> None:
    """A key file that is a symbolic link is not followed."""
    real = tmp_path / "real.json"
    load_keyring(master_key=None, key_file=real)
    link = tmp_path / "keys.json"
    link.symlink_to(real)
    with pytest.raises(KeyUnavailableError, match="cannot be opened"):
        load_keyring(master_key=None, key_file=link)


def test_key_file_in_unwritable_place_is_refused(tmp_path: Path) -> None:
    """When the key file cannot be created the error names the path and both fixes."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    key_file = blocker / "keys.json"
    with pytest.raises(KeyUnavailableError) as caught:
        load_keyring(master_key=None, key_file=key_file)
    message = str(caught.value)
    assert str(key_file) in message
    assert f"Set {MASTER_KEY_ENV} or make {blocker} writable" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_key_file_in_read_only_directory_is_refused(tmp_path: Path) -> None:
    """A read-only directory cannot hold a new key file, and nothing is left behind."""
    directory = tmp_path / "ro"
    directory.mkdir(mode=0o500)
    try:
        with pytest.raises(KeyUnavailableError, match="writable"):
            load_keyring(master_key=None, key_file=directory / "keys.json")
        assert list(directory.iterdir()) == []
    finally:
        directory.chmod(0o700)


def test_missing_key_file_without_create_is_refused(tmp_path: Path) -> None:
    """With create=False a missing key file is an error, not a new key."""
    key_file = tmp_path / "keys.json"
    with pytest.raises(KeyUnavailableError, match="does not exist"):
        load_keyring(master_key=None, key_file=key_file, create=False)
    assert not key_file.exists()


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"version": 2, "active": "x", "keys": {"x": "y"}}',
        '{"version": 1, "active": "kek_0", "keys": {}}',
    ],
    ids=["not-json", "not-object", "version", "no-keys"],
)
def test_corrupt_key_file_is_refused(tmp_path: Path, content: str) -> None:
    """A key file that is not a valid version-1 document is refused, never replaced."""
    key_file = tmp_path / "keys.json"
    key_file.write_text(content)
    key_file.chmod(0o600)
    with pytest.raises(KeyUnavailableError, match="unusable"):
        load_keyring(master_key=None, key_file=key_file)
    assert key_file.read_text() == content


def test_key_file_entry_must_match_its_id(tmp_path: Path, key_a: KeyEncryptionKey) -> None:
    """An entry whose id is not derived from its material is refused without showing it."""
    key_file = tmp_path / "keys.json"
    material = encode_key(key_a)
    doc = {"version": 1, "active": material, "keys": {material: material}}
    key_file.write_text(json.dumps(doc))
    key_file.chmod(0o600)
    with pytest.raises(KeyUnavailableError, match="does not match") as caught:
        load_keyring(master_key=None, key_file=key_file)
    assert_no_leak(f"{caught.value} {caught.value!r} {caught.value.to_dict()}", key_a.material)


def test_add_key_to_file_rotates_and_keeps_old_keys(
    tmp_path: Path, key_b: KeyEncryptionKey
) -> None:
    """Adding a key makes it active, keeps the old one, stays 0600, and old blobs still open."""
    key_file = tmp_path / "keys.json"
    old = load_keyring(master_key=None, key_file=key_file)
    binding = RecordBinding(table="credentials", record_id="g1", field="secret")
    blob = Envelope(old).seal(b"token", aad=binding)
    rotated = add_key_to_file(key_file, key_b)
    assert rotated.ids == (key_b.id, old.active.id)
    assert _mode(key_file) == 0o600
    reloaded = load_keyring(master_key=None, key_file=key_file)
    assert reloaded == rotated
    assert Envelope(reloaded).open(blob, aad=binding) == b"token"
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]


def test_add_key_to_missing_file_is_refused(tmp_path: Path, key_b: KeyEncryptionKey) -> None:
    """Rotation needs an existing key file."""
    with pytest.raises(KeyUnavailableError, match="does not exist"):
        add_key_to_file(tmp_path / "keys.json", key_b)


def test_previous_keys_join_key_file_ring(tmp_path: Path, key_a: KeyEncryptionKey) -> None:
    """Previous keys from the environment also open blobs when the key file is the source."""
    ring = load_keyring(
        master_key=None, previous_keys=[encode_key(key_a)], key_file=tmp_path / "keys.json"
    )
    assert ring.ids[1:] == (key_a.id,)


def test_add_key_to_file_failure_leaves_file_unchanged(
    tmp_path: Path, key_b: KeyEncryptionKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the rewrite fails the old key file stays intact and the error says so."""
    key_file = tmp_path / "keys.json"
    load_keyring(master_key=None, key_file=key_file)
    before = key_file.read_bytes()

    def fail_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail_fsync)
    with pytest.raises(KeyUnavailableError, match="unchanged"):
        add_key_to_file(key_file, key_b)
    assert key_file.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]


def test_keysource_keyring_for_settings_reads_master_and_previous_keys(tmp_path: Path) -> None:
    """The settings' master key is active and each comma-separated previous key is kept."""
    from alter_mcp.config import load_settings
    from alter_mcp.crypto import encode_key, generate_key, load_keyring_for

    active, old1, old2 = generate_key(), generate_key(), generate_key()
    settings = load_settings({
        "ALTER_MCP_DATA_DIR": str(tmp_path),
        "ALTER_MCP_MASTER_KEY": encode_key(active),
        "ALTER_MCP_PREVIOUS_KEYS": f" {encode_key(old1)} ,{encode_key(old2)},",
    })
    ring = load_keyring_for(settings)
    assert ring.active.id == active.id
    assert [k.id for k in ring.previous] == [old1.id, old2.id]
    assert not (tmp_path / "master.key").exists()
