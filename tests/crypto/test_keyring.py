"""Key-encryption keys and keyrings: derived ids, validation, masked reprs, rotation helpers."""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
import re

import pytest

from alter_mcp.crypto import (
    KeyEncryptionKey,
    Keyring,
    derive_key_id,
    derive_subkey,
    key_check_value,
)
from tests.crypto.helpers import assert_no_leak


def test_key_id_is_derived_from_material() -> None:
    """The same material always gives the same documented id, different material another."""
    material = os.urandom(32)
    expected = "kek_" + hashlib.sha256(b"alter-mcp kek id" + material).hexdigest()[:16]
    assert KeyEncryptionKey(material).id == expected == derive_key_id(material)
    assert KeyEncryptionKey(bytearray(material)).id == expected  # type: ignore[arg-type]
    assert KeyEncryptionKey(os.urandom(32)).id != expected
    assert re.fullmatch(r"kek_[0-9a-f]{16}", expected)


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_key_rejects_wrong_length_material(length: int) -> None:
    """Material that is not 32 bytes raises ValueError stating the length, not the bytes."""
    material = os.urandom(length)
    with pytest.raises(ValueError, match=f"exactly 32 bytes, got {length}") as caught:
        KeyEncryptionKey(material)
    if length:
        assert_no_leak(str(caught.value), material)


def test_key_rejects_text_material() -> None:
    """A base64 string is not material: the TypeError points at parse_key."""
    with pytest.raises(TypeError, match="parse_key"):
        KeyEncryptionKey("a" * 32)  # type: ignore[arg-type]


def test_key_repr_is_masked(key_a: KeyEncryptionKey) -> None:
    """repr, str and f-strings of a key show its id and [secure], never the material."""
    assert repr(key_a) == f"KeyEncryptionKey(id={key_a.id!r}, material=[secure])"
    assert_no_leak(f"{key_a} {key_a!r} {[key_a]} { ({'k': key_a}) }", key_a.material)


def test_key_refuses_pickling_but_copies_as_itself(key_a: KeyEncryptionKey) -> None:
    """Pickling a key is refused, while copy and deepcopy return the same immutable key."""
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key_a)
    assert copy.copy(key_a) is key_a
    assert copy.deepcopy({"k": key_a})["k"] is key_a


def test_keyring_exposes_active_previous_and_ids(
    key_a: KeyEncryptionKey, key_b: KeyEncryptionKey
) -> None:
    """A keyring lists the active id first and finds every key it holds by id."""
    ring = Keyring(key_b, [key_a])
    assert ring.active is key_b
    assert ring.previous == (key_a,)
    assert ring.ids == (key_b.id, key_a.id)
    assert ring.get(key_a.id) is key_a
    assert ring.get("kek_0000000000000000") is None
    assert key_a.id in ring
    assert len(ring) == 2
    assert list(ring) == [key_b, key_a]


def test_keyring_ignores_repeated_keys(key_a: KeyEncryptionKey, key_b: KeyEncryptionKey) -> None:
    """The same key listed twice, or the active key listed as previous, is held once."""
    ring = Keyring(key_a, [key_a, key_b, KeyEncryptionKey(key_b.material)])
    assert ring.ids == (key_a.id, key_b.id)


def test_keyring_rejects_non_keys(key_a: KeyEncryptionKey) -> None:
    """Raw bytes or a bare key where a sequence is expected raise TypeError."""
    with pytest.raises(TypeError):
        Keyring(os.urandom(32))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Keyring(key_a, [os.urandom(32)])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        Keyring(key_a, key_a)  # type: ignore[arg-type]


def test_keyring_with_new_active_keeps_old_key(
    key_a: KeyEncryptionKey, key_b: KeyEncryptionKey
) -> None:
    """with_new_active returns a new ring keeping the old active key, and leaves the old ring."""
    ring = Keyring(key_a)
    rotated = ring.with_new_active(key_b)
    assert rotated.active is key_b
    assert rotated.previous == (key_a,)
    assert ring.ids == (key_a.id,)
    assert rotated.with_new_active(key_b) is rotated


def test_keyring_with_new_active_promotes_previous_key(
    key_a: KeyEncryptionKey, key_b: KeyEncryptionKey
) -> None:
    """Making a previous key active again swaps the two without duplicating either."""
    back = Keyring(key_b, [key_a]).with_new_active(key_a)
    assert back.ids == (key_a.id, key_b.id)


def test_keyring_without_retires_previous_key_only(
    key_a: KeyEncryptionKey, key_b: KeyEncryptionKey
) -> None:
    """without drops a previous key, refuses the active one and unknown ids."""
    ring = Keyring(key_b, [key_a])
    assert ring.without(key_a.id).ids == (key_b.id,)
    with pytest.raises(ValueError, match="active key"):
        ring.without(key_b.id)
    with pytest.raises(KeyError):
        ring.without("kek_0000000000000000")


def test_keyring_equality_follows_key_ids(key_a: KeyEncryptionKey, key_b: KeyEncryptionKey) -> None:
    """Two rings holding the same keys with the same active key are equal."""
    assert Keyring(key_a, [key_b]) == Keyring(KeyEncryptionKey(key_a.material), [key_b])
    assert Keyring(key_a, [key_b]) != Keyring(key_b, [key_a])
    assert len({Keyring(key_a), Keyring(key_a)}) == 1


def test_keyring_repr_shows_ids_only(key_a: KeyEncryptionKey, key_b: KeyEncryptionKey) -> None:
    """A keyring's repr and str name key ids and never show material."""
    ring = Keyring(key_b, [key_a])
    assert repr(ring) == f"Keyring(active={key_b.id!r}, previous=[{key_a.id!r}])"
    for key in (key_a, key_b):
        assert_no_leak(f"{ring} {ring!r} {ring.previous} {list(ring)}", key.material)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(ring)


def test_subkey_is_hkdf_of_material_bound_to_purpose(key_a: KeyEncryptionKey,
                                                     key_b: KeyEncryptionKey) -> None:
    """A subkey is HKDF-SHA256 of the KEK with the purpose as info: never the KEK itself."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = b"alter-mcp audit checkpoint"
    subkey = derive_subkey(key_a, info)
    reference = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info)
    assert subkey == reference.derive(key_a.material) and len(subkey) == 32
    assert subkey != key_a.material
    assert subkey == derive_subkey(KeyEncryptionKey(key_a.material), info)
    assert subkey != derive_subkey(key_a, b"another purpose")
    assert subkey != derive_subkey(key_b, info)
    assert len(derive_subkey(key_a, info, length=64)) == 64


@pytest.mark.parametrize(("info", "length"), [(b"", 32), ("text", 32), (b"ok", 8), (b"ok", 65)])
def test_subkey_rejects_missing_purpose_or_bad_length(key_a: KeyEncryptionKey, info: object,
                                                      length: int) -> None:
    """An empty or non-bytes purpose, or a length outside 16..64, raises ValueError."""
    with pytest.raises(ValueError, match=r"info|subkey"):
        derive_subkey(key_a, info, length=length)  # type: ignore[arg-type]


def test_subkey_refuses_raw_bytes_as_key() -> None:
    """Only a KeyEncryptionKey can be derived from, so raw material is never passed around."""
    with pytest.raises(TypeError, match="KeyEncryptionKey"):
        derive_subkey(os.urandom(32), b"purpose")  # type: ignore[arg-type]


def test_key_check_value_is_stable_per_key_and_reveals_nothing() -> None:
    """A key's check value is the same every time, differs between keys, and shows no key."""
    material = os.urandom(32)
    key = KeyEncryptionKey(material)
    value = key_check_value(key)
    assert value == key_check_value(KeyEncryptionKey(material))
    assert value != key_check_value(KeyEncryptionKey(os.urandom(32)))
    assert re.fullmatch(r"[0-9a-f]{32}", value)
    assert value not in (derive_subkey(key, b"alter-mcp audit checkpoint")[:16].hex(), key.id)
    assert_no_leak(value, material)
