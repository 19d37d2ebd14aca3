"""The signed head of the audit chain: deleting the newest events shows.

A hash chain alone cannot tell its last event from one that used to be in the middle, so the
store keeps one more row, the head anchor: the seq and hash of the newest event and an
HMAC-SHA256 over both, advanced in the transaction of every append (once per group commit).
The key is derived (HKDF) from the keyring's active key-encryption key, as the retention
checkpoints' key is but with its own label, and the signature names the key's id, so an anchor
signed before a key rotation still verifies while the old key is a previous key.

Signature format: ``hmac-sha256:v1:<kek id>:<64 hex digits>`` (as checkpoints').
"""

from __future__ import annotations

import hashlib
import hmac

from alter_mcp.audit_retention import check_signature, signed
from alter_mcp.crypto import Keyring, derive_subkey
from alter_mcp.store.base import AuditHead, HeadSigner

__all__ = ["check_head", "head_signer"]

_SUBKEY_INFO = b"alter-mcp audit head"


def _mac(key: bytes, key_id: str, seq: int, digest: str) -> str:
    message = f"hmac-sha256:v1:head\n{key_id}\n{seq}\n{digest}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def head_signer(keyring: Keyring) -> HeadSigner:
    """Return the function that signs the head anchor with the active key's subkey."""
    kek = keyring.active
    key = derive_subkey(kek, _SUBKEY_INFO)  # derived once: the signer runs once per commit

    def sign(seq: int, digest: str) -> str:
        return signed(kek.id, _mac(key, kek.id, seq, digest))

    return sign


def check_head(keyring: Keyring, head: AuditHead) -> str | None:
    """Return None if ``head`` is authentic, else what is wrong with it."""
    where = f"the signed head (seq {head.seq})"
    if not head.signature:
        return (f"{where} is unsigned: the database was upgraded from a version without signed "
                "heads and nothing was recorded since (the next audited action signs it), or "
                "its signature was removed")

    def mac(key: bytes, key_id: str) -> str:
        return _mac(key, key_id, head.seq, head.hash)

    return check_signature(keyring, head.signature, where=where, info=_SUBKEY_INFO, mac=mac)
