"""Audit retention: the signed checkpoint that lets a pruned chain still verify.

Pruning deletes the oldest events and keeps, in their place, a checkpoint of the last one
deleted: its seq, its hash, when the checkpoint was made, and an HMAC-SHA256 over the three.
The HMAC key is derived (HKDF) from the keyring's active key-encryption key, never the key
itself, and the signature names that key's id, so a checkpoint made before a key rotation
still verifies while the old key stays in the keyring as a previous key. Without the key an
attacker can neither forge a checkpoint nor move one to hide deleted rows.

Signature format: ``hmac-sha256:v1:<kek id>:<64 hex digits>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from alter_mcp.crypto import Keyring, derive_subkey
from alter_mcp.errors import InvalidInputError
from alter_mcp.store.base import Checkpoint

__all__ = [
    "MIN_RETENTION",
    "check_checkpoint",
    "check_signature",
    "checkpoint_key_id",
    "retention_cutoff",
    "sign_checkpoint",
    "signed",
    "split_signature",
]

#: The shortest retention accepted: anything less is more likely a mistake than a policy.
MIN_RETENTION = timedelta(days=1)
_SUBKEY_INFO = b"alter-mcp audit checkpoint"
_SCHEME = "hmac-sha256:v1"
_HEX_MAC = re.compile(r"[0-9a-f]{64}")


def _mac(key: bytes, key_id: str, seq: int, digest: str, created_at: datetime) -> str:
    # Whole milliseconds: the same on every backend's timestamp column, whatever float noise.
    millis = round(created_at.timestamp() * 1000)
    message = f"{_SCHEME}\n{key_id}\n{seq}\n{digest}\n{millis}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign_checkpoint(keyring: Keyring, *, seq: int, hash: str, created_at: datetime
                    ) -> Checkpoint:
    """Return the checkpoint of event ``seq``, signed with a subkey of the active KEK."""
    kek = keyring.active
    moment = created_at.astimezone(UTC)
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    mac = _mac(derive_subkey(kek, _SUBKEY_INFO), kek.id, seq, hash, moment)
    return Checkpoint(seq=seq, hash=hash, created_at=moment, signature=signed(kek.id, mac))


def split_signature(signature: str) -> tuple[str, str] | None:
    """Return (key id, MAC) of a ``hmac-sha256:v1:<kek id>:<mac>`` signature, None if garbled."""
    scheme, _, key_id = signature.rpartition(":")[0].rpartition(":")
    mac = signature.rpartition(":")[2]
    if scheme != _SCHEME or not key_id or not _HEX_MAC.fullmatch(mac):
        return None
    return key_id, mac


def signed(key_id: str, mac: str) -> str:
    """Return the signature text naming ``key_id``."""
    return f"{_SCHEME}:{key_id}:{mac}"


def checkpoint_key_id(checkpoint: Checkpoint) -> str | None:
    """Return the id of the key that signed ``checkpoint``, or None if the signature is garbled."""
    parts = split_signature(checkpoint.signature)
    return parts[0] if parts else None


def check_signature(keyring: Keyring, signature: str, *, where: str, info: bytes,
                    mac: Callable[[bytes, str], str]) -> str | None:
    """Return None if ``signature`` holds ``mac(subkey, key id)`` for a key of ``keyring``.

    ``info`` names the subkey (HKDF) of the key the signature names; otherwise return what is
    wrong, starting with ``where``.
    """
    parts = split_signature(signature)
    if parts is None:
        return f"{where} has a malformed signature: it was edited or forged"
    key_id, given = parts
    kek = keyring.get(key_id)
    if kek is None:
        return (f"{where} was signed with key {key_id}, which is not in the keyring: add it "
                "back as a previous key (ALTER_MCP_PREVIOUS_KEYS) to verify the audit chain")
    if not hmac.compare_digest(mac(derive_subkey(kek, info), key_id), given):
        return f"{where} does not match its signature: it was edited or forged"
    return None


def check_checkpoint(keyring: Keyring, checkpoint: Checkpoint) -> str | None:
    """Return None if ``checkpoint`` is authentic, else what is wrong with it."""
    def mac(key: bytes, key_id: str) -> str:
        return _mac(key, key_id, checkpoint.seq, checkpoint.hash, checkpoint.created_at)

    return check_signature(keyring, checkpoint.signature, info=_SUBKEY_INFO, mac=mac,
                           where=f"the checkpoint at seq {checkpoint.seq}")


def retention_cutoff(older_than: timedelta | datetime, *, now: datetime) -> datetime:
    """Return the time before which events go; refuse a retention shorter than one day."""
    if isinstance(older_than, datetime):
        if older_than.tzinfo is None:
            raise InvalidInputError(
                "The prune cutoff has no time zone.", field="older_than",
                hint="Pass an aware datetime, e.g. datetime(2026, 1, 1, tzinfo=UTC).",
            )
        cutoff, kept = older_than.astimezone(UTC), now - older_than
    elif isinstance(older_than, timedelta):
        cutoff, kept = now.astimezone(UTC) - older_than, older_than
    else:
        raise InvalidInputError(
            f"older_than must be a timedelta or a datetime, not {type(older_than).__name__}.",
            field="older_than", hint="Pass e.g. timedelta(days=90).",
        )
    if kept < MIN_RETENTION:
        raise InvalidInputError(
            "The audit retention must keep at least the last day of events.",
            field="older_than",
            hint="Use a retention of 1 day or more (ALTER_MCP_AUDIT_RETENTION_DAYS >= 1).",
        )
    return cutoff
