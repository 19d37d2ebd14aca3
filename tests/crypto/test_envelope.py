"""Envelope encryption: round trips, tamper detection, record binding and key rotation."""

from __future__ import annotations

import os
import traceback

import pytest

from alter_mcp.crypto import (
    FORMAT_VERSION,
    RELOAD_INTERVAL,
    Envelope,
    KeyEncryptionKey,
    Keyring,
    RecordBinding,
    key_id_of,
)
from alter_mcp.errors import CryptoError, DecryptionError
from tests.crypto.helpers import assert_no_leak

PLAINTEXT = b"ya29.a0AfH6SMBx-super-secret-access-token-0123456789"
OVERHEAD = 3 + 1 + 1 + 20 + 12 + 48 + 12 + 16  # magic, version, kid_len, kid, wrap, data


def _data_section(blob: bytes, plaintext_len: int) -> bytes:
    return blob[-(12 + plaintext_len + 16) :]


@pytest.mark.parametrize(
    "plaintext", [PLAINTEXT, b"", os.urandom(1024 * 1024)], ids=["bytes", "empty", "1MiB"]
)
def test_seal_round_trips(envelope: Envelope, binding: RecordBinding, plaintext: bytes) -> None:
    """A sealed value opens to the same bytes under the same binding."""
    blob = envelope.seal(plaintext, aad=binding)
    assert len(blob) == len(plaintext) + OVERHEAD
    assert envelope.open(blob, aad=binding) == plaintext


def test_seal_blob_layout_matches_documented_format(
    envelope: Envelope, binding: RecordBinding, key_a: KeyEncryptionKey
) -> None:
    """The blob starts with magic, version, and the length-prefixed KEK id."""
    blob = envelope.seal(PLAINTEXT, aad=binding)
    assert blob[:3] == b"AMV"
    assert blob[3] == FORMAT_VERSION
    assert blob[5 : 5 + blob[4]] == key_a.id.encode()


def test_seal_draws_fresh_data_key_and_nonces(envelope: Envelope, binding: RecordBinding) -> None:
    """Sealing the same value twice gives unrelated blobs."""
    first = envelope.seal(PLAINTEXT, aad=binding)
    second = envelope.seal(PLAINTEXT, aad=binding)
    assert first[25:] != second[25:]
    assert _data_section(first, len(PLAINTEXT)) != _data_section(second, len(PLAINTEXT))


def test_seal_blob_does_not_contain_plaintext(envelope: Envelope, binding: RecordBinding) -> None:
    """Neither the bytes nor the text nor the JSON payload appears in its blob."""
    assert PLAINTEXT not in envelope.seal(PLAINTEXT, aad=binding)
    assert PLAINTEXT not in envelope.seal_text(PLAINTEXT.decode(), aad=binding)
    blob = envelope.seal_json({"access_token": PLAINTEXT.decode()}, aad=binding)
    assert PLAINTEXT not in blob
    assert b"access_token" not in blob


def test_seal_rejects_str_plaintext(envelope: Envelope, binding: RecordBinding) -> None:
    """Passing a str to seal is a TypeError pointing at seal_text."""
    with pytest.raises(TypeError, match="seal_text"):
        envelope.seal("text", aad=binding)  # type: ignore[arg-type]


def test_open_rejects_every_flipped_byte(envelope: Envelope, binding: RecordBinding) -> None:
    """Flipping any bit pattern at any position of a blob makes open raise DecryptionError."""
    blob = envelope.seal(b"tiny", aad=binding)
    for position in range(len(blob)):
        for mask in (0x01, 0x80, 0xFF):
            garbled = bytearray(blob)
            garbled[position] ^= mask
            with pytest.raises(DecryptionError):
                envelope.open(bytes(garbled), aad=binding)


def test_open_rejects_every_truncation(envelope: Envelope, binding: RecordBinding) -> None:
    """Every proper prefix of a blob is refused."""
    blob = envelope.seal(b"tiny", aad=binding)
    for length in range(len(blob)):
        with pytest.raises(DecryptionError):
            envelope.open(blob[:length], aad=binding)


def test_open_rejects_appended_bytes(envelope: Envelope, binding: RecordBinding) -> None:
    """Bytes appended to a blob make it fail authentication."""
    blob = envelope.seal(PLAINTEXT, aad=binding)
    with pytest.raises(DecryptionError):
        envelope.open(blob + b"\x00", aad=binding)


@pytest.mark.parametrize("garbage", [b"", b"hello", b'{"token": "x"}', b"AMV", b"AMV\x01\x00"])
def test_open_rejects_non_envelope_bytes(
    envelope: Envelope, binding: RecordBinding, garbage: bytes
) -> None:
    """Bytes that are not an envelope raise DecryptionError saying the value is malformed."""
    with pytest.raises(DecryptionError, match="malformed"):
        envelope.open(garbage, aad=binding)


def test_open_rejects_unknown_format_version(envelope: Envelope, binding: RecordBinding) -> None:
    """A blob of an unknown format version names the version and asks for an upgrade."""
    blob = bytearray(envelope.seal(PLAINTEXT, aad=binding))
    blob[3] = 9
    with pytest.raises(DecryptionError, match="version 9") as caught:
        envelope.open(bytes(blob), aad=binding)
    assert "Upgrade" in str(caught.value)


@pytest.mark.parametrize(
    "elsewhere",
    [
        RecordBinding(table="credentials", record_id="grant_999", field="secret"),
        RecordBinding(table="credentials", record_id="grant_123", field="refresh_token"),
        RecordBinding(table="provider_configs", record_id="grant_123", field="secret"),
    ],
    ids=["other-record", "other-field", "other-table"],
)
def test_open_rejects_blob_moved_elsewhere(
    envelope: Envelope, binding: RecordBinding, elsewhere: RecordBinding
) -> None:
    """A blob copied to another record, field or table does not open there."""
    blob = envelope.seal(PLAINTEXT, aad=binding)
    with pytest.raises(DecryptionError, match="copied from another record"):
        envelope.open(blob, aad=elsewhere)
    with pytest.raises(DecryptionError):
        envelope.rewrap(blob, aad=elsewhere)


def test_record_binding_encoding_is_unambiguous() -> None:
    """Bindings whose concatenated fields coincide still have different canonical bytes."""
    first = RecordBinding(table="a", record_id="bc", field="d")
    second = RecordBinding(table="ab", record_id="c", field="d")
    assert first.canonical_bytes() != second.canonical_bytes()


@pytest.mark.parametrize("empty", ["table", "record_id", "field"])
def test_record_binding_rejects_empty_parts(empty: str) -> None:
    """Every part of a binding must be a non-empty string."""
    parts = {"table": "t", "record_id": "r", "field": "f", empty: ""}
    with pytest.raises(ValueError, match=empty):
        RecordBinding(**parts)


def test_open_rejects_wrong_key(
    binding: RecordBinding, key_a: KeyEncryptionKey, key_b: KeyEncryptionKey
) -> None:
    """A blob whose header is forged to name another key still fails authentication."""
    blob = Envelope(Keyring(key_a)).seal(PLAINTEXT, aad=binding)
    forged = blob.replace(key_a.id.encode(), key_b.id.encode(), 1)
    with pytest.raises(DecryptionError, match="failed authentication"):
        Envelope(Keyring(key_b)).open(forged, aad=binding)


def test_open_unknown_key_names_missing_key_id(
    binding: RecordBinding, key_a: KeyEncryptionKey, key_b: KeyEncryptionKey
) -> None:
    """A blob wrapped by a key absent from the keyring names that key id as missing."""
    blob = Envelope(Keyring(key_a)).seal(PLAINTEXT, aad=binding)
    with pytest.raises(DecryptionError) as caught:
        Envelope(Keyring(key_b)).open(blob, aad=binding)
    assert key_a.id in str(caught.value)
    assert "missing from the keyring" in str(caught.value)
    assert caught.value.details["key_id"] == key_a.id
    assert isinstance(caught.value, CryptoError)


def test_decryption_errors_leak_no_plaintext_or_key(
    binding: RecordBinding, key_a: KeyEncryptionKey, key_b: KeyEncryptionKey
) -> None:
    """Error messages, reprs, dicts and tracebacks hold neither key material nor plaintext."""
    blob = Envelope(Keyring(key_a)).seal(PLAINTEXT, aad=binding)
    forged = blob.replace(key_a.id.encode(), key_b.id.encode(), 1)
    cases = [(key_b, blob), (key_b, forged), (key_a, blob[:-1])]
    for key, bad in cases:
        with pytest.raises(DecryptionError) as caught:
            Envelope(Keyring(key)).open(bad, aad=binding)
        error = caught.value
        shown = " ".join(
            [str(error), repr(error), str(error.to_dict()), *traceback.format_exception(error)]
        )
        assert PLAINTEXT.decode() not in shown
        for key in (key_a, key_b):
            assert_no_leak(shown, key.material)


def test_open_text_and_json_round_trip(envelope: Envelope, binding: RecordBinding) -> None:
    """Text and JSON objects survive a seal and open, including non-ASCII text."""
    payload = {"access_token": "tok", "expires_at": 1_700_000_000, "note": "clé ✓"}
    assert envelope.open_text(envelope.seal_text("clé ✓", aad=binding), aad=binding) == "clé ✓"
    assert envelope.open_json(envelope.seal_json(payload, aad=binding), aad=binding) == payload


def test_open_text_rejects_non_utf8_without_leaking(
    envelope: Envelope, binding: RecordBinding
) -> None:
    """A value that is not UTF-8 raises DecryptionError with no plaintext in its context."""
    blob = envelope.seal(b"\xffsecret-bytes", aad=binding)
    with pytest.raises(DecryptionError, match="not UTF-8") as caught:
        envelope.open_text(blob, aad=binding)
    assert caught.value.__context__ is None


def test_open_json_rejects_non_object(envelope: Envelope, binding: RecordBinding) -> None:
    """A JSON value that is not an object, or not JSON at all, raises DecryptionError."""
    for raw in ("[1, 2]", "secret-not-json"):
        with pytest.raises(DecryptionError, match="JSON object") as caught:
            envelope.open_json(envelope.seal_text(raw, aad=binding), aad=binding)
        assert "secret-not-json" not in "".join(traceback.format_exception(caught.value))


def test_key_id_of_names_wrapping_key(
    envelope: Envelope, binding: RecordBinding, key_a: KeyEncryptionKey
) -> None:
    """key_id_of reads the wrapping key id without any key, and rejects garbage."""
    assert key_id_of(envelope.seal(PLAINTEXT, aad=binding)) == key_a.id
    with pytest.raises(DecryptionError):
        key_id_of(b"not a blob")


def test_rotation_keeps_old_blobs_openable(
    binding: RecordBinding, key_a: KeyEncryptionKey, key_b: KeyEncryptionKey
) -> None:
    """After B becomes active with A kept as previous, A's blobs open and new ones use B."""
    old = Envelope(Keyring(key_a)).seal(PLAINTEXT, aad=binding)
    rotated = Envelope(Keyring(key_a).with_new_active(key_b))
    assert rotated.open(old, aad=binding) == PLAINTEXT
    assert rotated.needs_rewrap(old)
    assert key_id_of(rotated.seal(PLAINTEXT, aad=binding)) == key_b.id


def test_rewrap_moves_blob_to_active_key_keeping_data_ciphertext(
    binding: RecordBinding, key_a: KeyEncryptionKey, key_b: KeyEncryptionKey
) -> None:
    """Rewrap changes the KEK id and wrapped DEK but not one byte of the data nonce+ciphertext."""
    old = Envelope(Keyring(key_a)).seal(PLAINTEXT, aad=binding)
    rotated = Envelope(Keyring(key_a).with_new_active(key_b))
    new = rotated.rewrap(old, aad=binding)
    assert key_id_of(new) == key_b.id
    assert not rotated.needs_rewrap(new)
    data = _data_section(old, len(PLAINTEXT))
    assert _data_section(new, len(PLAINTEXT)) == data
    head = len(old) - len(data)
    assert new[:head] != old[:head]
    assert rotated.open(new, aad=binding) == PLAINTEXT


def test_rewrap_returns_blob_unchanged_when_already_active(
    envelope: Envelope, binding: RecordBinding
) -> None:
    """A blob already under the active key comes back byte-identical, so callers can skip it."""
    blob = envelope.seal(PLAINTEXT, aad=binding)
    assert envelope.rewrap(blob, aad=binding) == blob


def test_retired_key_leaves_only_rewrapped_blobs_openable(
    binding: RecordBinding, key_a: KeyEncryptionKey, key_b: KeyEncryptionKey
) -> None:
    """Once A is dropped from the keyring, rewrapped blobs open and the others name A as missing."""
    sealer = Envelope(Keyring(key_a))
    moved = sealer.seal(b"rewrapped", aad=binding)
    left = sealer.seal(b"left behind", aad=binding)
    ring = Keyring(key_a).with_new_active(key_b)
    moved = Envelope(ring).rewrap(moved, aad=binding)
    retired = Envelope(ring.without(key_a.id))
    assert retired.open(moved, aad=binding) == b"rewrapped"
    with pytest.raises(DecryptionError, match=key_a.id):
        retired.open(left, aad=binding)


def test_envelope_repr_hides_key_material(envelope: Envelope, key_a: KeyEncryptionKey) -> None:
    """The envelope's repr names key ids only."""
    assert key_a.id in repr(envelope)
    assert_no_leak(repr(envelope) + str(envelope), key_a.material)


class _Source:
    """A key source whose keys change under the envelope, counting how often it is read."""

    def __init__(self, ring: Keyring) -> None:
        self.ring = ring
        self.reads = 0

    def __call__(self) -> Keyring:
        self.reads += 1
        return self.ring


def test_envelope_reloads_its_source_for_an_unknown_key_id(
        key_a: KeyEncryptionKey, key_b: KeyEncryptionKey, binding: RecordBinding) -> None:
    """A blob under a key added to the source since start opens after one reload."""
    source = _Source(Keyring(key_a))
    running = Envelope(source(), reload=source)
    source.ring = Keyring(key_b, [key_a])  # another process rotated: key_b is now active
    blob = Envelope(source.ring).seal(PLAINTEXT, aad=binding)
    assert running.open(blob, aad=binding) == PLAINTEXT
    assert source.reads == 2
    assert running.keyring.active.id == key_b.id and key_a.id in running.keyring
    assert key_id_of(running.seal(PLAINTEXT, aad=binding)) == key_b.id


def test_envelope_reload_is_rate_limited_and_keeps_known_keys(
        key_a: KeyEncryptionKey, key_b: KeyEncryptionKey, binding: RecordBinding) -> None:
    """A key that is really gone costs one reload per interval, and a reload never drops keys."""
    now = [100.0]
    source = _Source(Keyring(key_a))
    running = Envelope(source(), reload=source, clock=lambda: now[0])
    gone = Envelope(Keyring(KeyEncryptionKey(os.urandom(32)))).seal(PLAINTEXT, aad=binding)
    for _ in range(3):
        with pytest.raises(DecryptionError, match="missing from the keyring"):
            running.open(gone, aad=binding)
    assert source.reads == 2
    now[0] += RELOAD_INTERVAL
    source.ring = Keyring(key_b)  # a source that lost key_a
    with pytest.raises(DecryptionError):
        running.open(gone, aad=binding)
    assert source.reads == 3 and running.keyring.active.id == key_a.id
    assert running.open(Envelope(Keyring(key_a)).seal(b"x", aad=binding), aad=binding) == b"x"


def test_envelope_without_a_source_never_reloads(
        key_a: KeyEncryptionKey, key_b: KeyEncryptionKey, binding: RecordBinding) -> None:
    """An envelope built from a fixed keyring fails at once on an unknown key id."""
    blob = Envelope(Keyring(key_b)).seal(PLAINTEXT, aad=binding)
    with pytest.raises(DecryptionError, match=key_b.id):
        Envelope(Keyring(key_a)).open(blob, aad=binding)
