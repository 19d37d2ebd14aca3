"""Envelope encryption: a fresh AES-256-GCM data key per value, wrapped by a keyring KEK.

Blob format, version 1 (all lengths in bytes)::

    "AMV"  version=0x01  kid_len(1)  kid(kid_len, ASCII)      <- header
    wrap_nonce(12)  wrapped_dek(32 + 16 tag)                   <- DEK wrapped by the KEK
    data_nonce(12)  ciphertext(len(plaintext) + 16 tag)        <- the value, under the DEK

Associated data binds every blob to the record field it was sealed for:

* data:  ``b"alter-mcp data\\0" + "AMV" + version + binding``
* wrap:  ``b"alter-mcp dek\\0" + header + binding`` (so also the KEK id and the version)

``binding`` is :meth:`RecordBinding.canonical_bytes`. Rewrapping replaces the header and the
wrapped DEK only; the data nonce and ciphertext are carried over byte for byte.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from alter_mcp.crypto.keyring import KEY_SIZE, KeyEncryptionKey, Keyring
from alter_mcp.errors import AlterError, DecryptionError

__all__ = ["FORMAT_VERSION", "RELOAD_INTERVAL", "Envelope", "RecordBinding", "key_id_of"]

FORMAT_VERSION = 1
_MAGIC = b"AMV"
_NONCE = 12
_TAG = 16
_WRAPPED_DEK = KEY_SIZE + _TAG
_KID_PATTERN = re.compile(rb"[A-Za-z0-9_.\-]{1,64}")
_DATA_DOMAIN = b"alter-mcp data\x00"
_WRAP_DOMAIN = b"alter-mcp dek\x00"
_BINDING_DOMAIN = b"alter-mcp binding v1"
#: Seconds between two reloads of the keyring's source for a key id the ring lacks.
RELOAD_INTERVAL = 5.0


@dataclass(frozen=True)
class RecordBinding:
    """Name the record field a blob belongs to; a blob opens only under the same binding."""

    table: str
    record_id: str
    field: str

    def __post_init__(self) -> None:
        for name in ("table", "record_id", "field"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"RecordBinding.{name} must be a non-empty string.")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"RecordBinding.{name} must be valid Unicode text.") from None

    def canonical_bytes(self) -> bytes:
        """Return the unambiguous byte encoding used as associated data."""
        parts = [_BINDING_DOMAIN]
        for value in (self.table, self.record_id, self.field):
            raw = value.encode("utf-8")
            parts.append(struct.pack(">I", len(raw)) + raw)
        return b"".join(parts)

    def __str__(self) -> str:
        return f"{self.table}/{self.record_id}/{self.field}"


class _Parsed(NamedTuple):
    key_id: str
    header: bytes
    wrap_nonce: bytes
    wrapped_dek: bytes
    data: bytes  # data nonce + ciphertext + tag, never modified by rewrap


def _malformed(aad: RecordBinding | None, why: str) -> DecryptionError:
    where = f" for {aad}" if aad is not None else ""
    return DecryptionError(
        f"The encrypted value{where} is malformed ({why}).",
        hint="The stored blob was truncated or corrupted; restore the record or re-create it.",
    )


def _parse(blob: bytes, aad: RecordBinding | None = None) -> _Parsed:
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise TypeError(f"blob must be bytes, not {type(blob).__name__}.")
    blob = bytes(blob)
    if len(blob) < len(_MAGIC) + 2 or not blob.startswith(_MAGIC):
        raise _malformed(aad, "not an alter-mcp envelope")
    version = blob[len(_MAGIC)]
    if version != FORMAT_VERSION:
        where = f" for {aad}" if aad is not None else ""
        raise DecryptionError(
            f"The encrypted value{where} uses envelope format version {version}, "
            f"which this alter-mcp does not support (it reads version {FORMAT_VERSION}).",
            hint="Upgrade alter-mcp to the version that wrote this data.",
            format_version=version,
        )
    kid_start = len(_MAGIC) + 2
    kid_end = kid_start + blob[len(_MAGIC) + 1]
    raw_kid = blob[kid_start:kid_end]
    if not _KID_PATTERN.fullmatch(raw_kid):
        raise _malformed(aad, "invalid key id field")
    wrap_end = kid_end + _NONCE + _WRAPPED_DEK
    if len(blob) < wrap_end + _NONCE + _TAG:
        raise _malformed(aad, "truncated")
    return _Parsed(
        key_id=raw_kid.decode("ascii"),
        header=blob[:kid_end],
        wrap_nonce=blob[kid_end : kid_end + _NONCE],
        wrapped_dek=blob[kid_end + _NONCE : wrap_end],
        data=blob[wrap_end:],
    )


def key_id_of(blob: bytes) -> str:
    """Return the id of the key-encryption key that wrapped this blob's data key."""
    return _parse(blob).key_id


def _header(key_id: str) -> bytes:
    raw = key_id.encode("ascii")
    return _MAGIC + bytes([FORMAT_VERSION, len(raw)]) + raw


def _data_aad(aad: RecordBinding) -> bytes:
    return _DATA_DOMAIN + _MAGIC + bytes([FORMAT_VERSION]) + aad.canonical_bytes()


def _wrap_aad(header: bytes, aad: RecordBinding) -> bytes:
    return _WRAP_DOMAIN + header + aad.canonical_bytes()


def _auth_failed(aad: RecordBinding, key_id: str) -> DecryptionError:
    return DecryptionError(
        f"The encrypted value for {aad} failed authentication under key {key_id!r}: it was "
        "sealed with a different key, tampered with, or copied from another record.",
        hint="Restore the record from a backup or re-create the credential.",
        key_id=key_id,
        table=aad.table,
        record_id=aad.record_id,
        field=aad.field,
    )


class Envelope:
    """Seal and open values with per-value data keys wrapped by the keyring's KEKs."""

    __slots__ = ("_clock", "_keyring", "_reload", "_reloaded_at")

    def __init__(self, keyring: Keyring, *, reload: Callable[[], Keyring] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Use ``keyring``; ``reload`` re-reads its source when a blob names a key it lacks."""
        if not isinstance(keyring, Keyring):
            raise TypeError(f"keyring must be a Keyring, not {type(keyring).__name__}.")
        self._keyring = keyring
        self._reload = reload
        self._clock = clock
        self._reloaded_at: float | None = None

    @property
    def keyring(self) -> Keyring:
        """Return the keyring whose active key wraps new data keys."""
        return self._keyring

    def seal(self, plaintext: bytes, *, aad: RecordBinding) -> bytes:
        """Encrypt `plaintext` for the record field `aad` under a fresh data key."""
        if not isinstance(plaintext, bytes | bytearray | memoryview):
            raise TypeError(
                f"plaintext must be bytes, not {type(plaintext).__name__}; "
                "use seal_text or seal_json for other types."
            )
        dek = AESGCM.generate_key(bit_length=KEY_SIZE * 8)
        data_nonce = os.urandom(_NONCE)
        data = data_nonce + AESGCM(dek).encrypt(data_nonce, bytes(plaintext), _data_aad(aad))
        return self._wrap(dek, data, aad)

    def open(self, blob: bytes, *, aad: RecordBinding) -> bytes:
        """Decrypt a blob sealed for `aad`, or raise DecryptionError."""
        parsed = _parse(blob, aad)
        dek = self._unwrap(parsed, aad)
        nonce, ciphertext = parsed.data[:_NONCE], parsed.data[_NONCE:]
        try:
            return AESGCM(dek).decrypt(nonce, ciphertext, _data_aad(aad))
        except InvalidTag:
            raise _auth_failed(aad, parsed.key_id) from None

    def rewrap(self, blob: bytes, *, aad: RecordBinding) -> bytes:
        """Return the blob with its data key rewrapped under the active KEK, data untouched."""
        parsed = _parse(blob, aad)
        dek = self._unwrap(parsed, aad)
        if parsed.key_id == self._keyring.active.id:
            return bytes(blob)
        return self._wrap(dek, parsed.data, aad)

    def needs_rewrap(self, blob: bytes) -> bool:
        """Return True if the blob's data key is wrapped by a key other than the active one."""
        return _parse(blob).key_id != self._keyring.active.id

    def seal_text(self, text: str, *, aad: RecordBinding) -> bytes:
        """Encrypt a string as UTF-8 for the record field `aad`."""
        return self.seal(text.encode("utf-8"), aad=aad)

    def open_text(self, blob: bytes, *, aad: RecordBinding) -> str:
        """Decrypt a blob sealed with seal_text."""
        raw = self.open(blob, aad=aad)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            # Raised outside this block: the decode error object holds the plaintext.
            pass
        raise DecryptionError(f"The value for {aad} is not UTF-8 text.")

    def seal_json(self, payload: Mapping[str, Any], *, aad: RecordBinding) -> bytes:
        """Encrypt a JSON object for the record field `aad`."""
        if not isinstance(payload, Mapping):
            raise TypeError(f"payload must be a mapping, not {type(payload).__name__}.")
        text = json.dumps(dict(payload), separators=(",", ":"), ensure_ascii=False)
        return self.seal_text(text, aad=aad)

    def open_json(self, blob: bytes, *, aad: RecordBinding) -> dict[str, Any]:
        """Decrypt a blob sealed with seal_json."""
        text = self.open_text(blob, aad=aad)
        value: object = None
        # Suppressed, then raised afresh below: the JSON error object holds the plaintext.
        with contextlib.suppress(ValueError):
            value = json.loads(text)
        if not isinstance(value, dict):
            raise DecryptionError(f"The value for {aad} is not a JSON object.")
        return value

    def _wrap(self, dek: bytes, data: bytes, aad: RecordBinding) -> bytes:
        kek = self._keyring.active
        header = _header(kek.id)
        nonce = os.urandom(_NONCE)
        wrapped = AESGCM(kek.material).encrypt(nonce, dek, _wrap_aad(header, aad))
        return header + nonce + wrapped + data

    def _reloaded(self, key_id: str) -> KeyEncryptionKey | None:
        """Re-read the keyring's source for ``key_id`` (a rotation in another process)."""
        now = self._clock()
        if self._reload is None or (
                self._reloaded_at is not None and now - self._reloaded_at < RELOAD_INTERVAL):
            # Rate-limited: a blob under a key that is really gone must not make every
            # request read the key file.
            return None
        self._reloaded_at = now
        try:
            fresh = self._reload()
        except AlterError:
            return None  # the source is unreadable now: keep serving with the keys we hold
        kek = fresh.get(key_id)
        if kek is not None:
            # The source's active key seals from now on (rotation converges); keys only this
            # process held are kept, so nothing it could open becomes unreadable.
            self._keyring = Keyring(fresh.active, [*fresh.previous, *self._keyring])
        return kek

    def _unwrap(self, parsed: _Parsed, aad: RecordBinding) -> bytes:
        kek: KeyEncryptionKey | None = self._keyring.get(parsed.key_id)
        if kek is None:
            kek = self._reloaded(parsed.key_id)
        if kek is None:
            raise DecryptionError(
                f"The encrypted value for {aad} was sealed with key {parsed.key_id!r}, "
                "which is missing from the keyring.",
                hint=(
                    f"Add key {parsed.key_id} back (ALTER_MCP_PREVIOUS_KEYS or the key file); "
                    "retire a key only after every record has been rewrapped."
                ),
                key_id=parsed.key_id,
                table=aad.table,
                record_id=aad.record_id,
                field=aad.field,
            )
        try:
            return AESGCM(kek.material).decrypt(
                parsed.wrap_nonce, parsed.wrapped_dek, _wrap_aad(parsed.header, aad)
            )
        except InvalidTag:
            raise _auth_failed(aad, parsed.key_id) from None

    def __repr__(self) -> str:
        return f"Envelope(keyring={self._keyring!r})"
