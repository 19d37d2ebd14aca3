"""Key-encryption keys (KEKs) and the keyring that holds the active one and its predecessors.

A KEK's id is derived from its material, so the same key has the same id wherever it is
loaded from (environment, key file, another replica). Blobs record the id of the KEK that
wrapped their data key; the keyring finds that KEK again when the blob is opened. A KEK is
never used for anything but wrapping: other purposes get a subkey from :func:`derive_subkey`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "KEY_SIZE",
    "KeyEncryptionKey",
    "Keyring",
    "derive_key_id",
    "derive_subkey",
    "key_check_value",
]

KEY_SIZE = 32
_ID_DOMAIN = b"alter-mcp kek id"
_CHECK_INFO = b"alter-mcp key check v1"


def derive_key_id(material: bytes) -> str:
    """Return the deterministic id of a key-encryption key's material."""
    return "kek_" + hashlib.sha256(_ID_DOMAIN + bytes(material)).hexdigest()[:16]


@dataclass(frozen=True, eq=True, repr=False)
class KeyEncryptionKey:
    """Hold one 32-byte AES-256 key-encryption key; its repr never shows the material."""

    material: bytes = field(compare=True)
    id: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        material = self.material
        if isinstance(material, bytearray | memoryview):
            material = bytes(material)
            object.__setattr__(self, "material", material)
        if not isinstance(material, bytes):
            raise TypeError(
                f"Key material must be bytes, not {type(material).__name__}; "
                "decode base64 keys with alter_mcp.crypto.parse_key first."
            )
        if len(material) != KEY_SIZE:
            raise ValueError(
                f"A key-encryption key must be exactly {KEY_SIZE} bytes, got {len(material)}."
            )
        object.__setattr__(self, "id", derive_key_id(material))

    def __repr__(self) -> str:
        return f"KeyEncryptionKey(id={self.id!r}, material=[secure])"

    __str__ = __repr__

    def __copy__(self) -> KeyEncryptionKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> KeyEncryptionKey:
        return self

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would write raw key material wherever the pickle goes (caches, queues).
        raise TypeError("KeyEncryptionKey cannot be pickled; pass the key id instead.")


def derive_subkey(key: KeyEncryptionKey, info: bytes, *, length: int = KEY_SIZE) -> bytes:
    """Return a key for one purpose, derived from ``key`` by HKDF-SHA256 with ``info``."""
    # A KEK only ever wraps data keys; anything else (e.g. signing audit checkpoints) gets its
    # own key, so a weakness in one use cannot leak into another.
    if not isinstance(key, KeyEncryptionKey):
        raise TypeError(f"key must be a KeyEncryptionKey, not {type(key).__name__}.")
    if not isinstance(info, bytes) or not info:
        raise ValueError("info must be non-empty bytes naming the subkey's purpose.")
    if not 16 <= length <= 64:
        raise ValueError(f"A subkey must be 16 to 64 bytes long, not {length}.")
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(
        key.material
    )


def key_check_value(key: KeyEncryptionKey) -> str:
    """Return the key's check value: proof of which key sealed a database, never the key."""
    # A subkey, not the KEK: the value is stored beside the data, and a KEK only wraps.
    return derive_subkey(key, _CHECK_INFO, length=16).hex()


class Keyring:
    """Hold the active key-encryption key and the previous ones still needed to open old blobs."""

    __slots__ = ("_active", "_keys")

    def __init__(self, active: KeyEncryptionKey, previous: Sequence[KeyEncryptionKey] = ()) -> None:
        if not isinstance(active, KeyEncryptionKey):
            raise TypeError(f"active must be a KeyEncryptionKey, not {type(active).__name__}.")
        if isinstance(previous, KeyEncryptionKey):
            raise TypeError("previous must be a sequence of keys, not a single key.")
        keys: dict[str, KeyEncryptionKey] = {active.id: active}
        for key in previous:
            if not isinstance(key, KeyEncryptionKey):
                raise TypeError(
                    f"previous keys must be KeyEncryptionKey, not {type(key).__name__}."
                )
            # Ids are derived from material, so a repeated id is the same key listed twice.
            keys.setdefault(key.id, key)
        self._active = active
        self._keys = keys

    @property
    def active(self) -> KeyEncryptionKey:
        """Return the key that wraps every newly sealed data key."""
        return self._active

    @property
    def previous(self) -> tuple[KeyEncryptionKey, ...]:
        """Return the keys kept only to open blobs sealed before the last rotation."""
        return tuple(k for kid, k in self._keys.items() if kid != self._active.id)

    @property
    def ids(self) -> tuple[str, ...]:
        """Return every key id in the ring, the active one first."""
        return tuple(self._keys)

    def get(self, key_id: str) -> KeyEncryptionKey | None:
        """Return the key with this id, or None if the ring does not hold it."""
        return self._keys.get(key_id)

    def with_new_active(self, key: KeyEncryptionKey) -> Keyring:
        """Return a new keyring where `key` is active and the old active key is kept as previous."""
        if key.id == self._active.id:
            return self
        others = [k for kid, k in self._keys.items() if kid != key.id]
        return Keyring(key, others)

    def without(self, key_id: str) -> Keyring:
        """Return a new keyring without the previous key `key_id` (retire it after rewrapping)."""
        if key_id == self._active.id:
            raise ValueError(
                f"Key {key_id!r} is the active key; make another key active before removing it."
            )
        if key_id not in self._keys:
            raise KeyError(key_id)
        return Keyring(self._active, [k for kid, k in self._keys.items() if kid != key_id])

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __iter__(self) -> Iterator[KeyEncryptionKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Keyring):
            return NotImplemented
        return self._active.id == other._active.id and set(self._keys) == set(other._keys)

    def __hash__(self) -> int:
        return hash((self._active.id, frozenset(self._keys)))

    def __repr__(self) -> str:
        return f"Keyring(active={self._active.id!r}, previous={list(self.ids[1:])!r})"

    __str__ = __repr__

    def __copy__(self) -> Keyring:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Keyring:
        return self

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Keyring cannot be pickled: it holds key material.")
