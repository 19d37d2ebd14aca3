"""Envelope encryption for the vault: per-value data keys wrapped by rotating key-encryption keys.

This package never sees SQL or HTTP. The store persists the opaque blobs it returns (and,
for rotation, :func:`key_id_of` each blob); only the vault opens them.
"""

from alter_mcp.crypto.envelope import (
    FORMAT_VERSION,
    RELOAD_INTERVAL,
    Envelope,
    RecordBinding,
    key_id_of,
)
from alter_mcp.crypto.keyring import (
    KEY_SIZE,
    KeyEncryptionKey,
    Keyring,
    derive_key_id,
    derive_subkey,
    key_check_value,
)
from alter_mcp.crypto.keysource import (
    MASTER_KEY_ENV,
    PREVIOUS_KEYS_ENV,
    add_key_to_file,
    encode_key,
    generate_key,
    load_keyring,
    load_keyring_for,
    load_keyring_from_env,
    parse_key,
)

__all__ = [
    "FORMAT_VERSION",
    "KEY_SIZE",
    "MASTER_KEY_ENV",
    "PREVIOUS_KEYS_ENV",
    "RELOAD_INTERVAL",
    "Envelope",
    "KeyEncryptionKey",
    "Keyring",
    "RecordBinding",
    "add_key_to_file",
    "derive_key_id",
    "derive_subkey",
    "encode_key",
    "generate_key",
    "key_check_value",
    "key_id_of",
    "load_keyring",
    "load_keyring_for",
    "load_keyring_from_env",
    "parse_key",
]
